package runtime

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/onnx"
)

func registerShape[T Float](r registry[T]) {
	r["Flatten"] = buildFlatten[T]
	r["Reshape"] = buildReshape[T]
	r["Constant"] = buildConstant[T]
	r["Transpose"] = buildTranspose[T]
	r["Concat"] = buildConcat[T]
	r["Squeeze"] = buildSqueeze[T]
	r["Unsqueeze"] = buildUnsqueeze[T]
	r["Shape"] = buildShape[T]
	r["Size"] = buildSize[T]
	r["Gather"] = buildGather[T]
	r["ConstantOfShape"] = buildConstantOfShape[T]
	r["Slice"] = buildSlice[T]
	r["Expand"] = buildExpand[T]
	r["Range"] = buildRange[T]
}

// reshape changes a tensor's shape without moving data. Integer constants
// are reshaped at compile time.
func (b *builder[T]) reshape(x *val[T], shape []int) (*val[T], error) {
	if size(shape) != size(x.shape) {
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", x.shape, size(x.shape), shape)
	}
	if x.node == nil {
		return &val[T]{ints: x.ints, consts: x.consts, shape: shape}, nil
	}
	return b.apply(&unary[T]{name: fmt.Sprintf("Reshape%v", shape), shape: shape,
		f: func(v T) T { return v }, df: func(_, _ T) T { return 1 }}, x)
}

func buildFlatten[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x := in[0]
	axis := int(n.AttrInt("axis", 1))
	if axis < 0 {
		axis += len(x.shape)
	}
	if axis < 0 || axis > len(x.shape) {
		return nil, fmt.Errorf("axis %d is out of range for input %v", n.AttrInt("axis", 1), x.shape)
	}
	return one(b.reshape(x, []int{size(x.shape[:axis]), size(x.shape[axis:])}))
}

func buildReshape[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	target, err := b.intsOf(in, 1, "shape")
	if err != nil {
		return nil, err
	}
	x := in[0]
	allowZero := n.AttrInt("allowzero", 0) == 1
	shape := make([]int, len(target))
	infer := -1
	known := 1
	for i, d := range target {
		switch {
		case d == -1 && infer < 0:
			infer = i
			continue
		case d == -1:
			return nil, fmt.Errorf("shape %v has more than one -1", target)
		case d == 0 && !allowZero:
			if i >= len(x.shape) {
				return nil, fmt.Errorf("shape %v copies dimension %d, which input %v lacks", target, i, x.shape)
			}
			shape[i] = x.shape[i]
		case d < 0:
			return nil, fmt.Errorf("shape %v has a negative dimension", target)
		default:
			shape[i] = int(d)
		}
		known *= shape[i]
	}
	if infer >= 0 {
		if known == 0 || size(x.shape)%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", x.shape, target)
		}
		shape[infer] = size(x.shape) / known
	}
	return one(b.reshape(x, shape))
}

func buildConstant[T Float](b *builder[T], n *onnx.Node, _ []*val[T]) ([]*val[T], error) {
	a := n.Attr("value")
	if a == nil || a.Tensor == nil {
		for _, name := range []string{"value_float", "value_floats", "value_int", "value_ints"} {
			if x := n.Attr(name); x != nil {
				switch name {
				case "value_float":
					return []*val[T]{b.constant(n.Name, []T{T(x.Float)}, []int{})}, nil
				case "value_floats":
					data := make([]T, len(x.Floats))
					for i, f := range x.Floats {
						data[i] = T(f)
					}
					return []*val[T]{b.constant(n.Name, data, []int{len(data)})}, nil
				case "value_int":
					return []*val[T]{{ints: []int64{x.Int}, shape: []int{}}}, nil
				default:
					return []*val[T]{{ints: x.Ints, shape: []int{len(x.Ints)}}}, nil
				}
			}
		}
		return nil, fmt.Errorf("no value attribute (sparse constants are not supported)")
	}
	return tensorVal[T](b, n.Name, a.Tensor)
}

