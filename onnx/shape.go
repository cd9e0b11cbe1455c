package onnx

import (
	"fmt"
	"strings"
)

// InferShapes gives a type to every node output that lacks one, from the
// types of the graph inputs and initializers, for the operators graft knows
// (see ShapeOps). Symbolic dimensions such as "batch" pass through where an
// operator keeps them. Outputs of other operators stay untyped. It fails,
// naming the node, where the shapes it sees are inconsistent (a Gemm whose
// inner dimensions differ, say). Types already present are not changed.
func (m *Model) InferShapes() error {
	return m.Graph.inferShapes(m.OpsetVersion(""))
}

// ShapeOps lists the operators InferShapes knows.
func ShapeOps() []string {
	var ops []string
	for op := range shapeRules {
		ops = append(ops, op)
	}
	return ops
}

func (g *Graph) inferShapes(opset int64) error {
	order, cycle := g.topoOrder()
	if cycle != nil {
		return cycleError(cycle)
	}
	for _, n := range order {
		rule, ok := shapeRules[n.OpType]
		if !ok || n.Domain != "" && n.Domain != "ai.onnx" {
			continue
		}
		in := make([]*Type, len(n.Inputs))
		for i, v := range n.Inputs {
			if v != nil {
				in[i] = v.Type
			}
		}
		out, err := rule(n, in, opset)
		if err != nil {
			return fmt.Errorf("shape inference: %s: %w", n, err)
		}
		for i, t := range out {
			if i < len(n.Outputs) && n.Outputs[i] != nil && n.Outputs[i].Type == nil && t != nil {
				n.Outputs[i].Type = t
			}
		}
	}
	return nil
}

type shapeRule func(n *Node, in []*Type, opset int64) ([]*Type, error)

var shapeRules map[string]shapeRule

func init() {
	same := func(n *Node, in []*Type, _ int64) ([]*Type, error) { return []*Type{in[0]}, nil }
	shapeRules = map[string]shapeRule{
		"Relu": same, "LeakyRelu": same, "Sigmoid": same, "Tanh": same, "Clip": same,
		"Identity": same, "Dropout": same, "Softmax": same, "LogSoftmax": same,
		"BatchNormalization": same, "Neg": same, "Exp": same, "Log": same, "Sqrt": same,
		"Abs": same, "Sign": same,
		"HardSigmoid": same, "HardSwish": same, "Erf": same, "Gelu": same, "Softplus": same,
		"InstanceNormalization": same,
		"LayerNormalization":    layerNormRule,
		"Max":                   variadicBroadcastRule, "Min": variadicBroadcastRule,
		"Add": broadcastRule, "Sub": broadcastRule, "Mul": broadcastRule, "Div": broadcastRule,
		"Pow":               broadcastRule,
		"Conv":              convRule,
		"MaxPool":           poolRule,
		"AveragePool":       poolRule,
		"GlobalAveragePool": globalPoolRule,
		"GlobalMaxPool":     globalPoolRule,
		"ReduceMean":        reduceRule, "ReduceSum": reduceRule, "ReduceMax": reduceRule,
		"ReduceMin": reduceRule, "ReduceProd": reduceRule, "ReduceL2": reduceRule,
		"Flatten":    flattenRule,
		"Gemm":       gemmRule,
		"MatMul":     matmulRule,
		"Transpose":  transposeRule,
		"Reshape":    reshapeRule,
		"Constant":   constantRule,
		"GridSample": gridSampleRule,
		"Concat":     concatRule,
		"Shape":      shapeOfRule,
	}
	addIndexRules(shapeRules)
}

// known returns the tensor shape of t, or nil if t or its rank is unknown.
func known(t *Type) Shape {
	if t == nil || !t.IsTensor() {
		return nil
	}
	return t.Shape
}

func withShape(like *Type, s Shape) *Type {
	elem := Undefined
	if like != nil {
		elem = like.Elem
	}
	return &Type{Elem: elem, Shape: s}
}

func (d Dim) plain() Dim { return Dim{Value: d.Value, Param: d.Param} }

