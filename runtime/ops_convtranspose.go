package runtime

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
)

// ConvTranspose is the adjoint of Conv. For x [N, C, in...] and w [C,
// M/group, k...] it is the input gradient of a "shadow" convolution whose
// input has ConvTranspose's output shape [N, M, out...], whose weight is w
// and whose output has x's shape. So
//
//	forward:  y  = col2im(w^T * x)              (shadow conv's dInput, gout x)
//	dx:       dx = conv(gy, w)                  (shadow conv's forward)
//	dw:       dw = x * im2col(gy)^T             (shadow conv's dWeight, gout x)
//	db:       sum of gy over images and positions.
type convTranspose[T Float] struct {
	shadow  *conv[T]
	outPad  []int
	hasBias bool
	out     []int
}

// floorDiv2 is floor(a/2), also for negative a (as the ONNX reference's //).
func floorDiv2(a int) int {
	if a >= 0 {
		return a / 2
	}
	return -((-a + 1) / 2)
}

func buildConvTranspose[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) < 2 || in[0] == nil || in[1] == nil {
		return nil, fmt.Errorf("needs input and weight")
	}
	x, w := in[0].shape, in[1].shape
	if len(x) < 3 || len(x) > 5 || len(w) != len(x) {
		return nil, fmt.Errorf("input %v and weight %v: want matching ranks 3 to 5", x, w)
	}
	group := int(n.AttrInt("group", 1))
	if group < 1 || w[0] != x[1] || x[1]%group != 0 {
		return nil, fmt.Errorf("input %v with weight %v and group %d: channels do not match", x, w, group)
	}
	m := w[1] * group
	r := len(x) - 2
	spatial, kernel := x[2:], w[2:]
	if ks := n.AttrInts("kernel_shape", nil); ks != nil && fmt.Sprint(ints(ks)) != fmt.Sprint(kernel) {
		return nil, fmt.Errorf("kernel_shape %v does not match weight %v", ks, w)
	}
	get := func(name string, def, count int) ([]int, error) { return attrInts(n, name, def, count) }
	strides, err := get("strides", 1, r)
	if err != nil {
		return nil, err
	}
	dilations, err := get("dilations", 1, r)
	if err != nil {
		return nil, err
	}
	outPad, err := get("output_padding", 0, r)
	if err != nil {
		return nil, err
	}
	pads, err := get("pads", 0, 2*r)
	if err != nil {
		return nil, err
	}
	var outShape []int
	if v := n.AttrInts("output_shape", nil); v != nil {
		outShape = ints(v)
		if len(outShape) == r+2 { // some exporters give N and C too
			outShape = outShape[2:]
		}
		if len(outShape) != r {
			return nil, fmt.Errorf("output_shape %v: want %d spatial sizes", v, r)
		}
	}
	autoPad := n.AttrString("auto_pad", "NOTSET")
	win := &window{kernel: kernel, strides: strides, dilations: dilations, in: make([]int, r), out: spatial,
		padsBegin: pads[:r], padsEnd: pads[r:]}
	for i := 0; i < r; i++ {
		if kernel[i] < 1 || strides[i] < 1 || dilations[i] < 1 || outPad[i] < 0 {
			return nil, fmt.Errorf("kernel %v, strides %v and dilations %v must be positive, output_padding %v not negative", kernel, strides, dilations, outPad)
		}
		full := strides[i]*(spatial[i]-1) + outPad[i] + dilations[i]*(kernel[i]-1) + 1
		target := -1
		switch {
		case outShape != nil:
			target = outShape[i]
		case autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER":
			target = spatial[i] * strides[i]
		case autoPad == "VALID":
			win.padsBegin[i], win.padsEnd[i] = 0, 0
		case autoPad == "NOTSET" || autoPad == "":
		default:
			return nil, fmt.Errorf("unknown auto_pad %q", autoPad)
		}
		if target >= 0 {
			// The ONNX spec's split: the odd element at the end for
			// SAME_UPPER, at the beginning otherwise.
			total := full - target
			if autoPad == "SAME_UPPER" {
				win.padsBegin[i] = floorDiv2(total)
				win.padsEnd[i] = total - floorDiv2(total)
			} else {
				win.padsBegin[i] = total - floorDiv2(total)
				win.padsEnd[i] = floorDiv2(total)
			}
		}
		win.in[i] = full - win.padsBegin[i] - win.padsEnd[i]
		if win.in[i] < 1 {
			return nil, fmt.Errorf("output size %d along axis %d is not positive", win.in[i], i+2)
		}
	}
	// dx: the forward pass is the shadow's input gradient, which keeps the
	// weight's transpose.
	s := &conv[T]{n: x[0], c: m, m: x[1], group: group, win: win, cols: &workspaceOf[T](b.p).cols, dx: true}
	s.out = append([]int{x[0], x[1]}, spatial...)
	s.direct = true
	for d := range win.in {
		if kernel[d] != 1 || strides[d] != 1 || win.padsBegin[d] != 0 || win.out[d] != win.in[d] {
			s.direct = false
		}
	}
	s.plane = newPlane2d(win)
	if s.plane == nil && !s.direct {
		s.buildGather()
	}
	k := &convTranspose[T]{shadow: s, outPad: outPad, out: append([]int{x[0], m}, win.in...)}
	args := []*val[T]{in[0], in[1]}
	if len(in) > 2 && in[2] != nil {
		if len(in[2].shape) != 1 || in[2].shape[0] != m {
			return nil, fmt.Errorf("bias %v does not match %d output channels", in[2].shape, m)
		}
		k.hasBias = true
		args = append(args, in[2])
	}
	return one(b.apply(k, args...))
}

func (k *convTranspose[T]) describe() string {
	s := k.shadow
	return fmt.Sprintf("ConvTranspose(%dx%d->%d g%d %v op%v)", s.n, s.m, s.c, s.group, s.win, k.outPad)
}
func (k *convTranspose[T]) outShape() []int { return k.out }

// scratchBytes is the shadow convolution's.
func (k *convTranspose[T]) scratchBytes() int64 { return k.shadow.scratchBytes() }

func (k *convTranspose[T]) workspaceBytes(need func(buf any, bytes int64)) {
	k.shadow.workspaceBytes(need)
}
func (k *convTranspose[T]) differentiable() []bool {
	if k.hasBias {
		return []bool{true, true, true}
	}
	return []bool{true, true}
}

func (k *convTranspose[T]) forward(in [][]T, out []T) error {
	s := k.shadow
	if err := s.backward(0, [][]T{nil, in[1]}, nil, in[0], out); err != nil {
		return err
	}
	if k.hasBias {
		b, oN := in[2], size(s.win.in)
		parallelFor(s.n*s.c, len(out), func(lo, hi int) {
			for j := lo; j < hi; j++ {
				bm, row := b[j%s.c], out[j*oN:(j+1)*oN]
				for i := range row {
					row[i] += bm
				}
			}
		})
	}
	return nil
}

func (k *convTranspose[T]) backward(which int, in [][]T, _, gout, gin []T) error {
	s := k.shadow
	switch which {
	case 0:
		return s.forward([][]T{gout, in[1]}, gin)
	case 1:
		return s.backward(1, [][]T{gout, in[1]}, nil, in[0], gin)
	case 2:
		oN := size(s.win.in)
		for img := 0; img < s.n; img++ {
			for c := 0; c < s.c; c++ {
				var sum T
				for _, v := range gout[(img*s.c+c)*oN : (img*s.c+c+1)*oN] {
					sum += v
				}
				gin[c] += sum
			}
		}
	}
	return nil
}
