package runtime

import (
	"fmt"
	"math"
	"sync"
	"unsafe"

	"github.com/graft-dev/graft/onnx"
)

func registerPool[T Float](r registry[T]) {
	r["MaxPool"] = func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
		return buildPool(b, n, in, true, false)
	}
	r["AveragePool"] = func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
		return buildPool(b, n, in, false, false)
	}
	r["GlobalMaxPool"] = func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
		return buildPool(b, n, in, true, true)
	}
	r["GlobalAveragePool"] = func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
		return buildPool(b, n, in, false, true)
	}
}

// pool is max or average pooling over the spatial axes of x [N, C,
// spatial...], each of the N*C planes alike. The windows are tabulated on
// the first run (the tables are as large as a plane times the kernel, so
// they wait until the memory estimate has passed), and forward and
// backward are loops over precomputed offsets.
type pool[T Float] struct {
	name   string
	isMax  bool
	planes int // N*C
	iN, oN int // positions per input and output plane
	win    *window
	out    []int
	// taps[start[o]:start[o+1]] are the offsets within a plane that output
	// position o reads, in kernel order, with padding left out.
	start []int32
	taps  []int32
	// div[o] divides the sum of output o (average pooling only).
	div []T
	// countPad is AveragePool's count_include_pad.
	countPad bool
	tables   sync.Once
}

func buildPool[T Float](b *builder[T], n *onnx.Node, in []*val[T], isMax, global bool) ([]*val[T], error) {
	if len(in) < 1 || in[0] == nil {
		return nil, fmt.Errorf("needs an input")
	}
	x := in[0].shape
	if len(x) < 3 {
		return nil, fmt.Errorf("input %v: want [N, C, spatial...] with at least one spatial axis", x)
	}
	spatial := x[2:]
	r := len(spatial)
	var win *window
	if global {
		ones, zeros := make([]int, r), make([]int, r)
		for i := range ones {
			ones[i] = 1
		}
		win = &window{in: spatial, out: ones, kernel: spatial, strides: ones, dilations: ones, padsBegin: zeros, padsEnd: zeros}
	} else {
		ks := n.AttrInts("kernel_shape", nil)
		if len(ks) != r {
			return nil, fmt.Errorf("kernel_shape %v: want %d values for input %v", ks, r, x)
		}
		var err error
		if win, err = newWindow(n, spatial, ints(ks)); err != nil {
			return nil, err
		}
	}
	indices := false
	if isMax && len(n.Outputs) > 1 && n.Outputs[1] != nil && b.p != nil && b.p.model != nil {
		g, v := b.p.model.Graph, n.Outputs[1]
		indices = g.IsOutput(v) || len(g.Consumers(v)) > 0
	}
	if size(spatial) > math.MaxInt32 {
		return nil, fmt.Errorf("input %v: a plane of more than 2^31 elements is not supported", x)
	}
	k := &pool[T]{name: n.OpType, isMax: isMax, planes: x[0] * x[1], win: win,
		iN: size(spatial), oN: size(win.out), out: append([]int{x[0], x[1]}, win.out...)}
	if !isMax && !global {
		k.countPad = n.AttrInt("count_include_pad", 0) == 1
	}
	y, err := b.apply(k, in[0])
	if err != nil || !indices {
		return []*val[T]{y}, err
	}
	order := n.AttrInt("storage_order", 0)
	if order != 0 && order != 1 {
		return nil, fmt.Errorf("storage_order is %d, not 0 or 1", order)
	}
	idx, err := b.applyInt(&poolIndices[T]{pool: k, columnMajor: order == 1}, onnx.Int64, in[0], y)
	return []*val[T]{y, idx}, err
}

// poolIndices is MaxPool's Indices output: where in x each maximum is (the
// first, as the gradient takes it), counted over the whole tensor, each
// plane's part row-major or, with storage_order 1, column-major.
type poolIndices[T Float] struct {
	pool        *pool[T]
	columnMajor bool
}

func (k *poolIndices[T]) describe() string       { return k.pool.describe() + ".Indices" }
func (k *poolIndices[T]) outShape() []int        { return k.pool.out }
func (k *poolIndices[T]) differentiable() []bool { return []bool{false, false} }