// broadcastRule applies numpy broadcasting to two inputs.
func broadcastRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	if len(in) < 2 {
		return nil, fmt.Errorf("needs 2 inputs, has %d", len(in))
	}
	a, b := known(in[0]), known(in[1])
	if a == nil || b == nil {
		return []*Type{withShape(in[0], nil)}, nil
	}
	r := max(len(a), len(b))
	out := make(Shape, r)
	for i := 0; i < r; i++ {
		da, db := Fixed(1), Fixed(1)
		if j := i - (r - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (r - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da.Known() && da.Value == 1:
			out[i] = db.plain()
		case db.Known() && db.Value == 1:
			out[i] = da.plain()
		case da.Known() && db.Known() && da.Value != db.Value:
			return nil, fmt.Errorf("cannot broadcast %v with %v", a, b)
		case da.Known():
			out[i] = da.plain()
		case db.Known():
			out[i] = db.plain()
		case da.Param != "" && da.Param == db.Param:
			out[i] = da.plain()
		default:
			out[i] = UnknownDim()
		}
	}
	return []*Type{withShape(in[0], out)}, nil
}

// variadicBroadcastRule broadcasts any number of inputs (Max, Min).
func variadicBroadcastRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("needs at least one input")
	}
	acc := in[0]
	for _, t := range in[1:] {
		out, err := broadcastRule(n, []*Type{acc, t}, 0)
		if err != nil {
			return nil, err
		}
		acc = out[0]
	}
	return []*Type{acc}, nil
}

// layerNormRule: Y has X's type; Mean and InvStdDev have X's shape with 1
// from axis on, in the stash_type.
func layerNormRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	x := known(in[0])
	if x == nil {
		return []*Type{in[0]}, nil
	}
	axis := n.AttrInt("axis", -1)
	if axis < 0 {
		axis += int64(len(x))
	}
	if axis < 0 || axis >= int64(len(x)) {
		return nil, fmt.Errorf("axis %d out of range for input %v", n.AttrInt("axis", -1), x)
	}
	stat := make(Shape, len(x))
	for i, d := range x {
		stat[i] = d.plain()
		if int64(i) >= axis {
			stat[i] = Fixed(1)
		}
	}
	st := &Type{Elem: DType(n.AttrInt("stash_type", int64(Float))), Shape: stat}
	return []*Type{in[0], st, st}, nil
}

// spatial computes the output size of a sliding window along one axis.
func spatial(in Dim, k, s, d, padTotal int64, ceil bool) Dim {
	if !in.Known() {
		return UnknownDim()
	}
	eff := d*(k-1) + 1
	num := in.Value + padTotal - eff
	if num < 0 {
		return Fixed(0)
	}
	if ceil {
		out := (num+s-1)/s + 1
		// The last window must start inside the input or left padding.
		if (out-1)*s >= in.Value+padTotal/2 {
			out--
		}
		return Fixed(out)
	}
	return Fixed(num/s + 1)
}