// tensorVal turns a constant tensor into a value: float tensors become graph
// constants, integer tensors compile-time integers.
func tensorVal[T Float](b *builder[T], name string, t *onnx.Tensor) ([]*val[T], error) {
	shape := ints(t.Dims)
	switch t.DType {
	case onnx.Float, onnx.Double:
		f, err := t.Float64s()
		if err != nil {
			return nil, err
		}
		if len(f) == 0 {
			// No Gorgonia tensor can be empty; an empty constant is read
			// only as an omitted parameter (Resize's roi, say).
			return []*val[T]{{consts: []T{}, shape: shape}}, nil
		}
		data := make([]T, len(f))
		for i, x := range f {
			data[i] = T(x)
		}
		return []*val[T]{b.constant(name, data, shape)}, nil
	}
	v, err := t.Int64s()
	if err != nil {
		return nil, fmt.Errorf("constant %q: %s tensors are not supported", name, t.DType)
	}
	return []*val[T]{{ints: v, shape: shape, elem: t.DType}}, nil
}

// Integer constants (shapes, axes, indices) are evaluated at compile time:
// the ops below compute them directly when their data is an integer
// constant, and build a kernel over the Gorgonia graph otherwise (a float
// tensor, or an integer one computed at run time, which the kernels carry
// as exact floats).

// shapeAxis resolves a possibly negative axis against a rank.
func shapeAxis(axis int64, rank int) (int, error) {
	a := axis
	if a < 0 {
		a += int64(rank)
	}
	if a < 0 || a >= int64(rank) {
		return 0, fmt.Errorf("axis %d is out of range for rank %d", axis, rank)
	}
	return int(a), nil
}

// rowMajorStrides returns the element strides of a row-major tensor.
func rowMajorStrides(shape []int) []int {
	st := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = s
		s *= shape[i]
	}
	return st
}

// affineIndex lists, for each element of a row-major tensor of the given
// shape, the source offset base + sum(pos[d] * step[d]).
func affineIndex(shape []int, base int, step []int) []int32 {
	idx := make([]int32, size(shape))
	if len(idx) == 0 {
		return idx
	}
	pos := make([]int, len(shape))
	off := base
	for o := range idx {
		idx[o] = int32(off)
		for d := len(shape) - 1; d >= 0; d-- {
			pos[d]++
			off += step[d]
			if pos[d] < shape[d] {
				break
			}
			off -= step[d] * pos[d]
			pos[d] = 0
		}
	}
	return idx
}

// checkIndexable refuses tensors too large for int32 element indices.
func checkIndexable(shapes ...[]int) error {
	for _, s := range shapes {
		if size(s) > math.MaxInt32 {
			return fmt.Errorf("tensor of shape %v is too large (more than 2^31 elements)", s)
		}
	}
	return nil
}

// indexPick is any op whose output elements are copies of input elements:
// out[i] = x[idx[i]] (Transpose, Slice, Gather, Expand). Its gradient
// scatters back, adding where an input element was read more than once.
type indexPick[T Float] struct {
	name  string
	shape []int
	idx   *table
}

func (k *indexPick[T]) describe() string       { return k.name }
func (k *indexPick[T]) outShape() []int        { return k.shape }
func (k *indexPick[T]) differentiable() []bool { return []bool{true} }
func (k *indexPick[T]) scratchBytes() int64    { return k.idx.bytes() }

func (k *indexPick[T]) forward(in [][]T, out []T) error {
	x := in[0]
	for i, j := range k.idx.get() {
		out[i] = x[j]
	}
	return nil
}

func (k *indexPick[T]) backward(_ int, _ [][]T, _, gout, gin []T) error {
	for i, j := range k.idx.get() {
		gin[j] += gout[i]
	}
	return nil
}

// picked returns the tensor of the given shape whose element i is x's
// element idx()[i]: at compile time for integer constants, else as a
// kernel, which builds the table when it first runs.
func (b *builder[T]) picked(name string, x *val[T], shape []int, idx func() []int32) (*val[T], error) {
	if x.isInt() {
		ix := idx()
		out := make([]int64, len(ix))
		for i, j := range ix {
			out[i] = x.ints[j]
		}
		return &val[T]{ints: out, shape: shape}, nil
	}
	if size(shape) == 0 {
		return nil, fmt.Errorf("the result %v is empty; Gorgonia's tensors cannot be empty", shape)
	}
	return b.apply(&indexPick[T]{name: name, shape: shape, idx: lazyTable(size(shape), idx)}, x)
}

// input0 returns the data input, or an error if it is missing.
func input0[T Float](in []*val[T]) (*val[T], error) {
	if len(in) == 0 || in[0] == nil {
		return nil, fmt.Errorf("input 0 is missing")
	}
	if in[0].node == nil && in[0].ints == nil {
		return nil, fmt.Errorf("input 0 has no value")
	}
	return in[0], nil
}

