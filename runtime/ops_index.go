package runtime

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
)

func registerIndex[T Float](r registry[T]) {
	r["Split"] = buildSplit[T]
	r["ScatterND"] = buildScatterND[T]
}

// splitSizes returns the size of each output of Split along its axis: the
// split attribute (before opset 13) or input, num_outputs (opset 18, the
// last part smaller when the axis does not divide), or equal parts.
func splitSizes[T Float](b *builder[T], n *onnx.Node, in []*val[T], dim int) ([]int64, error) {
	outs := len(n.Outputs)
	var split []int64
	if b.opset < 13 {
		split = n.AttrInts("split", nil)
	}
	if split == nil && len(in) > 1 && in[1] != nil {
		var err error
		if split, err = b.intsOf(in, 1, "split"); err != nil {
			return nil, err
		}
	}
	if a := n.Attr("num_outputs"); a != nil && b.opset >= 18 {
		if split != nil {
			return nil, fmt.Errorf("both the split input and num_outputs are given")
		}
		if a.Int != int64(outs) {
			return nil, fmt.Errorf("num_outputs is %d but the node has %d outputs", a.Int, outs)
		}
		if a.Int < 1 {
			return nil, fmt.Errorf("num_outputs is %d", a.Int)
		}
		chunk := (int64(dim) + a.Int - 1) / a.Int
		for i := int64(0); i < a.Int; i++ {
			split = append(split, max(min(chunk, int64(dim)-i*chunk), 0))
		}
		return split, nil
	}
	if split == nil {
		if outs == 0 || dim%outs != 0 {
			return nil, fmt.Errorf("axis of size %d does not split into %d equal parts", dim, outs)
		}
		for range outs {
			split = append(split, int64(dim/outs))
		}
		return split, nil
	}
	if len(split) != outs {
		return nil, fmt.Errorf("split %v has %d parts but the node has %d outputs", split, len(split), outs)
	}
	total := int64(0)
	for _, s := range split {
		if s < 0 {
			return nil, fmt.Errorf("split %v has a negative part", split)
		}
		total += s
	}
	if total != int64(dim) {
		return nil, fmt.Errorf("split %v adds up to %d, not the axis size %d", split, total, dim)
	}
	return split, nil
}

func buildSplit[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	if len(x.shape) == 0 {
		return nil, fmt.Errorf("cannot split a scalar")
	}
	axis, err := shapeAxis(n.AttrInt("axis", 0), len(x.shape))
	if err != nil {
		return nil, err
	}
	if err := checkIndexable(x.shape); err != nil {
		return nil, err
	}
	sizes, err := splitSizes(b, n, in, x.shape[axis])
	if err != nil {
		return nil, err
	}
	st := rowMajorStrides(x.shape)
	outs := make([]*val[T], len(sizes))
	start := 0
	for i, s := range sizes {
		shape := append([]int(nil), x.shape...)
		shape[axis] = int(s)
		if s == 0 {
			return nil, fmt.Errorf("output %d would be empty; Gorgonia's tensors cannot be empty", i)
		}
		base := start * st[axis]
		if outs[i], err = b.picked(fmt.Sprintf("Split(axis=%d)%v", axis, shape), x, shape, func() []int32 { return affineIndex(shape, base, st) }); err != nil {
			return nil, err
		}
		start += int(s)
	}
	return outs, nil
}

// gatherOp is Gather with indices computed at run time: out[o, j, i] =
// x[o, idx[j], i] over the axis's outer and inner blocks. Its gradient
// adds back into x; the indices have none.
type gatherOp[T Float] struct {
	name              string
	out, in           []int
	outer, dim, inner int
	axis              int
	count             int // the number of indices
}

func (k *gatherOp[T]) describe() string       { return k.name }
func (k *gatherOp[T]) outShape() []int        { return k.out }
func (k *gatherOp[T]) differentiable() []bool { return []bool{true, false} }

// index resolves index j of idx, negative ones counting from the end.
func (k *gatherOp[T]) index(idx []T, j int) (int, error) {
	v := int64(idx[j])
	if v < 0 {
		v += int64(k.dim)
	}
	if v < 0 || v >= int64(k.dim) {
		return 0, fmt.Errorf("index %d is out of range for axis %d of %v", int64(idx[j]), k.axis, k.in)
	}
	return int(v), nil
}

