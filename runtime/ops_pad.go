package runtime

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
)

func registerPad[T Float](r registry[T]) {
	r["Pad"] = buildPad[T]
}

// buildPad reads Pad's two forms: before opset 11, pads and value are
// attributes; from 11, pads is an input with an optional constant_value
// input, and from 18 an optional axes input says which axes pads covers.
// pads lists all begin amounts, then all end amounts; negative amounts crop.
func buildPad[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) < 1 || in[0] == nil {
		return nil, fmt.Errorf("needs an input")
	}
	x := in[0]
	r := len(x.shape)
	mode := n.AttrString("mode", "constant")
	switch mode {
	case "constant", "reflect", "edge":
	case "wrap":
		if b.opset < 19 {
			return nil, fmt.Errorf("mode wrap needs opset 19 (the model imports %d)", b.opset)
		}
	default:
		return nil, fmt.Errorf("mode %q is not one of constant, reflect, edge, wrap", mode)
	}
	var pads []int64
	var value T
	axes := make([]int, r)
	for i := range axes {
		axes[i] = i
	}
	if b.opset < 11 {
		pads = n.AttrInts("pads", nil)
		if pads == nil {
			pads = n.AttrInts("paddings", nil) // opset 1
		}
		value = T(n.AttrFloat("value", 0))
	} else {
		p, err := b.intsOf(in, 1, "pads")
		if err != nil {
			return nil, err
		}
		pads = p
		if len(in) > 2 && in[2] != nil && mode == "constant" {
			c, err := b.floatConsts(in, 2, "constant_value")
			if err != nil {
				return nil, err
			}
			if len(c) != 1 {
				return nil, fmt.Errorf("constant_value has %d elements, want 1", len(c))
			}
			value = c[0]
		}
		if len(in) > 3 && in[3] != nil {
			a, err := b.intsOf(in, 3, "axes")
			if err != nil {
				return nil, err
			}
			axes = axes[:0]
			seen := make([]bool, r)
			for _, ax := range a {
				i, err := normAxis(ax, r)
				if err != nil {
					return nil, err
				}
				if seen[i] {
					return nil, fmt.Errorf("axes %v repeat axis %d", a, i)
				}
				seen[i] = true
				axes = append(axes, i)
			}
		}
	}
	if len(pads) != 2*len(axes) {
		return nil, fmt.Errorf("pads has %d values, want %d (2 per padded axis of input %v)", len(pads), 2*len(axes), x.shape)
	}
	begin, end := make([]int, r), make([]int, r)
	for j, ax := range axes {
		begin[ax], end[ax] = int(pads[j]), int(pads[j+len(axes)])
	}
	k, err := newPad[T](x.shape, begin, end, mode, value)
	if err != nil {
		return nil, err
	}
	return one(b.apply(k, x))
}

// pad copies its input into a larger (or, with negative pads, smaller)
// tensor. Negative pads crop first; the padding then reflects, repeats or
// wraps the cropped data, as ONNX's reference and onnxruntime do.
type pad[T Float] struct {
	in, out []int
	mode    string
	value   T
	begin   []int
	end     []int
	// src[d][o] is the input index along axis d that output index o reads,
	// or -1 where the constant is written.
	src      [][]int32
	inStride []int
}

func newPad[T Float](in, begin, end []int, mode string, value T) (*pad[T], error) {
	r := len(in)
	k := &pad[T]{in: in, mode: mode, value: value, begin: begin, end: end,
		out: make([]int, r), src: make([][]int32, r), inStride: make([]int, r)}
	s := 1
	for d := r - 1; d >= 0; d-- {
		k.inStride[d] = s
		s *= in[d]
	}
	for d := 0; d < r; d++ {
		n := in[d]
		k.out[d] = n + begin[d] + end[d]
		if k.out[d] <= 0 {
			return nil, fmt.Errorf("pads %v and %v leave axis %d of input %v empty", begin, end, d, in)
		}
		lo := max(-begin[d], 0)          // cropped at the start
		kept := n - lo - max(-end[d], 0) // left after cropping
		pb := max(begin[d], 0)
		if kept <= 0 && mode != "constant" && k.out[d] > 0 {
			return nil, fmt.Errorf("pads %v and %v crop axis %d of input %v away entirely; mode %s has nothing to repeat", begin, end, d, in, mode)
		}
		src := make([]int32, k.out[d])
		for o := range src {
			j := o - pb // index into the cropped data
			if j < 0 || j >= kept {
				switch mode {
				case "constant":
					src[o] = -1
					continue
				case "edge":
					j = min(max(j, 0), kept-1)
				case "wrap":
					j = ((j % kept) + kept) % kept
				case "reflect":
					if kept == 1 {
						j = 0
					} else {
						period := 2 * (kept - 1)
						j = ((j % period) + period) % period
						if j >= kept {
							j = period - j
						}
					}
				}
			}
			src[o] = int32(lo + j)
		}
		k.src[d] = src
	}
	return k, nil
}

func (k *pad[T]) describe() string {
	return fmt.Sprintf("Pad(%s %v %v %v value=%g)", k.mode, k.in, k.begin, k.end, k.value)
}
func (k *pad[T]) outShape() []int        { return k.out }
func (k *pad[T]) differentiable() []bool { return []bool{true} }

// rows calls f for each output row (all axes but the last): its output
// offset and its input offset, or -1 if the row lies in constant padding.
func (k *pad[T]) rows(f func(outOff, inOff int)) {
	r := len(k.out)
	if r == 0 {
		f(0, 0)
		return
	}
	last := k.out[r-1]
	pos := make([]int, r-1)
	for outOff := 0; ; outOff += last {
		inOff := 0
		for d, p := range pos {
			s := k.src[d][p]
			if s < 0 {
				inOff = -1
				break
			}
			inOff += int(s) * k.inStride[d]
		}
		f(outOff, inOff)
		d := r - 2
		for ; d >= 0; d-- {
			pos[d]++
			if pos[d] < k.out[d] {
				break
			}
			pos[d] = 0
		}
		if d < 0 {
			return
		}
	}
}

func (k *pad[T]) forward(in [][]T, out []T) error {
	x := in[0]
	if len(k.out) == 0 {
		out[0] = x[0]
		return nil
	}
	src := k.src[len(k.out)-1]
	k.rows(func(oo, io int) {
		y := out[oo : oo+len(src)]
		if io < 0 {
			for i := range y {
				y[i] = k.value
			}
			return
		}
		for i, s := range src {
			if s < 0 {
				y[i] = k.value
			} else {
				y[i] = x[io+int(s)]
			}
		}
	})
	return nil
}

// backward adds each output's gradient to the input element it copies:
// reflected and repeated elements collect several.
func (k *pad[T]) backward(_ int, _ [][]T, _, gout, gin []T) error {
	if len(k.out) == 0 {
		gin[0] = gout[0]
		return nil
	}
	src := k.src[len(k.out)-1]
	k.rows(func(oo, io int) {
		if io < 0 {
			return
		}
		for i, s := range src {
			if s >= 0 {
				gin[io+int(s)] += gout[oo+i]
			}
		}
	})
	return nil
}