func buildTranspose[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	r := len(x.shape)
	perm := n.AttrInts("perm", nil)
	if perm == nil {
		for i := r - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != r {
		return nil, fmt.Errorf("perm %v does not fit input %v", perm, x.shape)
	}
	seen := make([]bool, r)
	out := make([]int, r)
	step := make([]int, r)
	st := rowMajorStrides(x.shape)
	for i, p := range perm {
		if p < 0 || p >= int64(r) || seen[p] {
			return nil, fmt.Errorf("perm %v is not a permutation of 0..%d", perm, r-1)
		}
		seen[p] = true
		out[i], step[i] = x.shape[p], st[p]
	}
	if err := checkIndexable(x.shape); err != nil {
		return nil, err
	}
	return one(b.picked(fmt.Sprintf("Transpose%v", perm), x, out, func() []int32 { return affineIndex(out, 0, step) }))
}

// concatOp joins its inputs along one axis.
type concatOp[T Float] struct {
	out    []int
	axis   int
	outer  int   // elements before the axis
	blocks []int // per input: its axis length times the elements after it
}

func (k *concatOp[T]) describe() string { return fmt.Sprintf("Concat(axis=%d)%v", k.axis, k.out) }
func (k *concatOp[T]) outShape() []int  { return k.out }
func (k *concatOp[T]) differentiable() []bool {
	d := make([]bool, len(k.blocks))
	for i := range d {
		d[i] = true
	}
	return d
}

func (k *concatOp[T]) forward(in [][]T, out []T) error {
	concatInto(out, in, k.outer, k.blocks)
	return nil
}

func (k *concatOp[T]) backward(i int, _ [][]T, _, gout, gin []T) error {
	row, off := 0, 0
	for j, bk := range k.blocks {
		if j < i {
			off += bk
		}
		row += bk
	}
	bk := k.blocks[i]
	for o := 0; o < k.outer; o++ {
		copy(gin[o*bk:(o+1)*bk], gout[o*row+off:])
	}
	return nil
}

// concatInto writes the parts, each outer rows of blocks[i] elements, side
// by side into out.
func concatInto[E any](out []E, parts [][]E, outer int, blocks []int) {
	row := 0
	for _, bk := range blocks {
		row += bk
	}
	for o := 0; o < outer; o++ {
		off := o * row
		for i, bk := range blocks {
			copy(out[off:off+bk], parts[i][o*bk:(o+1)*bk])
			off += bk
		}
	}
}

func buildConcat[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	var parts []*val[T]
	for i, v := range in {
		if v == nil {
			return nil, fmt.Errorf("input %d is missing", i)
		}
		parts = append(parts, v)
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("no inputs")
	}
	a := n.Attr("axis")
	if a == nil {
		return nil, fmt.Errorf("the axis attribute is required")
	}
	r := len(parts[0].shape)
	axis, err := shapeAxis(a.Int, r)
	if err != nil {
		return nil, err
	}
	out := append([]int(nil), parts[0].shape...)
	out[axis] = 0
	allInts := true
	for _, v := range parts {
		if len(v.shape) != r {
			return nil, fmt.Errorf("inputs of ranks %d and %d", r, len(v.shape))
		}
		for d := range v.shape {
			if d != axis && v.shape[d] != out[d] {
				return nil, fmt.Errorf("input shapes %v and %v differ outside axis %d", parts[0].shape, v.shape, axis)
			}
		}
		out[axis] += v.shape[axis]
		allInts = allInts && v.isInt()
	}
	outer, inner := size(out[:axis]), size(out[axis+1:])
	if allInts {
		data := make([]int64, size(out))
		ps := make([][]int64, len(parts))
		blocks := make([]int, len(parts))
		for i, v := range parts {
			ps[i], blocks[i] = v.ints, v.shape[axis]*inner
		}
		concatInto(data, ps, outer, blocks)
		return []*val[T]{{ints: data, shape: out}}, nil
	}
	// Empty parts add nothing (and cannot be Gorgonia tensors).
	k := &concatOp[T]{out: out, axis: axis, outer: outer}
	var args []*val[T]
	for _, v := range parts {
		if size(v.shape) == 0 {
			continue
		}
		args = append(args, v)
		k.blocks = append(k.blocks, v.shape[axis]*inner)
	}
	return one(b.apply(k, args...))
}

// axesOf returns the axes of Squeeze or Unsqueeze: an attribute before
// opset 13, an optional input from 13. ok is false when none are given.
func axesOf[T Float](b *builder[T], n *onnx.Node, in []*val[T]) (axes []int64, ok bool, err error) {
	if b.opset < 13 {
		if a := n.Attr("axes"); a != nil {
			return a.Ints, true, nil
		}
		return nil, false, nil
	}
	if len(in) < 2 || in[1] == nil {
		return nil, false, nil
	}
	axes, err = b.intsOf(in, 1, "axes")
	return axes, err == nil, err
}

func buildSqueeze[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	axes, given, err := axesOf(b, n, in)
	if err != nil {
		return nil, err
	}
	drop := make([]bool, len(x.shape))
	for i, d := range x.shape {
		drop[i] = !given && d == 1
	}
	for _, a := range axes {
		ax, err := shapeAxis(a, len(x.shape))
		if err != nil {
			return nil, err
		}
		if x.shape[ax] != 1 {
			return nil, fmt.Errorf("cannot squeeze axis %d of %v: its size is not 1", a, x.shape)
		}
		drop[ax] = true
	}
	shape := []int{}
	for i, d := range x.shape {
		if !drop[i] {
			shape = append(shape, d)
		}
	}
	return one(b.reshape(x, shape))
}

func buildUnsqueeze[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	axes, given, err := axesOf(b, n, in)
	if err != nil {
		return nil, err
	}
	if !given {
		return nil, fmt.Errorf("axes are required")
	}
	r := len(x.shape) + len(axes)
	ins := make([]bool, r)
	for _, a := range axes {
		ax, err := shapeAxis(a, r)
		if err != nil {
			return nil, err
		}
		if ins[ax] {
			return nil, fmt.Errorf("axes %v repeat an axis", axes)
		}
		ins[ax] = true
	}
	shape := make([]int, r)
	j := 0
	for i := range shape {
		if ins[i] {
			shape[i] = 1
		} else {
			shape[i] = x.shape[j]
			j++
		}
	}
	return one(b.reshape(x, shape))
}

// clampDim resolves a Shape start or end: negative counts from the back,
// and out-of-range values clamp to [0, rank].
func clampDim(v int64, rank int) int {
	if v < 0 {
		v += int64(rank)
	}
	return int(min(max(v, 0), int64(rank)))
}

func buildShape[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	r := len(x.shape)
	start, end := 0, r
	if b.opset >= 15 {
		start = clampDim(n.AttrInt("start", 0), r)
		end = clampDim(n.AttrInt("end", int64(r)), r)
	}
	dims := make([]int64, 0, r)
	for i := start; i < end; i++ {
		dims = append(dims, int64(x.shape[i]))
	}
	return []*val[T]{{ints: dims, shape: []int{len(dims)}, elem: onnx.Int64}}, nil
}

func buildSize[T Float](_ *builder[T], _ *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	return []*val[T]{{ints: []int64{int64(size(x.shape))}, shape: []int{}, elem: onnx.Int64}}, nil
}

func buildGather[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	if len(in) < 2 || in[1] == nil {
		return nil, fmt.Errorf("input 1 (indices) is missing")
	}
	if !in[1].integral() {
		return nil, fmt.Errorf("indices are %s, not integers", in[1].dtype())
	}
	if len(x.shape) == 0 {
		return nil, fmt.Errorf("cannot gather from a scalar")
	}
	axis, err := shapeAxis(n.AttrInt("axis", 0), len(x.shape))
	if err != nil {
		return nil, err
	}
	if !in[1].isInt() {
		return one(b.gatherAtRunTime(x, in[1], axis))
	}
	indices := in[1].ints
	dim := x.shape[axis]
	out := append(append(append([]int{}, x.shape[:axis]...), in[1].shape...), x.shape[axis+1:]...)
	if err := checkIndexable(x.shape, out); err != nil {
		return nil, err
	}
	outer, inner := size(x.shape[:axis]), size(x.shape[axis+1:])
	idx := make([]int32, 0, size(out))
	for o := 0; o < outer; o++ {
		for _, j := range indices {
			if j < 0 {
				j += int64(dim)
			}
			if j < 0 || j >= int64(dim) {
				return nil, fmt.Errorf("index %d is out of range for axis %d of %v", j, axis, x.shape)
			}
			base := (o*dim + int(j)) * inner
			for k := 0; k < inner; k++ {
				idx = append(idx, int32(base+k))
			}
		}
	}
	return one(b.picked(fmt.Sprintf("Gather(axis=%d)%v", axis, out), x, out, func() []int32 { return idx }))
}

// floatType reports whether an ONNX element type is computed as float, and
// refuses types graft cannot represent.
func floatType(dt onnx.DType) (bool, error) {
	switch dt {
	case onnx.Float, onnx.Double:
		return true, nil
	case onnx.Int64, onnx.Int32, onnx.Int16, onnx.Int8, onnx.Uint64, onnx.Uint32, onnx.Uint16, onnx.Uint8, onnx.Bool:
		return false, nil
	case onnx.Float16, onnx.BFloat16:
		return false, fmt.Errorf("%s is not supported: graft computes in float32 or float64", dt)
	}
	return false, fmt.Errorf("%s tensors are not supported", dt)
}

// floatVal returns float values as a graph constant, refusing empty ones.
func floatVal[T Float](b *builder[T], n *onnx.Node, data []T, shape []int) (*val[T], error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("the float result %v is empty; Gorgonia's tensors cannot be empty", shape)
	}
	return b.constant(n.OpType+":"+n.Name, data, shape), nil
}

