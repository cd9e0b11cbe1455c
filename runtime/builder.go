package runtime

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/graft-dev/graft/onnx"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// A val is an ONNX value during graph building: a Gorgonia node of known
// shape, or, for integer tensors known when the graph is built (shapes,
// axes, indices), their elements.
//
// Integer and boolean tensors computed at run time (comparison masks,
// indices that depend on data) are Gorgonia nodes of the program's float
// type holding exact integers, booleans as 0 and 1, with elem naming their
// ONNX type. Every kernel that moves elements (Reshape, Transpose, Gather,
// Concat, ...) is then exact on them as it is; the kernels with integer
// semantics (division, Mod, Cast, comparisons) read elem, and integer
// arithmetic refuses a result beyond the integers the float type holds
// exactly (2^24 in float32, 2^53 in float64) rather than round it.
type val[T Float] struct {
	node  *G.Node
	shape []int
	// ints holds an integer tensor's elements when known at compile time;
	// such values parameterise the graph (shapes are fixed per session)
	// and are folded rather than computed.
	ints []int64
	// consts holds a float value's elements when known at compile time (a
	// frozen initializer or a Constant node), for ops that read attribute-
	// like inputs such as Clip's bounds or Pad's value.
	consts []T
	// need marks values that depend on something a gradient is wanted for.
	need bool
	// elem is the ONNX element type of an integer or boolean value.
	// Undefined means float for a node and int64 for ints. An op's outputs
	// take its input 0's type unless its builder sets one.
	elem onnx.DType
}

func (v *val[T]) isInt() bool { return v.node == nil && v.ints != nil }

// dtype is the value's ONNX element type; float values say Float.
func (v *val[T]) dtype() onnx.DType {
	switch {
	case v.elem == onnx.Double:
		return onnx.Float
	case v.elem != onnx.Undefined:
		return v.elem
	case v.isInt():
		return onnx.Int64
	}
	return onnx.Float
}

// integral reports whether the value is an integer or boolean tensor.
func (v *val[T]) integral() bool { return v.dtype() != onnx.Float }

// exactInts is the bound below which T holds every integer exactly: 2^24
// for float32, 2^53 for float64. Integer tensors computed at run time stay
// within it.
func exactInts[T Float]() int64 {
	var z T
	if _, ok := any(z).(float32); ok {
		return 1 << 24
	}
	return 1 << 53
}

// exactly converts an integer result to T, reporting whether T holds it
// exactly.
func exactly[T Float](r int64) (T, bool) {
	f := T(r)
	if lim := exactInts[T](); r > -lim && r < lim {
		return f, true
	}
	g := float64(f)
	return f, g < 0x1p63 && int64(g) == r
}

// exactOnIntegers lists the ops whose float kernels give integer inputs'
// exact results (they move, compare or select elements), so an integer
// tensor computed at run time may flow through them keeping its type.
// Other ops refuse one, rather than compute integers with float rules.
var exactOnIntegers = map[string]bool{
	"Identity": true, "Reshape": true, "Flatten": true, "Transpose": true, "Squeeze": true,
	"Unsqueeze": true, "Concat": true, "Slice": true, "Gather": true, "Expand": true,
	"Split": true, "Pad": true, "Neg": true, "Abs": true, "Relu": true, "Clip": true,
	"MaxPool": true, "GlobalMaxPool": true, "ReduceMax": true, "Min": true, "Max": true,
}

// A constantError says an input that parameterises the graph (a shape,
// axes, Resize's scales, Clip's bounds) is computed at run time: graft
// needs it when the graph is built, as shapes are fixed per session.
type constantError struct {
	input   int
	what    string
	value   string // the ONNX value's name
	integer bool
}

func (e *constantError) Error() string {
	if e.integer {
		return fmt.Sprintf("input %d (%s) must be a constant integer tensor (computed at run time here)", e.input, e.what)
	}
	return fmt.Sprintf("input %d (%s) must be a constant", e.input, e.what)
}

// buildMode says how a graph is built.
type buildMode struct {
	train bool // BatchNormalization uses batch statistics; Dropout drops
	// trained names the parameters being trained; nil means "all", as in
	// PyTorch's model.train().
	trained map[string]bool
}

