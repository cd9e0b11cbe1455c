package surgery

import (
	"encoding/json"
	"fmt"

	"github.com/graft-dev/graft/onnx"
)

// Compose returns a new model computing second(first(x)): first's only
// output feeds second's only input (initializers listed as inputs aside).
// The two must agree in element type and in every dimension both fix, and
// first's output must not be of a known rank different from second's input.
// Every name of second (values, initializers, nodes, subgraph values) gets
// prefix, so nothing collides with first; the result's inputs are first's,
// its outputs second's (prefixed). Opset imports are merged: the default
// domain takes the higher of the two versions, while another domain
// imported at two different versions is an error, since custom domains
// promise no compatibility between versions. A stored trainable set
// (TrainableKey) is carried over: the union of both models' sets, second's
// names prefixed, a model without one contributing all its parameters.
// The inputs are left unchanged and the result is shape-inferred and
// validated.
func Compose(first, second *onnx.Model, prefix string) (*onnx.Model, error) {
	if first == nil || first.Graph == nil || second == nil || second.Graph == nil {
		return nil, fmt.Errorf("compose: both models need a graph")
	}
	if n := len(first.Graph.Outputs); n != 1 {
		return nil, fmt.Errorf("compose: the first model has %d outputs, it needs exactly one to feed the second", n)
	}
	a, err := first.Clone()
	if err != nil {
		return nil, fmt.Errorf("compose: first model: %w", err)
	}
	b, err := second.Clone()
	if err != nil {
		return nil, fmt.Errorf("compose: second model: %w", err)
	}
	var feed *onnx.Value
	var feeds int
	for _, v := range b.Graph.Inputs {
		if v.Const == nil {
			feed = v
			feeds++
		}
	}
	if feeds != 1 {
		return nil, fmt.Errorf("compose: the second model has %d inputs, it needs exactly one (fed by the first model's output)", feeds)
	}
	// Types are compared on shape-inferred copies; a model shape inference
	// cannot handle keeps its declared types.
	_ = a.InferShapes()
	out := a.Graph.Outputs[0]
	if err := compatible(out, feed); err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	opsets, err := mergeOpsets(a.Opsets, b.Opsets)
	if err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	trainable, err := mergeTrainable(first, second, prefix)
	if err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}

	// Second's symbolic sizes take the sizes first's output has there
	// ("batch" becomes "N", say), so its types read in first's terms.
	dims := seamDims(out, feed)
	walkGraph(b.Graph, func(v *onnx.Value) {
		if v.Type == nil || !v.Type.IsTensor() {
			return
		}
		for i, d := range v.Type.Shape {
			if o, ok := dims[d.Param]; ok && d.Param != "" {
				v.Type.Shape[i].Value, v.Type.Shape[i].Param = o.Value, o.Param
			}
		}
	}, func(*onnx.Node) {})

	// Names first uses, to catch collisions the prefix does not prevent.
	taken := map[string]bool{}
	walkGraph(a.Graph, func(v *onnx.Value) { taken[v.Name] = true }, func(*onnx.Node) {})
	var clash []string
	walkGraph(b.Graph, func(v *onnx.Value) {
		if v == feed {
			return
		}
		v.Name = prefix + v.Name
		if taken[v.Name] {
			clash = append(clash, v.Name)
		}
		taken[v.Name] = true
	}, func(n *onnx.Node) {
		if n.Name != "" {
			n.Name = prefix + n.Name
		}
	})
	if len(clash) > 0 {
		return nil, fmt.Errorf("compose: with prefix %q, the second model's names %q collide with the first's; choose another prefix", prefix, clash)
	}

	// Wire first's output into second's readers of its input, everywhere
	// (subgraphs included), then move second's graph into first's.
	g, h := a.Graph, b.Graph
	var rewire func(h *onnx.Graph)
	rewire = func(h *onnx.Graph) {
		for _, n := range h.Nodes {
			for i, v := range n.Inputs {
				if v == feed {
					n.Inputs[i] = out
				}
			}
			for _, at := range n.Attrs {
				if at.Graph != nil {
					rewire(at.Graph)
				}
				for _, sg := range at.Graphs {
					rewire(sg)
				}
			}
		}
		for i, v := range h.Outputs {
			if v == feed {
				h.Outputs[i] = out
			}
		}
	}
	rewire(h)
	for _, v := range h.Inputs {
		if v != feed { // initializers listed as inputs by old exporters
			g.Inputs = append(g.Inputs, v)
		}
	}
	g.Initializers = append(g.Initializers, h.Initializers...)
	g.ValueInfo = append(g.ValueInfo, h.ValueInfo...)
	g.Nodes = append(g.Nodes, h.Nodes...)
	g.Outputs = h.Outputs
	if !g.IsOutput(out) && !hasValueInfo(g, out) && out.Type != nil {
		g.ValueInfo = append(g.ValueInfo, out) // keep the seam's type on record
	}
	a.Opsets = opsets
	if b.IRVersion > a.IRVersion {
		a.IRVersion = b.IRVersion
	}
	// Round trip through the file form so every value and node belongs to
	// the new graph.
	m, err := a.Clone()
	if err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	if trainable != nil {
		b, _ := json.Marshal(trainable)
		m.SetMetadata(TrainableKey, string(b))
	}
	if err := m.InferShapes(); err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	return m, nil
}