func buildConstantOfShape[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	dims, err := b.intsOf(in, 0, "shape")
	if err != nil {
		return nil, err
	}
	shape := make([]int, len(dims))
	for i, d := range dims {
		if d < 0 {
			return nil, fmt.Errorf("shape %v has a negative dimension", dims)
		}
		shape[i] = int(d)
	}
	if err := checkIndexable(shape); err != nil {
		return nil, err
	}
	isFloat, fill, ints, dt := true, 0.0, int64(0), onnx.Float
	if a := n.Attr("value"); a != nil && a.Tensor != nil {
		t := a.Tensor
		dt = t.DType
		if t.NumElements() != 1 {
			return nil, fmt.Errorf("value must hold one element, not %d", t.NumElements())
		}
		if isFloat, err = floatType(t.DType); err != nil {
			return nil, err
		}
		if isFloat {
			f, err := t.Float64s()
			if err != nil {
				return nil, err
			}
			fill = f[0]
		} else {
			v, err := t.Int64s()
			if err != nil {
				return nil, err
			}
			ints = v[0]
		}
	}
	// The result is computed now, while the graph is built: check it
	// before the session's estimate can.
	elem := int64(8)
	if isFloat {
		elem = int64(unsafe.Sizeof(T(0)))
	}
	if err := memlimit.Check(fmt.Sprintf("the constant %s", shapeString(shape)), memlimit.Mul(int64(size(shape)), elem)); err != nil {
		return nil, err
	}
	if !isFloat {
		data := make([]int64, size(shape))
		for i := range data {
			data[i] = ints
		}
		return []*val[T]{{ints: data, shape: shape, elem: dt}}, nil
	}
	data := make([]T, size(shape))
	for i := range data {
		data[i] = T(fill)
	}
	v, err := floatVal(b, n, data, shape)
	if err != nil {
		return nil, err
	}
	v.elem = onnx.Float // not the type of the shape, input 0
	return []*val[T]{v}, nil
}

