package runtime

import (
	"fmt"
	"math"

	"github.com/graft-dev/graft/onnx"
)

func registerReduce[T Float](r registry[T]) {
	r["Softmax"] = buildSoftmax[T](false)
	r["LogSoftmax"] = buildSoftmax[T](true)
	r["ReduceSum"] = buildReduce[T](reduceSum, 13)
	r["ReduceMean"] = buildReduce[T](reduceMean, 18)
	r["ReduceMax"] = buildReduce[T](reduceMax, 18)
}

// normAxis resolves a possibly negative axis against rank r.
func normAxis(axis int64, r int) (int, error) {
	a := int(axis)
	if a < 0 {
		a += r
	}
	if a < 0 || a >= r {
		return 0, fmt.Errorf("axis %d is out of range for rank %d", axis, r)
	}
	return a, nil
}

// buildSoftmax builds Softmax or LogSoftmax. Before opset 13 the input is
// flattened to a matrix at axis (default 1) and each row is normalised; from
// opset 13 the op normalises along the one axis (default -1).
func buildSoftmax[T Float](log bool) opBuilder[T] {
	return func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
		if len(in) < 1 || in[0] == nil {
			return nil, fmt.Errorf("needs an input")
		}
		shape := in[0].shape
		r := len(shape)
		if r == 0 { // a scalar is a single element along its only "axis"
			shape, r = []int{1}, 1
		}
		def := int64(-1)
		if b.opset < 13 {
			def = 1
		}
		raw := n.AttrInt("axis", def)
		k := &softmax[T]{log: log, shape: in[0].shape}
		if b.opset < 13 {
			// axis may equal the rank here: the matrix is [all, 1].
			a := int(raw)
			if a < 0 {
				a += r
			}
			if a < 0 || a > r {
				return nil, fmt.Errorf("axis %d is out of range for input %v", raw, in[0].shape)
			}
			k.outer, k.n, k.inner = size(shape[:a]), size(shape[a:]), 1
		} else {
			a, err := normAxis(raw, r)
			if err != nil {
				return nil, err
			}
			k.outer, k.n, k.inner = size(shape[:a]), shape[a], size(shape[a+1:])
		}
		return one(b.apply(k, in[0]))
	}
}

// softmax normalises x viewed as [outer, n, inner] along its middle axis:
// exp(x) / sum exp(x), or for log, x - log sum exp(x).
type softmax[T Float] struct {
	log             bool
	shape           []int
	outer, n, inner int
}

func (k *softmax[T]) describe() string {
	name := "Softmax"
	if k.log {
		name = "LogSoftmax"
	}
	return fmt.Sprintf("%s(%dx%dx%d)", name, k.outer, k.n, k.inner)
}
func (k *softmax[T]) outShape() []int        { return k.shape }
func (k *softmax[T]) differentiable() []bool { return []bool{true} }

func (k *softmax[T]) forward(in [][]T, out []T) error {
	x := in[0]
	if k.inner == 1 {
		for o := 0; o < k.outer; o++ {
			row, y := x[o*k.n:(o+1)*k.n], out[o*k.n:(o+1)*k.n]
			m := row[0]
			for _, v := range row {
				m = max(m, v)
			}
			var s float64
			for j, v := range row {
				e := math.Exp(float64(v - m))
				s += e
				y[j] = T(e)
			}
			if k.log {
				ls := T(math.Log(s))
				for j, v := range row {
					y[j] = v - m - ls
				}
			} else {
				inv := 1 / s
				for j := range y {
					y[j] = T(float64(y[j]) * inv)
				}
			}
		}
		return nil
	}
	// Strided: work on whole [inner] rows at a time, which are contiguous.
	m := make([]T, k.inner)
	s := make([]float64, k.inner)
	for o := 0; o < k.outer; o++ {
		base := o * k.n * k.inner
		copy(m, x[base:base+k.inner])
		for j := 1; j < k.n; j++ {
			for i, v := range x[base+j*k.inner : base+(j+1)*k.inner] {
				m[i] = max(m[i], v)
			}
		}
		clear(s)
		for j := 0; j < k.n; j++ {
			off := base + j*k.inner
			y := out[off : off+k.inner]
			for i, v := range x[off : off+k.inner] {
				e := math.Exp(float64(v - m[i]))
				s[i] += e
				y[i] = T(e)
			}
		}
		for j := 0; j < k.n; j++ {
			off := base + j*k.inner
			y := out[off : off+k.inner]
			if k.log {
				for i, v := range x[off : off+k.inner] {
					y[i] = v - m[i] - T(math.Log(s[i]))
				}
			} else {
				for i := range y {
					y[i] = T(float64(y[i]) / s[i])
				}
			}
		}
	}
	return nil
}