func (k *poolIndices[T]) forward(in [][]T, out []T) error {
	p := k.pool
	p.tables.Do(p.buildTable)
	x, y := in[0], in[1]
	pos := make([]int, len(p.win.in))
	for pl := 0; pl < p.planes; pl++ {
		xp := x[pl*p.iN : (pl+1)*p.iN]
		for o := 0; o < p.oN; o++ {
			i := int(argmax(xp, p.taps[p.start[o]:p.start[o+1]], y[pl*p.oN+o]))
			if i >= 0 && k.columnMajor {
				unflatten(i, p.win.in, pos)
				c, stride := 0, 1
				for d, v := range pos {
					c += v * stride
					stride *= p.win.in[d]
				}
				i = c
			}
			if err := storeExact(out, pl*p.oN+o, int64(pl*p.iN+i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (k *poolIndices[T]) backward(int, [][]T, []T, []T, []T) error {
	return fmt.Errorf("%s has no gradient", k.describe())
}

// buildTable tabulates the windows and, for averages, their divisors: the
// number of input elements in the window, or with count_include_pad the
// number of kernel taps inside the padded input (as PyTorch counts them: a
// window that ceil_mode lets run past the end padding is cut there).
// scratchBytes is the size of the tables.
func (k *pool[T]) scratchBytes() int64 {
	n := int64(k.oN)*int64(size(k.win.kernel))*4 + int64(k.oN+1)*4
	if !k.isMax {
		n += int64(k.oN) * int64(unsafe.Sizeof(T(0)))
	}
	return n
}

func (k *pool[T]) buildTable() {
	w := k.win
	k.start = make([]int32, k.oN+1)
	k.taps = make([]int32, 0, k.oN*size(w.kernel))
	w.forEach(func(o, _, i int) {
		if i >= 0 {
			k.taps = append(k.taps, int32(i))
		}
		k.start[o+1] = int32(len(k.taps))
	})
	if k.isMax {
		return
	}
	k.div = make([]T, k.oN)
	pos := make([]int, len(w.in))
	for o := range k.div {
		if !k.countPad {
			k.div[o] = T(k.start[o+1] - k.start[o])
			continue
		}
		unflatten(o, w.out, pos)
		c := 1
		for d := range pos {
			taps := 0
			for j := 0; j < w.kernel[d]; j++ {
				// Windows start at or after -padsBegin; count those before the end padding ends.
				if pos[d]*w.strides[d]-w.padsBegin[d]+j*w.dilations[d] < w.in[d]+w.padsEnd[d] {
					taps++
				}
			}
			c *= taps
		}
		k.div[o] = T(c)
	}
}

func (k *pool[T]) describe() string {
	s := fmt.Sprintf("%s(%dx%v %v", k.name, k.planes, k.win.in, k.win)
	if k.countPad {
		s += " count_include_pad"
	}
	return s + ")"
}

func (k *pool[T]) outShape() []int        { return k.out }
func (k *pool[T]) differentiable() []bool { return []bool{true} }

// argmax returns the offset of the first of x's taps equal to y, the
// window's maximum (the first NaN when y is NaN), or -1 if there is none
// (a window of padding only).
func argmax[T Float](x []T, taps []int32, y T) int32 {
	if y != y {
		for _, i := range taps {
			if x[i] != x[i] {
				return i
			}
		}
		return -1
	}
	for _, i := range taps {
		if x[i] == y {
			return i
		}
	}
	return -1
}

func (k *pool[T]) forward(in [][]T, out []T) error {
	x := in[0]
	negInf := T(math.Inf(-1))
	if w := k.win; k.isMax && len(w.in) == 2 && w.dilations[0] == 1 && w.dilations[1] == 1 {
		parallelFor(k.planes, k.planes*k.oN*size(w.kernel), func(p0, p1 int) {
			rowMax := make([]T, 2*w.in[1])
			for p := p0; p < p1; p++ {
				maxPool2d(w, x[p*k.iN:(p+1)*k.iN], out[p*k.oN:(p+1)*k.oN], rowMax)
			}
		})
		return nil
	}
	k.tables.Do(k.buildTable)
	parallelFor(k.planes, k.planes*len(k.taps), func(p0, p1 int) {
		for p := p0; p < p1; p++ {
			xp := x[p*k.iN : (p+1)*k.iN]
			op := out[p*k.oN : (p+1)*k.oN]
			if k.isMax {
				for o := range op {
					m := negInf // padding counts as -inf
					for _, i := range k.taps[k.start[o]:k.start[o+1]] {
						m = max(m, xp[i]) // NaN if any is
					}
					op[o] = m
				}
				continue
			}
			for o := range op {
				var s T
				for _, i := range k.taps[k.start[o]:k.start[o+1]] {
					s += xp[i]
				}
				op[o] = s / k.div[o]
			}
		}
	})
	return nil
}

// vmaxF32, when set (pool_amd64.go), computes maxRows for float32 on the
// whole groups of 8 of dst, vectorised.
var vmaxF32 func(dst, x, y []float32)

// maxRows sets dst[i] = max(x[i], y[i]) (NaN if either is) for i <
// len(dst); dst may be x or y.
func maxRows[T Float](dst, x, y []T) {
	i := 0
	if d, ok := any(dst).([]float32); ok && vmaxF32 != nil {
		i = len(d) &^ 7
		vmaxF32(d, any(x).([]float32), any(y).([]float32))
	}
	x, y = x[:len(dst)], y[:len(dst)]
	for ; i < len(dst); i++ {
		dst[i] = max(x[i], y[i])
	}
}

// maxPool2d is a 2-d undilated max pool of one plane, separably: for each
// output row, the maximum over the window's rows of each input column, then
// over the window's columns of those. Padding counts as -inf; NaN wins.
// rowMax holds 2·w.in[1] elements.
func maxPool2d[T Float](w *window, x, out, rowMax []T) {
	h, wd, oh, ow := w.in[0], w.in[1], w.out[0], w.out[1]
	negInf := T(math.Inf(-1))
	rowMax, win3 := rowMax[:wd], rowMax[wd:2*wd]
	for r := 0; r < oh; r++ {
		r0 := r*w.strides[0] - w.padsBegin[0]
		r1 := min(r0+w.kernel[0], h)
		r0 = max(r0, 0)
		switch {
		case r0 >= r1:
			for i := range rowMax {
				rowMax[i] = negInf
			}
		case r1 == r0+1:
			copy(rowMax, x[r0*wd:(r0+1)*wd])
		default:
			maxRows(rowMax, x[r0*wd:(r0+1)*wd], x[(r0+1)*wd:(r0+2)*wd])
		}
		for i := r0 + 2; i < r1; i++ {
			maxRows(rowMax, rowMax, x[i*wd:(i+1)*wd])
		}
		o := out[r*ow : (r+1)*ow]
		c := 0
		if w.kernel[1] == 3 && w.strides[1] == 2 && wd >= 3 {
			// The stem's pool: whole windows of three columns, two apart:
			// win3[i] is the maximum of columns i, i+1, i+2.
			for ; c < ow; c++ {
				c0 := 2*c - w.padsBegin[1]
				if c0 >= 0 {
					break
				}
				o[c] = poolWindow(rowMax, c0, wd, 3, negInf)
			}
			m := win3[:wd-2]
			maxRows(m, rowMax[:wd-2], rowMax[1:wd-1])
			maxRows(m, m, rowMax[2:])
			first := 2*c - w.padsBegin[1]
			whole := min(ow, (wd-3+w.padsBegin[1])/2+1) - c // windows inside the row
			if whole > 0 {
				evens(o[c:c+whole], m[first:])
				c += whole
			}
		}
		for ; c < ow; c++ {
			o[c] = poolWindow(rowMax, c*w.strides[1]-w.padsBegin[1], wd, w.kernel[1], negInf)
		}
	}
}

// poolWindow is the maximum of row[c0:c0+k] within [0, wd), -inf when
// empty.
func poolWindow[T Float](row []T, c0, wd, k int, negInf T) T {
	m := negInf
	for _, v := range row[max(c0, 0):max(min(c0+k, wd), 0)] {
		m = max(m, v)
	}
	return m
}

func (k *pool[T]) writesAll() {}

// backward routes each output's gradient to its window's first maximum (as
// PyTorch does on ties), found as the first tap equal to the output, or
// spreads it evenly over the window's input elements (average).
// Its backward clears each plane of the input gradient itself before
// adding into it: on both cores, while the plane is in cache.
func (k *pool[T]) gradWritesAll(int) bool { return true }

func (k *pool[T]) backward(_ int, in [][]T, out, gout, gin []T) error {
	k.tables.Do(k.buildTable)
	x := in[0]
	// Each plane adds only into its own part of gin.
	parallelFor(k.planes, k.planes*len(k.taps), func(p0, p1 int) {
		for p := p0; p < p1; p++ {
			xp := x[p*k.iN : (p+1)*k.iN]
			gp := gin[p*k.iN : (p+1)*k.iN]
			clear(gp)
			g := gout[p*k.oN : (p+1)*k.oN]
			if k.isMax {
				y := out[p*k.oN : (p+1)*k.oN]
				for o, v := range g {
					if v == 0 {
						continue // nothing to route: half of them when a Relu follows (poolBeforeRelu)
					}
					if i := argmax(xp, k.taps[k.start[o]:k.start[o+1]], y[o]); i >= 0 {
						gp[i] += v
					}
				}
				continue
			}
			for o, v := range g {
				v /= k.div[o]
				for _, i := range k.taps[k.start[o]:k.start[o+1]] {
					gp[i] += v
				}
			}
		}
	})
	return nil
}