// trainsNode reports whether n runs in training form: the caller asked for
// training and, when parameters are named, n has one of them as an input.
// That is how frozen BatchNormalization layers stay in inference form
// while unfrozen ones learn batch statistics.
func (m buildMode) trainsNode(n *onnx.Node) bool {
	if !m.train {
		return false
	}
	if m.trained == nil {
		return true
	}
	for _, v := range n.Inputs {
		if v != nil && m.trained[v.Name] {
			return true
		}
	}
	return false
}

// builder turns one ONNX graph into one Gorgonia graph for fixed input
// shapes.
type builder[T Float] struct {
	p     *Program
	g     *G.ExprGraph
	opset int64
	mode  buildMode
	vals  map[*onnx.Value]*val[T]
	node  *onnx.Node // the node being built, for error messages
	// kernels records every kernel added, in order, for tests.
	kernels []kernel[T]
	// readers counts the nodes (and graph outputs) reading each value.
	readers map[*onnx.Value]int
	// reluAfter maps a MaxPool node to the Relu before it that is built
	// after it instead (see poolBeforeRelu).
	reluAfter map[*onnx.Node]*onnx.Node
	// convs records the convolutions of fixed weights, by their output
	// node, for folding a BatchNormalization into them.
	convs map[*G.Node]convBuild[T]
}

// A reluFuser is a kernel that can apply a Relu to its own output, while
// it is still in cache, instead of a Relu node reading it back: fuseRelu
// reports whether it will. grad says a gradient flows back through the
// Relu: the kernel's backward pass then passes it only where its output is
// positive.
type reluFuser interface{ fuseRelu(grad bool) bool }

// An opBuilder builds one ONNX op from its inputs (nil for omitted optional
// inputs) and returns its outputs.
type opBuilder[T Float] func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error)

// registry maps op types to builders, instantiated per element type.
type registry[T Float] map[string]opBuilder[T]

var (
	ops32 = newRegistry[float32]()
	ops64 = newRegistry[float64]()
)

// newRegistry collects the builders of every op family.
func newRegistry[T Float]() registry[T] {
	r := registry[T]{}
	for _, add := range []func(registry[T]){
		registerElementwise[T],
		registerConv[T],
		registerPool[T],
		registerNorm[T],
		registerLinalg[T],
		registerShape[T],
		registerSample[T],
		registerReduce[T],
		registerPad[T],
		registerActivation[T],
		registerMinMax[T],
		registerLayerNorm[T],
		registerEinsum[T],
		registerInteger[T],
		registerIndex[T],
		registerCompare[T],
		registerResize[T],
	} {
		add(r)
	}
	return r
}

func registryFor[T Float]() registry[T] {
	if r, ok := any(ops32).(registry[T]); ok {
		return r
	}
	return any(ops64).(registry[T])
}

