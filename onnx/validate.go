package onnx

import (
	"fmt"
	"strings"
)

// A ValidationError lists every problem Validate found, each naming the
// graph, node and value concerned.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	const show = 5
	msg := "invalid model: " + strings.Join(e.Problems[:min(len(e.Problems), show)], "; ")
	if n := len(e.Problems) - show; n > 0 {
		msg += fmt.Sprintf("; and %d more", n)
	}
	return msg
}

// Validate checks that the model is well formed: an opset import for each
// domain its nodes use, at least one graph output, every node input and graph
// output defined, no value name defined twice, no cycle, known element types,
// and initializer data that fits its shape. It returns a *ValidationError listing all problems found.
func (m *Model) Validate() error {
	var probs []string
	if m.IRVersion <= 0 {
		probs = append(probs, "ir_version is missing or not positive")
	}
	if m.Graph == nil {
		probs = append(probs, "the model has no graph")
	} else if deep := m.Graph.tooDeep(0); deep != nil {
		// The other checks cost more the deeper the nesting: stop here.
		probs = append(probs, deep.Error())
	} else {
		if len(m.Graph.Outputs) == 0 {
			probs = append(probs, fmt.Sprintf("graph %s has no outputs", quote(m.Graph.Name)))
		}
		probs = append(probs, m.Graph.problems()...)
		missing := map[string]bool{}
		m.Graph.eachNode(func(n *Node) {
			if m.OpsetVersion(n.Domain) == 0 && !missing[n.Domain] {
				missing[n.Domain] = true
				d := n.Domain
				if d == "" {
					d = "ai.onnx"
				}
				probs = append(probs, fmt.Sprintf("%s uses domain %q but the model imports no opset for it", n, d))
			}
		})
	}
	if len(probs) > 0 {
		return &ValidationError{Problems: probs}
	}
	return nil
}

// tooDeep returns the first subgraph of g nested deeper than MaxNesting,
// given g's own depth; it never descends past that depth.
func (g *Graph) tooDeep(depth int) *nestingError {
	if depth > MaxNesting {
		return &nestingError{graph: g.Name}
	}
	for _, n := range g.Nodes {
		for _, a := range n.Attrs {
			for _, sg := range a.subgraphs() {
				if e := sg.tooDeep(depth + 1); e != nil {
					return e
				}
			}
		}
	}
	return nil
}

func (g *Graph) problems() []string {
	var probs []string
	add := func(format string, args ...any) {
		probs = append(probs, fmt.Sprintf(format, args...))
	}
	where := "graph " + quote(g.Name)
	if g.parent != nil {
		where = "subgraph " + quote(g.Name)
	}
	defined := map[string]*Value{}
	define := func(v *Value, what string) {
		if old, ok := defined[v.Name]; ok && old != v {
			add("%s: value name %q is defined twice (%s)", where, v.Name, what)
			return
		}
		defined[v.Name] = v
	}
	for _, v := range g.Initializers {
		if v.Const == nil {
			add("%s: initializer %q has no tensor", where, v.Name)
			continue
		}
		define(v, "initializer")
		if err := checkTensorData(v.Const); err != nil {
			add("%s: initializer %q: %v", where, v.Name, err)
		}
	}
	for _, v := range g.Inputs {
		define(v, "graph input")
	}
	for _, n := range g.Nodes {
		if n.OpType == "" {
			add("%s: %s has no op_type", where, n)
		}
		for _, v := range n.Outputs {
			if v != nil {
				if v.Name == "" {
					add("%s: %s has an output without a name", where, n)
				}
				define(v, "output of "+n.String())
			}
		}
	}
	inScope := func(v *Value) bool {
		if defined[v.Name] == v {
			return true
		}
		// Subgraphs may read values of enclosing graphs.
		return v.graph != nil && v.graph != g && v.graph.encloses(g) && (v.producer != nil || v.Const != nil || v.graph.isInput(v))
	}
	for _, n := range g.Nodes {
		for i, v := range n.Inputs {
			if v != nil && !inScope(v) {
				add("%s: %s: input %d %q is not defined (not a graph input, initializer or node output)", where, n, i, v.Name)
			}
		}
		for _, a := range n.Attrs {
			if a.Tensor != nil {
				if err := checkTensorData(a.Tensor); err != nil {
					add("%s: %s: attribute %q: %v", where, n, a.Name, err)
				}
			}
			for _, sg := range a.subgraphs() {
				probs = append(probs, sg.problems()...)
			}
		}
	}
	for _, v := range g.Outputs {
		if !inScope(v) {
			add("%s: output %q is not defined by any node, input or initializer", where, v.Name)
		}
	}
	for _, list := range [][]*Value{g.Inputs, g.Outputs, g.ValueInfo} {
		for _, v := range list {
			if v.Type != nil && v.Type.IsTensor() && v.Type.Elem != Undefined && !v.Type.Elem.Known() {
				add("%s: value %q has unknown element type %d", where, v.Name, int32(v.Type.Elem))
			}
			for _, d := range v.Type.shape() {
				if d.Param == "" && d.Value < -1 {
					add("%s: value %q has negative dimension %d", where, v.Name, d.Value)
				}
			}
		}
	}
	if _, cycle := g.topoOrder(); cycle != nil {
		add("%s: %v", where, cycleError(cycle))
	}
	return probs
}

func (t *Type) shape() Shape {
	if t == nil {
		return nil
	}
	return t.Shape
}

// checkTensorData checks a tensor built or edited in memory: its data must
// fit its type and shape.
func checkTensorData(t *Tensor) error {
	n, err := t.checkShape()
	if err != nil {
		return err
	}
	if t.DType == String {
		if int64(len(t.strs)) != n {
			return fmt.Errorf("string tensor %v has %d elements but holds %d", t.Dims, n, len(t.strs))
		}
		return nil
	}
	if want := t.DType.rawSize(n); int64(len(t.raw)) != want {
		return fmt.Errorf("%s%v needs %d bytes of data, has %d", t.DType, t.Dims, want, len(t.raw))
	}
	return nil
}