// windowRule is shared by Conv and the pools: batch and channel dims, then
// one sliding window per spatial axis.
func windowRule(n *Node, x Shape, kernel []int64, channels Dim) (Shape, error) {
	rank := len(x) - 2
	if rank < 1 {
		return nil, fmt.Errorf("input %v has rank %d, want at least 3", x, len(x))
	}
	if len(kernel) != rank {
		return nil, fmt.Errorf("kernel %v does not match input %v", kernel, x)
	}
	ones := func() []int64 {
		v := make([]int64, rank)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	strides := n.AttrInts("strides", ones())
	dil := n.AttrInts("dilations", ones())
	pads := n.AttrInts("pads", make([]int64, 2*rank))
	if len(strides) != rank || len(dil) != rank || len(pads) != 2*rank {
		return nil, fmt.Errorf("strides %v, dilations %v or pads %v do not fit a %d-d input", strides, dil, pads, rank)
	}
	ceil := n.AttrInt("ceil_mode", 0) == 1
	autoPad := n.AttrString("auto_pad", "NOTSET")
	out := Shape{x[0].plain(), channels}
	for i := 0; i < rank; i++ {
		in := x[2+i]
		switch autoPad {
		case "SAME_UPPER", "SAME_LOWER":
			if in.Known() {
				out = append(out, Fixed((in.Value+strides[i]-1)/strides[i]))
			} else {
				out = append(out, UnknownDim())
			}
		case "VALID":
			out = append(out, spatial(in, kernel[i], strides[i], dil[i], 0, ceil))
		default:
			out = append(out, spatial(in, kernel[i], strides[i], dil[i], pads[i]+pads[i+rank], ceil))
		}
	}
	return out, nil
}

func convRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	if len(in) < 2 {
		return nil, fmt.Errorf("needs at least 2 inputs, has %d", len(in))
	}
	x, w := known(in[0]), known(in[1])
	if x == nil || w == nil {
		return []*Type{withShape(in[0], nil)}, nil
	}
	if len(w) != len(x) {
		return nil, fmt.Errorf("weight %v and input %v differ in rank", w, x)
	}
	group := n.AttrInt("group", 1)
	if x[1].Known() && w[1].Known() && x[1].Value != w[1].Value*group {
		return nil, fmt.Errorf("input has %d channels but weight %v with group %d expects %d", x[1].Value, w, group, w[1].Value*group)
	}
	kernel := n.AttrInts("kernel_shape", nil)
	if kernel == nil {
		ws, ok := w[2:].Ints()
		if !ok {
			return []*Type{withShape(in[0], nil)}, nil
		}
		kernel = ws
	}
	s, err := windowRule(n, x, kernel, w[0].plain())
	if err != nil {
		return nil, err
	}
	return []*Type{withShape(in[0], s)}, nil
}

func poolRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	x := known(in[0])
	if x == nil {
		return []*Type{withShape(in[0], nil)}, nil
	}
	kernel := n.AttrInts("kernel_shape", nil)
	if kernel == nil {
		return nil, fmt.Errorf("kernel_shape is required")
	}
	s, err := windowRule(n, x, kernel, x[1].plain())
	if err != nil {
		return nil, err
	}
	return []*Type{withShape(in[0], s)}, nil
}

func globalPoolRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	x := known(in[0])
	if x == nil {
		return []*Type{withShape(in[0], nil)}, nil
	}
	s := Shape{x[0].plain(), x[1].plain()}
	for range x[2:] {
		s = append(s, Fixed(1))
	}
	return []*Type{withShape(in[0], s)}, nil
}

// reduceRule is the Reduce* operators' shape: axes from the attribute
// (ReduceSum from opset 13, the others from 18: from the second input, when
// it is a constant), keepdims, and noop_with_empty_axes.
func reduceRule(n *Node, in []*Type, opset int64) ([]*Type, error) {
	x := known(in[0])
	if x == nil {
		return []*Type{withShape(in[0], nil)}, nil
	}
	axes := n.AttrInts("axes", nil)
	if len(n.Inputs) > 1 && n.Inputs[1] != nil {
		var ok bool
		if axes, ok = constInput(n, 1); !ok {
			return []*Type{withShape(in[0], nil)}, nil // axes computed at run time
		}
	}
	keep := n.AttrInt("keepdims", 1) == 1
	if len(axes) == 0 && n.AttrInt("noop_with_empty_axes", 0) == 1 {
		return []*Type{withShape(in[0], x)}, nil
	}
	reduced := make([]bool, len(x))
	for _, a := range axes {
		if a < 0 {
			a += int64(len(x))
		}
		if a < 0 || a >= int64(len(x)) {
			return nil, fmt.Errorf("axis out of range for input %v", x)
		}
		reduced[a] = true
	}
	var s Shape
	for i, d := range x {
		switch {
		case len(axes) > 0 && !reduced[i]:
			s = append(s, d.plain())
		case keep:
			s = append(s, Fixed(1))
		}
	}
	if s == nil {
		s = Shape{}
	}
	return []*Type{withShape(in[0], s)}, nil
}