// SupportedOps lists the ONNX operators the runtime compiles.
func SupportedOps() []string {
	var ops []string
	for op := range ops32 {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}

// ErrUnsupported is wrapped by compile errors for ops the runtime lacks.
var ErrUnsupported = errors.New("unsupported operator")

// checkSupported lists every node whose op the runtime lacks, not only the
// first, so a user sees the whole gap at once.
func checkSupported(g *onnx.Graph) error {
	missing := map[string][]string{}
	var ops []string
	for _, n := range g.Nodes {
		op := n.OpType
		if n.Domain != "" && n.Domain != "ai.onnx" {
			op = n.Domain + "." + op
		} else if _, ok := ops32[op]; ok {
			continue
		}
		if missing[op] == nil {
			ops = append(ops, op)
		}
		missing[op] = append(missing[op], fmt.Sprintf("%q", n.Name))
	}
	if len(ops) == 0 {
		return nil
	}
	var parts []string
	for _, op := range ops {
		nodes := missing[op]
		more := ""
		if len(nodes) > 3 {
			more = fmt.Sprintf(" and %d more", len(nodes)-3)
			nodes = nodes[:3]
		}
		parts = append(parts, fmt.Sprintf("%s (nodes %s%s)", op, strings.Join(nodes, ", "), more))
	}
	return fmt.Errorf("%w: %s", ErrUnsupported, strings.Join(parts, "; "))
}

func (b *builder[T]) dtype() tensor.Dtype {
	var z T
	if _, ok := any(z).(float32); ok {
		return tensor.Float32
	}
	return tensor.Float64
}

// apply adds a kernel to the graph over the given inputs.
func (b *builder[T]) apply(k kernel[T], in ...*val[T]) (*val[T], error) {
	shapes := make([][]int, len(in))
	need := make([]bool, len(in))
	nodes := make(G.Nodes, len(in))
	anyNeed := false
	for i, v := range in {
		if v != nil && v.node == nil && v.ints != nil {
			// An integer constant in a kernel (Pow's exponent, Where's
			// condition, indices) becomes exact floats of its type.
			f := make([]T, len(v.ints))
			for j, x := range v.ints {
				if f[j], _ = exactly[T](x); int64(f[j]) != x {
					return nil, fmt.Errorf("input %d holds %d, beyond the integers %T holds exactly", i, x, f[j])
				}
			}
			elem := v.dtype()
			v = b.constant(fmt.Sprintf("const%d", len(b.kernels)), f, v.shape)
			v.elem = elem
			in[i] = v
		}
		if v == nil || v.node == nil {
			return nil, fmt.Errorf("input %d must be a float tensor", i)
		}
		shapes[i] = v.shape
		need[i] = v.need
		anyNeed = anyNeed || v.need
		nodes[i] = v.node
	}
	b.kernels = append(b.kernels, k)
	op := newKernelOp[T](k, shapes, need, b.node)
	n, err := G.ApplyOp(op, nodes...)
	if err != nil {
		return nil, err
	}
	return &val[T]{node: n, shape: k.outShape(), need: anyNeed}, nil
}

// constant adds a float constant to the graph.
func (b *builder[T]) constant(name string, data []T, shape []int) *val[T] {
	// Gorgonia merges input nodes of equal name and shape: keep names unique.
	n := G.NewTensor(b.g, b.dtype(), len(shape), G.WithShape(shape...), G.WithName(fmt.Sprintf("%s#%d", name, opIDs.Add(1))),
		G.WithValue(tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))))
	return &val[T]{node: n, shape: shape, consts: data}
}

// intsOf returns input i as compile-time integers, or an error naming it.
func (b *builder[T]) intsOf(in []*val[T], i int, what string) ([]int64, error) {
	if i >= len(in) || in[i] == nil {
		return nil, fmt.Errorf("input %d (%s) is missing", i, what)
	}
	if in[i].ints == nil {
		return nil, b.notConstant(i, what, true)
	}
	return in[i].ints, nil
}

// floatConsts returns input i's values when known at compile time.
func (b *builder[T]) floatConsts(in []*val[T], i int, what string) ([]T, error) {
	if i >= len(in) || in[i] == nil {
		return nil, fmt.Errorf("input %d (%s) is missing", i, what)
	}
	if in[i].consts == nil {
		if in[i].ints != nil {
			out := make([]T, len(in[i].ints))
			for j, x := range in[i].ints {
				out[j] = T(x)
			}
			return out, nil
		}
		return nil, b.notConstant(i, what, false)
	}
	return in[i].consts, nil
}

func (b *builder[T]) notConstant(i int, what string, integer bool) error {
	e := &constantError{input: i, what: what, integer: integer}
	if b.node != nil && i < len(b.node.Inputs) && b.node.Inputs[i] != nil {
		e.value = b.node.Inputs[i].Name
	}
	return e
}