// backward: for softmax dx = y * (g - sum(g*y)); for log-softmax
// dx = g - exp(y) * sum(g), sums along the normalised axis.
func (k *softmax[T]) backward(_ int, _ [][]T, out, gout, gin []T) error {
	s := make([]float64, k.inner)
	for o := 0; o < k.outer; o++ {
		base := o * k.n * k.inner
		clear(s)
		for j := 0; j < k.n; j++ {
			off := base + j*k.inner
			g := gout[off : off+k.inner]
			if k.log {
				for i, v := range g {
					s[i] += float64(v)
				}
			} else {
				for i, y := range out[off : off+k.inner] {
					s[i] += float64(g[i]) * float64(y)
				}
			}
		}
		for j := 0; j < k.n; j++ {
			off := base + j*k.inner
			g, dx := gout[off:off+k.inner], gin[off:off+k.inner]
			for i, y := range out[off : off+k.inner] {
				if k.log {
					dx[i] = g[i] - T(math.Exp(float64(y))*s[i])
				} else {
					dx[i] = y * (g[i] - T(s[i]))
				}
			}
		}
	}
	return nil
}

type reduceKind int

const (
	reduceSum reduceKind = iota
	reduceMean
	reduceMax
)

func (k reduceKind) String() string {
	return [...]string{"ReduceSum", "ReduceMean", "ReduceMax"}[k]
}

// buildReduce builds a reduction. Axes are an attribute before axesInput
// (the opset where they became an optional input, with
// noop_with_empty_axes); no axes means all axes unless that flag is set.
func buildReduce[T Float](kind reduceKind, axesInput int64) opBuilder[T] {
	return func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
		if len(in) < 1 || in[0] == nil {
			return nil, fmt.Errorf("needs an input")
		}
		x := in[0]
		var axes []int64
		noop := false
		if b.opset < axesInput {
			axes = n.AttrInts("axes", nil)
		} else {
			if len(in) > 1 && in[1] != nil {
				a, err := b.intsOf(in, 1, "axes")
				if err != nil {
					return nil, err
				}
				axes = a
			}
			noop = n.AttrInt("noop_with_empty_axes", 0) != 0
		}
		if len(axes) == 0 && noop {
			return []*val[T]{x}, nil
		}
		keep := n.AttrInt("keepdims", 1) != 0
		k, err := newReduce[T](kind, x.shape, axes, keep)
		if err != nil {
			return nil, err
		}
		return one(b.apply(k, x))
	}
}

// reduce sums, averages or takes the maximum over some axes. Runs of
// adjacent axes that are all reduced or all kept are merged, so the loops
// run over a few long contiguous blocks: the innermost merged dimension is
// walked as one row, either folded into one output (reduced) or added
// element by element to an output row (kept).
type reduce[T Float] struct {
	kind  reduceKind
	in    []int
	out   []int
	axes  []int // sorted, for describe
	count int   // input elements per output element
	// Merged layout.
	dims      []int
	reduced   []bool
	inStride  []int
	outStride []int // 0 along reduced dimensions
}

func newReduce[T Float](kind reduceKind, in []int, axes []int64, keep bool) (*reduce[T], error) {
	r := len(in)
	red := make([]bool, r)
	if len(axes) == 0 {
		for i := range red {
			red[i] = true
		}
	}
	for _, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return nil, err
		}
		if red[ax] {
			return nil, fmt.Errorf("axes %v repeat axis %d", axes, ax)
		}
		red[ax] = true
	}
	k := &reduce[T]{kind: kind, in: in, count: 1}
	k.out = []int{}
	for i, d := range in {
		switch {
		case red[i]:
			k.axes = append(k.axes, i)
			k.count *= d
			if keep {
				k.out = append(k.out, 1)
			}
		default:
			k.out = append(k.out, d)
		}
	}
	// Merge adjacent dimensions of the same kind; drop size-1 dimensions.
	for i, d := range in {
		if d == 1 {
			continue
		}
		if j := len(k.dims) - 1; j >= 0 && k.reduced[j] == red[i] {
			k.dims[j] *= d
			continue
		}
		k.dims = append(k.dims, d)
		k.reduced = append(k.reduced, red[i])
	}
	if len(k.dims) == 0 {
		k.dims, k.reduced = []int{1}, []bool{false}
	}
	k.inStride = make([]int, len(k.dims))
	k.outStride = make([]int, len(k.dims))
	si, so := 1, 1
	for j := len(k.dims) - 1; j >= 0; j-- {
		k.inStride[j] = si
		si *= k.dims[j]
		if !k.reduced[j] {
			k.outStride[j] = so
			so *= k.dims[j]
		}
	}
	return k, nil
}