// sliceRange resolves one axis of Slice: the first element read and how
// many, after ONNX's clamping of start and end to the axis.
func sliceRange(start, end, step int64, dim int) (first, count int) {
	d := int64(dim)
	if start < 0 {
		start += d
	}
	if end < 0 {
		end += d
	}
	if step > 0 {
		start, end = min(max(start, 0), d), min(max(end, 0), d)
		if end <= start {
			return int(start), 0
		}
		return int(start), int((end - start + step - 1) / step)
	}
	start, end = min(max(start, 0), d-1), min(max(end, -1), d-1)
	if start <= end {
		return int(start), 0
	}
	return int(start), int((start - end - step - 1) / -step)
}

func buildSlice[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	var starts, ends, axes, steps []int64
	if b.opset < 10 {
		starts, ends, axes = n.AttrInts("starts", nil), n.AttrInts("ends", nil), n.AttrInts("axes", nil)
		if starts == nil || ends == nil {
			return nil, fmt.Errorf("the starts and ends attributes are required")
		}
	} else {
		if starts, err = b.intsOf(in, 1, "starts"); err != nil {
			return nil, err
		}
		if ends, err = b.intsOf(in, 2, "ends"); err != nil {
			return nil, err
		}
		if len(in) > 3 && in[3] != nil {
			if axes, err = b.intsOf(in, 3, "axes"); err != nil {
				return nil, err
			}
		}
		if len(in) > 4 && in[4] != nil {
			if steps, err = b.intsOf(in, 4, "steps"); err != nil {
				return nil, err
			}
		}
	}
	if axes == nil {
		for i := range starts {
			axes = append(axes, int64(i))
		}
	}
	if steps == nil {
		for range starts {
			steps = append(steps, 1)
		}
	}
	if len(ends) != len(starts) || len(axes) != len(starts) || len(steps) != len(starts) {
		return nil, fmt.Errorf("starts %v, ends %v, axes %v and steps %v differ in length", starts, ends, axes, steps)
	}
	r := len(x.shape)
	if err := checkIndexable(x.shape); err != nil {
		return nil, err
	}
	first := make([]int, r)
	step := make([]int, r)
	out := append([]int(nil), x.shape...)
	for d := range step {
		step[d] = 1
	}
	seen := make([]bool, r)
	for i, a := range axes {
		ax, err := shapeAxis(a, r)
		if err != nil {
			return nil, err
		}
		if seen[ax] {
			return nil, fmt.Errorf("axes %v repeat an axis", axes)
		}
		seen[ax] = true
		if steps[i] == 0 {
			return nil, fmt.Errorf("steps %v has a zero step", steps)
		}
		first[ax], out[ax] = sliceRange(starts[i], ends[i], steps[i], x.shape[ax])
		step[ax] = int(steps[i])
	}
	st := rowMajorStrides(x.shape)
	base := 0
	for d := range st {
		base += first[d] * st[d]
		step[d] *= st[d]
	}
	return one(b.picked(fmt.Sprintf("Slice%v%v", first, out), x, out, func() []int32 { return affineIndex(out, base, step) }))
}