func (k *gatherOp[T]) forward(in [][]T, out []T) error {
	x, idx := in[0], in[1]
	for j := range idx {
		if _, err := k.index(idx, j); err != nil {
			return err
		}
	}
	for o := 0; o < k.outer; o++ {
		for j := range idx {
			v, _ := k.index(idx, j)
			copy(out[(o*k.count+j)*k.inner:(o*k.count+j+1)*k.inner], x[(o*k.dim+v)*k.inner:(o*k.dim+v+1)*k.inner])
		}
	}
	return nil
}

func (k *gatherOp[T]) backward(_ int, in [][]T, _, gout, gin []T) error {
	idx := in[1]
	for o := 0; o < k.outer; o++ {
		for j := range idx {
			v, err := k.index(idx, j)
			if err != nil {
				return err
			}
			addInto(gin[(o*k.dim+v)*k.inner:(o*k.dim+v+1)*k.inner], gout[(o*k.count+j)*k.inner:(o*k.count+j+1)*k.inner])
		}
	}
	return nil
}

// gatherAtRunTime builds Gather whose indices are computed at run time.
func (b *builder[T]) gatherAtRunTime(x, indices *val[T], axis int) (*val[T], error) {
	out := append(append(append([]int{}, x.shape[:axis]...), indices.shape...), x.shape[axis+1:]...)
	if err := checkIndexable(x.shape, out); err != nil {
		return nil, err
	}
	if size(out) == 0 {
		return nil, fmt.Errorf("the result %v is empty; Gorgonia's tensors cannot be empty", out)
	}
	k := &gatherOp[T]{name: fmt.Sprintf("Gather(axis=%d)%v", axis, out), out: out, in: x.shape, axis: axis,
		outer: size(x.shape[:axis]), dim: x.shape[axis], inner: size(x.shape[axis+1:]), count: size(indices.shape)}
	return b.apply(k, x, indices)
}

// scatterND is ScatterND: a copy of data with slices replaced by (or, with
// a reduction, combined with) updates at the positions indices name.
type scatterND[T Float] struct {
	name      string
	shape     []int // data's, the output's
	k         int   // the length of one index: the leading axes it picks
	slice     int   // elements per index: size(shape[k:])
	count     int   // the number of indices
	reduction string
	integral  bool // data holds integers: results must stay exact
}

func (s *scatterND[T]) describe() string       { return s.name }
func (s *scatterND[T]) outShape() []int        { return s.shape }
func (s *scatterND[T]) differentiable() []bool { return []bool{true, false, true} }

// offsets returns the first element of data each index names.
func (s *scatterND[T]) offsets(idx []T) ([]int, error) {
	st := rowMajorStrides(s.shape)
	offs := make([]int, s.count)
	for j := range offs {
		off := 0
		for d := 0; d < s.k; d++ {
			v := int64(idx[j*s.k+d])
			dim := int64(s.shape[d])
			if v < 0 {
				v += dim
			}
			if v < 0 || v >= dim {
				return nil, fmt.Errorf("index %v is out of range for data %v", idx[j*s.k:(j+1)*s.k], s.shape)
			}
			off += int(v) * st[d]
		}
		offs[j] = off
	}
	return offs, nil
}

func (s *scatterND[T]) combine(a, u T) T {
	switch s.reduction {
	case "add":
		return a + u
	case "mul":
		return a * u
	case "max":
		return max(a, u)
	case "min":
		return min(a, u)
	}
	return u
}