// product multiplies dims, or returns an unknown dim if any is not fixed.
func product(s Shape) Dim {
	n := int64(1)
	for _, d := range s {
		if !d.Known() {
			return UnknownDim()
		}
		n *= d.Value
	}
	return Fixed(n)
}

func flattenRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	x := known(in[0])
	if x == nil {
		return []*Type{withShape(in[0], Shape{UnknownDim(), UnknownDim()})}, nil
	}
	axis := n.AttrInt("axis", 1)
	if axis < 0 {
		axis += int64(len(x))
	}
	if axis < 0 || axis > int64(len(x)) {
		return nil, fmt.Errorf("axis %d out of range for input %v", n.AttrInt("axis", 1), x)
	}
	outer := product(x[:axis])
	if axis == 1 {
		outer = x[0].plain()
	}
	return []*Type{withShape(in[0], Shape{outer, product(x[axis:])})}, nil
}

func gemmRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	if len(in) < 2 {
		return nil, fmt.Errorf("needs at least 2 inputs, has %d", len(in))
	}
	a, b := known(in[0]), known(in[1])
	if a == nil || b == nil {
		return []*Type{withShape(in[0], Shape{UnknownDim(), UnknownDim()})}, nil
	}
	if len(a) != 2 || len(b) != 2 {
		return nil, fmt.Errorf("inputs %v and %v must be matrices", a, b)
	}
	if n.AttrInt("transA", 0) == 1 {
		a = Shape{a[1], a[0]}
	}
	if n.AttrInt("transB", 0) == 1 {
		b = Shape{b[1], b[0]}
	}
	if a[1].Known() && b[0].Known() && a[1].Value != b[0].Value {
		return nil, fmt.Errorf("A %v times B %v: inner dimensions %d and %d differ", a, b, a[1].Value, b[0].Value)
	}
	return []*Type{withShape(in[0], Shape{a[0].plain(), b[1].plain()})}, nil
}

func matmulRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	a, b := known(in[0]), known(in[1])
	if a == nil || b == nil || len(a) < 2 || len(b) < 2 {
		// 1-d operands and unknown ranks: leave to the runtime.
		return []*Type{withShape(in[0], nil)}, nil
	}
	k1, k2 := a[len(a)-1], b[len(b)-2]
	if k1.Known() && k2.Known() && k1.Value != k2.Value {
		return nil, fmt.Errorf("%v times %v: inner dimensions %d and %d differ", a, b, k1.Value, k2.Value)
	}
	batch, err := broadcastRule(n, []*Type{withShape(in[0], a[:len(a)-2]), withShape(in[1], b[:len(b)-2])}, 0)
	if err != nil {
		return nil, err
	}
	s := append(append(Shape{}, batch[0].Shape...), a[len(a)-2].plain(), b[len(b)-1].plain())
	return []*Type{withShape(in[0], s)}, nil
}

func transposeRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	x := known(in[0])
	if x == nil {
		return []*Type{withShape(in[0], nil)}, nil
	}
	perm := n.AttrInts("perm", nil)
	if perm == nil {
		for i := len(x) - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != len(x) {
		return nil, fmt.Errorf("perm %v does not fit input %v", perm, x)
	}
	s := make(Shape, len(x))
	for i, p := range perm {
		if p < 0 || p >= int64(len(x)) {
			return nil, fmt.Errorf("perm %v out of range for input %v", perm, x)
		}
		s[i] = x[p].plain()
	}
	return []*Type{withShape(in[0], s)}, nil
}

// ConstInput returns input i of n when it is a constant, an initializer or
// a Constant node's output, and nil otherwise.
func (n *Node) ConstInput(i int) *Tensor {
	v := n.Input(i)
	if v == nil {
		return nil
	}
	if v.Const == nil && v.producer != nil && v.producer.OpType == "Constant" {
		if a := v.producer.Attr("value"); a != nil {
			return a.Tensor
		}
	}
	return v.Const
}