// build compiles the graph for the given input values.
func (b *builder[T]) build(g *onnx.Graph, inputs map[*onnx.Value]*val[T]) error {
	reg := registryFor[T]()
	for v, x := range inputs {
		b.vals[v] = x
	}
	b.readers = map[*onnx.Value]int{}
	for _, n := range g.Nodes {
		for _, v := range n.Inputs {
			b.readers[v]++
		}
	}
	for _, v := range g.Outputs {
		b.readers[v]++
	}
	readerOf := map[*onnx.Value]*onnx.Node{}
	for _, n := range g.Nodes {
		for _, v := range n.Inputs {
			readerOf[v] = n
		}
	}
	for _, n := range g.Nodes {
		b.node = n
		// A Relu that is the only reader of a kernel's output (not itself
		// a graph output) is folded into that kernel.
		if n.OpType == "Relu" && len(n.Inputs) == 1 && len(n.Outputs) == 1 && b.readers[n.Inputs[0]] == 1 {
			if x := b.vals[n.Inputs[0]]; x != nil && x.node != nil {
				if op, ok := x.node.Op().(*kernelOp[T]); ok {
					if f, ok := op.k.(reluFuser); ok && f.fuseRelu(x.need) {
						b.vals[n.Outputs[0]] = x
						continue
					}
				}
			}
		}
		if n.OpType == "Relu" && len(n.Inputs) == 1 && len(n.Outputs) == 1 && b.readers[n.Outputs[0]] == 1 {
			if pool := readerOf[n.Outputs[0]]; poolBeforeRelu(pool) {
				if x, ok := b.vals[n.Inputs[0]]; ok {
					b.vals[n.Outputs[0]] = x
					if b.reluAfter == nil {
						b.reluAfter = map[*onnx.Node]*onnx.Node{}
					}
					b.reluAfter[pool] = n
					continue
				}
			}
		}
		in := make([]*val[T], len(n.Inputs))
		for i, v := range n.Inputs {
			if v == nil {
				continue
			}
			x, ok := b.vals[v]
			if !ok {
				return fmt.Errorf("%s: input %q has no value (graph input not fed?)", n, v.Name)
			}
			in[i] = x
		}
		f, ok := reg[n.OpType]
		if !ok {
			return fmt.Errorf("%s: %w %s", n, ErrUnsupported, n.OpType)
		}
		outs, err := f(b, n, in)
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if err := typeOutputs(n, in, outs); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		if relu := b.reluAfter[n]; relu != nil {
			b.node = relu
			r, err := reg["Relu"](b, relu, outs[:1])
			if err != nil {
				return fmt.Errorf("%s: %w", relu, err)
			}
			if err := typeOutputs(relu, outs[:1], r); err != nil {
				return fmt.Errorf("%s: %w", relu, err)
			}
			outs = append(r[:1:1], outs[1:]...)
		}
		for i, v := range n.Outputs {
			if v == nil || i >= len(outs) || outs[i] == nil {
				continue
			}
			b.vals[v] = outs[i]
		}
	}
	return nil
}

// poolBeforeRelu reports whether n is a max pool that a Relu before it
// may follow instead: MaxPool(Relu(x)) = Relu(MaxPool(x)), values and
// gradients (the maximum's first tap gets the gradient, which Relu passes
// where the maximum is positive, either way), and the Relu then runs on
// the pooled values, a quarter as many for ResNet's stem. Not with
// indices (which would differ at ties of zeros), nor where a window could
// hold only padding (Relu would turn its -inf into 0): undilated windows
// padded by less than their size, not ceil_mode.
func poolBeforeRelu(n *onnx.Node) bool {
	if n == nil || n.OpType != "MaxPool" || len(n.Inputs) != 1 || len(n.Outputs) != 1 || n.AttrInt("ceil_mode", 0) != 0 {
		return false
	}
	if ap := n.AttrString("auto_pad", "NOTSET"); ap != "NOTSET" && ap != "VALID" {
		return false
	}
	kernel := n.AttrInts("kernel_shape", nil)
	if len(kernel) == 0 {
		return false
	}
	for _, d := range n.AttrInts("dilations", nil) {
		if d != 1 {
			return false
		}
	}
	pads := n.AttrInts("pads", nil)
	for i, p := range pads {
		if p < 0 || p >= kernel[i%len(kernel)] {
			return false
		}
	}
	return true
}

// typeOutputs gives the outputs their element type: the builder's, else
// input 0's. An integer result computed at run time by an op not exact on
// integers is refused, and integer results never carry gradients.
func typeOutputs[T Float](n *onnx.Node, in, outs []*val[T]) error {
	var from *val[T]
	if len(in) > 0 {
		from = in[0]
	}
	for _, out := range outs {
		if out == nil {
			continue
		}
		if out.elem == onnx.Undefined && from != nil && from.integral() {
			if out.node != nil && !exactOnIntegers[n.OpType] {
				return fmt.Errorf("%s on %s tensors computed at run time is not supported", n.OpType, from.dtype())
			}
			out.elem = from.dtype()
		}
		if out.integral() {
			out.need = false
		}
	}
	return nil
}