func (k *reduce[T]) describe() string {
	return fmt.Sprintf("%s(%v axes %v -> %v)", k.kind, k.in, k.axes, k.out)
}
func (k *reduce[T]) outShape() []int        { return k.out }
func (k *reduce[T]) differentiable() []bool { return []bool{true} }

// rows calls f for every innermost row of the merged layout in input
// order, with the row's input and output offsets.
func (k *reduce[T]) rows(f func(inOff, outOff int)) {
	last := len(k.dims) - 1
	pos := make([]int, last)
	inOff, outOff := 0, 0
	for {
		f(inOff, outOff)
		d := last - 1
		for ; d >= 0; d-- {
			pos[d]++
			inOff += k.inStride[d]
			outOff += k.outStride[d]
			if pos[d] < k.dims[d] {
				break
			}
			inOff -= k.inStride[d] * pos[d]
			outOff -= k.outStride[d] * pos[d]
			pos[d] = 0
		}
		if d < 0 {
			return
		}
	}
}

func (k *reduce[T]) forward(in [][]T, out []T) error {
	x := in[0]
	last := len(k.dims) - 1
	n, innerRed := k.dims[last], k.reduced[last]
	if k.kind == reduceMax {
		for i := range out {
			out[i] = T(math.Inf(-1))
		}
		k.rows(func(io, oo int) {
			row := x[io : io+n]
			if innerRed {
				m := out[oo]
				for _, v := range row {
					if v > m || v != v {
						m = v
					}
				}
				out[oo] = m
				return
			}
			y := out[oo : oo+n]
			for i, v := range row {
				if v > y[i] || v != v {
					y[i] = v
				}
			}
		})
		return nil
	}
	k.rows(func(io, oo int) {
		row := x[io : io+n]
		if innerRed {
			var s float64
			for _, v := range row {
				s += float64(v)
			}
			out[oo] += T(s)
			return
		}
		y := out[oo : oo+n]
		for i, v := range row {
			y[i] += v
		}
	})
	if k.kind == reduceMean {
		inv := 1 / T(k.count)
		for i := range out {
			out[i] *= inv
		}
	}
	return nil
}

// backward spreads the output gradient over the reduced elements: evenly
// for sums and means, and for the maximum all to its first occurrence in
// row-major order (what PyTorch's max(dim) indices select).
func (k *reduce[T]) backward(_ int, in [][]T, out, gout, gin []T) error {
	last := len(k.dims) - 1
	n, innerRed := k.dims[last], k.reduced[last]
	if k.kind == reduceMax {
		x := in[0]
		done := make([]bool, len(out))
		k.rows(func(io, oo int) {
			row := x[io : io+n]
			if innerRed {
				if done[oo] {
					return
				}
				for i, v := range row {
					if v == out[oo] || v != v {
						gin[io+i] = gout[oo]
						done[oo] = true
						return
					}
				}
				return
			}
			for i, v := range row {
				if !done[oo+i] && (v == out[oo+i] || v != v) {
					gin[io+i] = gout[oo+i]
					done[oo+i] = true
				}
			}
		})
		return nil
	}
	scale := T(1)
	if k.kind == reduceMean {
		scale = 1 / T(k.count)
	}
	k.rows(func(io, oo int) {
		dx := gin[io : io+n]
		if innerRed {
			g := gout[oo] * scale
			for i := range dx {
				dx[i] = g
			}
			return
		}
		for i, g := range gout[oo : oo+n] {
			dx[i] = g * scale
		}
	})
	return nil
}