// constInput returns the int64 values of input i when it is a constant.
func constInput(n *Node, i int) ([]int64, bool) {
	t := n.ConstInput(i)
	if t == nil {
		return nil, false
	}
	vals, err := t.Int64s()
	return vals, err == nil
}

func reshapeRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	target, ok := constInput(n, 1)
	if !ok {
		return []*Type{withShape(in[0], nil)}, nil
	}
	x := known(in[0])
	allowZero := n.AttrInt("allowzero", 0) == 1
	s := make(Shape, len(target))
	inferAt := -1
	for i, d := range target {
		switch {
		case d == -1:
			if inferAt >= 0 {
				return nil, fmt.Errorf("shape %v has more than one -1", target)
			}
			inferAt = i
		case d == 0 && !allowZero:
			if x == nil || i >= len(x) {
				return nil, fmt.Errorf("shape %v copies dimension %d that input %v lacks", target, i, x)
			}
			s[i] = x[i].plain()
		case d < 0:
			return nil, fmt.Errorf("shape %v has negative dimension %d", target, d)
		default:
			s[i] = Fixed(d)
		}
	}
	if inferAt >= 0 {
		s[inferAt] = UnknownDim()
		total, rest := product(x), product(append(append(Shape{}, s[:inferAt]...), s[inferAt+1:]...))
		switch {
		case x != nil && total.Known() && rest.Known() && rest.Value > 0:
			if total.Value%rest.Value != 0 {
				return nil, fmt.Errorf("cannot reshape %v to %v", x, target)
			}
			s[inferAt] = Fixed(total.Value / rest.Value)
		case x != nil && rest.Known() && len(x) > 0 && !x[0].Known() && product(x[1:]).Known() && product(x[1:]).Value == rest.Value:
			// [batch, ...] to [-1, ...] keeping the per-sample size: the batch dim carries over.
			s[inferAt] = x[0].plain()
		}
	}
	return []*Type{withShape(in[0], s)}, nil
}

func constantRule(n *Node, _ []*Type, _ int64) ([]*Type, error) {
	a := n.Attr("value")
	if a == nil || a.Tensor == nil {
		return nil, nil
	}
	return []*Type{TensorType(a.Tensor.DType, a.Tensor.Dims...)}, nil
}

func gridSampleRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	x, grid := known(in[0]), known(in[1])
	if x == nil || grid == nil {
		return []*Type{withShape(in[0], nil)}, nil
	}
	if len(x) != 4 || len(grid) != 4 {
		return nil, fmt.Errorf("input %v and grid %v must be 4-d", x, grid)
	}
	return []*Type{withShape(in[0], Shape{x[0].plain(), x[1].plain(), grid[1].plain(), grid[2].plain()})}, nil
}

func concatRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	first := known(in[0])
	if first == nil {
		return []*Type{withShape(in[0], nil)}, nil
	}
	axis := n.AttrInt("axis", 0)
	if axis < 0 {
		axis += int64(len(first))
	}
	if axis < 0 || axis >= int64(len(first)) {
		return nil, fmt.Errorf("axis %d out of range for %v", n.AttrInt("axis", 0), first)
	}
	s := append(Shape{}, first...)
	sum := int64(0)
	for _, t := range in {
		x := known(t)
		if x == nil || len(x) != len(first) {
			return []*Type{withShape(in[0], nil)}, nil
		}
		if !x[axis].Known() || sum < 0 {
			sum = -1
			continue
		}
		sum += x[axis].Value
	}
	s[axis] = Dim{Value: sum}
	return []*Type{withShape(in[0], s)}, nil
}

func shapeOfRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	x := known(in[0])
	if x == nil {
		return []*Type{{Elem: Int64, Shape: Shape{UnknownDim()}}}, nil
	}
	return []*Type{TensorType(Int64, int64(len(x)))}, nil
}

// String prints a type as float32[batch,3,224,224].
func (t *Type) String() string {
	if t == nil {
		return "?"
	}
	if !t.IsTensor() {
		return strings.TrimSpace(t.other.String())
	}
	return t.Elem.String() + t.Shape.String()
}
