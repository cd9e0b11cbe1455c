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
// shape, or, for integer tensors (shapes, axes, indices), a constant known
// at compile time.
type val[T Float] struct {
	node  *G.Node
	shape []int
	// ints holds an integer tensor's elements; integers never flow through
	// the Gorgonia graph, they parameterise it.
	ints []int64
	// consts holds a float value's elements when known at compile time (a
	// frozen initializer or a Constant node), for ops that read attribute-
	// like inputs such as Clip's bounds or Pad's value.
	consts []T
	// need marks values that depend on something a gradient is wanted for.
	need bool
}

func (v *val[T]) isInt() bool { return v.node == nil && v.ints != nil }

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
}

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
			// An integer constant in float arithmetic (Pow's exponent, say).
			f := make([]T, len(v.ints))
			for j, x := range v.ints {
				f[j] = T(x)
			}
			v = b.constant(fmt.Sprintf("const%d", len(b.kernels)), f, v.shape)
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
		return nil, fmt.Errorf("input %d (%s) must be a constant integer tensor (computed at run time here)", i, what)
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
		return nil, fmt.Errorf("input %d (%s) must be a constant", i, what)
	}
	return in[i].consts, nil
}

// build compiles the graph for the given input values.
func (b *builder[T]) build(g *onnx.Graph, inputs map[*onnx.Value]*val[T]) error {
	reg := registryFor[T]()
	for v, x := range inputs {
		b.vals[v] = x
	}
	for _, n := range g.Nodes {
		b.node = n
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
		for i, v := range n.Outputs {
			if v == nil || i >= len(outs) || outs[i] == nil {
				continue
			}
			b.vals[v] = outs[i]
		}
	}
	return nil
}