func buildExpand[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	target, err := b.intsOf(in, 1, "shape")
	if err != nil {
		return nil, err
	}
	for _, d := range target {
		if d < 0 {
			return nil, fmt.Errorf("shape %v has a negative dimension", target)
		}
	}
	out, err := broadcast(x.shape, ints(target))
	if err != nil {
		return nil, err
	}
	if err := checkIndexable(out); err != nil {
		return nil, err
	}
	return one(b.picked(fmt.Sprintf("Expand%v", out), x, out, func() []int32 { return broadcastIndex(x.shape, out) }))
}

func buildRange[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) != 3 || in[0] == nil || in[1] == nil || in[2] == nil {
		return nil, fmt.Errorf("needs start, limit and delta")
	}
	if in[0].isInt() && in[1].isInt() && in[2].isInt() {
		start, limit, delta := in[0].ints, in[1].ints, in[2].ints
		if len(start) != 1 || len(limit) != 1 || len(delta) != 1 {
			return nil, fmt.Errorf("start, limit and delta must be scalars")
		}
		s, l, d := start[0], limit[0], delta[0]
		if d == 0 {
			return nil, fmt.Errorf("delta is 0")
		}
		count := int64(0)
		if d > 0 && l > s {
			count = (l - s + d - 1) / d
		} else if d < 0 && l < s {
			count = (s - l - d - 1) / -d
		}
		if count > math.MaxInt32 {
			return nil, fmt.Errorf("range of %d elements is too large", count)
		}
		data := make([]int64, count)
		for i := range data {
			data[i] = s + int64(i)*d
		}
		return []*val[T]{{ints: data, shape: []int{len(data)}}}, nil
	}
	var vals [3]T
	for i, what := range []string{"start", "limit", "delta"} {
		c, err := b.floatConsts(in, i, what)
		if err != nil {
			return nil, fmt.Errorf("%w (graft needs Range's bounds at compile time)", err)
		}
		if len(c) != 1 {
			return nil, fmt.Errorf("%s must be a scalar", what)
		}
		vals[i] = c[0]
	}
	s, l, d := vals[0], vals[1], vals[2]
	if d == 0 {
		return nil, fmt.Errorf("delta is 0")
	}
	c := math.Ceil(float64((l - s) / d))
	if c > math.MaxInt32 || math.IsNaN(c) {
		return nil, fmt.Errorf("range(%g, %g, %g) is too large", s, l, d)
	}
	data := make([]T, int(max(c, 0)))
	for i := range data {
		data[i] = s + T(i)*d
	}
	return one(floatVal(b, n, data, []int{len(data)}))
}