// compatible checks that out can feed in: same element type and, where
// both are known, the same rank and fixed sizes.
func compatible(out, in *onnx.Value) error {
	if out.Type == nil || in.Type == nil {
		return nil
	}
	if !out.Type.IsTensor() || !in.Type.IsTensor() {
		return fmt.Errorf("output %q and input %q must both be tensors", out.Name, in.Name)
	}
	if out.Type.Elem != onnx.Undefined && in.Type.Elem != onnx.Undefined && out.Type.Elem != in.Type.Elem {
		return fmt.Errorf("the first model's output %q is %s but the second model's input %q is %s", out.Name, out.Type, in.Name, in.Type)
	}
	so, si := out.Type.Shape, in.Type.Shape
	if so == nil || si == nil {
		return nil
	}
	mismatch := len(so) != len(si)
	for i := 0; !mismatch && i < len(so); i++ {
		mismatch = so[i].Known() && si[i].Known() && so[i].Value != si[i].Value
	}
	if mismatch {
		return fmt.Errorf("shape mismatch: the first model's output %q is %s but the second model's input %q is %s", out.Name, so, in.Name, si)
	}
	return nil
}

// seamDims maps each symbolic dimension of in to the dimension out has in
// its place, when that is fixed or symbolic and the mapping is unambiguous.
func seamDims(out, in *onnx.Value) map[string]onnx.Dim {
	dims := map[string]onnx.Dim{}
	if out.Type == nil || in.Type == nil || len(out.Type.Shape) != len(in.Type.Shape) {
		return dims
	}
	bad := map[string]bool{}
	for i, d := range in.Type.Shape {
		o := out.Type.Shape[i]
		if d.Param == "" {
			continue
		}
		if prev, ok := dims[d.Param]; (ok && (prev.Value != o.Value || prev.Param != o.Param)) || !o.Known() && o.Param == "" {
			bad[d.Param] = true
		}
		dims[d.Param] = onnx.Dim{Value: o.Value, Param: o.Param}
	}
	for p := range bad {
		delete(dims, p)
	}
	return dims
}

// mergeOpsets takes the higher default-domain version and requires other
// domains to agree.
func mergeOpsets(a, b []onnx.Opset) ([]onnx.Opset, error) {
	norm := func(d string) string {
		if d == "ai.onnx" {
			return ""
		}
		return d
	}
	out := append([]onnx.Opset(nil), a...)
	for _, ob := range b {
		found := false
		for i, oa := range out {
			if norm(oa.Domain) != norm(ob.Domain) {
				continue
			}
			found = true
			switch {
			case oa.Version == ob.Version:
			case norm(ob.Domain) == "":
				out[i].Version = max(oa.Version, ob.Version)
			default:
				return nil, fmt.Errorf("incompatible opsets: domain %q is imported at version %d by the first model and %d by the second", ob.Domain, oa.Version, ob.Version)
			}
		}
		if !found {
			out = append(out, ob)
		}
	}
	return out, nil
}

// mergeTrainable returns the union of both models' trainable sets, or nil
// if neither stores one.
func mergeTrainable(first, second *onnx.Model, prefix string) ([]string, error) {
	_, okA := first.MetadataValue(TrainableKey)
	_, okB := second.MetadataValue(TrainableKey)
	if !okA && !okB {
		return nil, nil
	}
	ta, err := Trainable(first)
	if err != nil {
		return nil, err
	}
	tb, err := Trainable(second)
	if err != nil {
		return nil, err
	}
	out := append([]string{}, ta...)
	for _, n := range tb {
		out = append(out, prefix+n)
	}
	return out, nil
}

// walkGraph calls value on every value g and its subgraphs define (inputs,
// initializers, node outputs, recorded value infos, outputs), once each,
// and node on every node.
func walkGraph(g *onnx.Graph, value func(*onnx.Value), node func(*onnx.Node)) {
	seen := map[*onnx.Value]bool{}
	visit := func(v *onnx.Value) {
		if v != nil && !seen[v] {
			seen[v] = true
			value(v)
		}
	}
	var walk func(g *onnx.Graph)
	walk = func(g *onnx.Graph) {
		for _, v := range g.Inputs {
			visit(v)
		}
		for _, v := range g.Initializers {
			visit(v)
		}
		for _, n := range g.Nodes {
			node(n)
			for _, v := range n.Outputs {
				visit(v)
			}
			for _, at := range n.Attrs {
				if at.Graph != nil {
					walk(at.Graph)
				}
				for _, sg := range at.Graphs {
					walk(sg)
				}
			}
		}
		for _, v := range g.ValueInfo {
			visit(v)
		}
		for _, v := range g.Outputs {
			visit(v)
		}
	}
	walk(g)
}

func hasValueInfo(g *onnx.Graph, v *onnx.Value) bool {
	for _, u := range g.ValueInfo {
		if u == v || u.Name == v.Name {
			return true
		}
	}
	return false
}