func (s *scatterND[T]) forward(in [][]T, out []T) error {
	data, upd := in[0], in[2]
	offs, err := s.offsets(in[1])
	if err != nil {
		return err
	}
	copy(out, data)
	for j, off := range offs {
		for t := 0; t < s.slice; t++ {
			out[off+t] = s.combine(out[off+t], upd[j*s.slice+t])
		}
	}
	if s.integral && (s.reduction == "add" || s.reduction == "mul") {
		for _, off := range offs {
			for t := off; t < off+s.slice; t++ {
				if err := storeExact(out, t, int64(out[t])); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *scatterND[T]) backward(i int, in [][]T, out, gout, gin []T) error {
	data, upd := in[0], in[2]
	offs, err := s.offsets(in[1])
	if err != nil {
		return err
	}
	// writers[p] lists the indices j writing element p, in order.
	writers := map[int][]int{}
	for j, off := range offs {
		for t := 0; t < s.slice; t++ {
			writers[off+t] = append(writers[off+t], j)
		}
	}
	if i == 0 {
		copy(gin, gout)
		for p, js := range writers {
			switch s.reduction {
			case "none", "":
				gin[p] = 0 // overwritten
			case "mul":
				g := gout[p]
				for _, j := range js {
					g *= upd[j*s.slice+p-offs[j]]
				}
				gin[p] = g
			case "max", "min":
				gin[p] = 0
				if data[p] == out[p] {
					gin[p] = gout[p] / T(s.ties(p, js, data, upd, offs, out))
				}
			}
		}
		return nil
	}
	for p, js := range writers {
		for n, j := range js {
			u := j*s.slice + p - offs[j]
			switch s.reduction {
			case "none", "":
				if n == len(js)-1 { // the last write wins
					gin[u] = gout[p]
				}
			case "add":
				gin[u] = gout[p]
			case "mul":
				g := gout[p] * data[p]
				for m, j2 := range js {
					if m != n {
						g *= upd[j2*s.slice+p-offs[j2]]
					}
				}
				gin[u] = g
			case "max", "min":
				if upd[u] == out[p] {
					gin[u] = gout[p] / T(s.ties(p, js, data, upd, offs, out))
				}
			}
		}
	}
	return nil
}

// ties counts the values that reached element p's max or min (data's and
// the updates'): PyTorch's scatter_reduce shares the gradient among them.
func (s *scatterND[T]) ties(p int, js []int, data, upd []T, offs []int, out []T) int {
	c := 0
	if data[p] == out[p] {
		c++
	}
	for _, j := range js {
		if upd[j*s.slice+p-offs[j]] == out[p] {
			c++
		}
	}
	return c
}

func buildScatterND[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) != 3 || in[0] == nil || in[1] == nil || in[2] == nil {
		return nil, fmt.Errorf("needs data, indices and updates")
	}
	data, indices, updates := in[0], in[1], in[2]
	if !indices.integral() {
		return nil, fmt.Errorf("indices are %s, not integers", indices.dtype())
	}
	if data.integral() != updates.integral() {
		return nil, fmt.Errorf("data are %s but updates %s", data.dtype(), updates.dtype())
	}
	reduction := "none"
	if b.opset >= 16 {
		reduction = n.AttrString("reduction", "none")
	}
	switch reduction {
	case "none", "add", "mul":
	case "max", "min":
		if b.opset < 18 {
			return nil, fmt.Errorf("reduction %q needs opset 18", reduction)
		}
	default:
		return nil, fmt.Errorf("reduction %q is not none, add, mul, max or min", reduction)
	}
	q, r := len(indices.shape), len(data.shape)
	if q == 0 || r == 0 {
		return nil, fmt.Errorf("data %v and indices %v must have rank 1 or more", data.shape, indices.shape)
	}
	k := indices.shape[q-1]
	if k < 1 || k > r {
		return nil, fmt.Errorf("indices %v pick %d axes of data %v", indices.shape, k, data.shape)
	}
	want := append(append([]int(nil), indices.shape[:q-1]...), data.shape[k:]...)
	if fmt.Sprint(updates.shape) != fmt.Sprint(want) {
		return nil, fmt.Errorf("updates have shape %v, want %v for data %v and indices %v", updates.shape, want, data.shape, indices.shape)
	}
	if err := checkIndexable(data.shape, updates.shape); err != nil {
		return nil, err
	}
	s := &scatterND[T]{name: fmt.Sprintf("ScatterND(%s)%v", reduction, data.shape), shape: data.shape, k: k,
		slice: size(data.shape[k:]), count: size(indices.shape[:q-1]), reduction: reduction, integral: data.integral()}
	if data.isInt() && indices.isInt() && updates.isInt() {
		// Integer constants: scatter when the graph is built.
		idx := make([]T, len(indices.ints))
		for i, v := range indices.ints {
			idx[i] = T(v)
		}
		offs, err := s.offsets(idx)
		if err != nil {
			return nil, err
		}
		out := append([]int64(nil), data.ints...)
		for j, off := range offs {
			for t := 0; t < s.slice; t++ {
				a, u := out[off+t], updates.ints[j*s.slice+t]
				switch reduction {
				case "add":
					u += a
				case "mul":
					u *= a
				case "max":
					u = max(a, u)
				case "min":
					u = min(a, u)
				}
				out[off+t] = wrapInt(u, data.dtype())
			}
		}
		return []*val[T]{{ints: out, shape: data.shape, elem: data.dtype()}}, nil
	}
	if data.integral() {
		return one(b.applyInt(s, data.dtype(), data, indices, updates))
	}
	return one(b.apply(s, data, indices, updates))
}
