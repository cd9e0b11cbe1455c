package surgery

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
)

// From returns an edit that makes the named value a graph input, dropping
// everything upstream of it that nothing else needs: the inverse of Cut.
// Cutting a classifier at its head's input and taking From the same value
// splits it into a feature extractor and a head. The new input keeps the
// value's name and takes its type from shape inference (symbolic dimensions
// such as "batch" included); the edit fails if that type is unknown. Graph
// inputs only the dropped part read are removed, and a stored trainable set
// loses the parameters that went with it.
func From(value string) Edit {
	return func(m *onnx.Model) error {
		g := m.Graph
		v := g.Value(value)
		switch {
		case v == nil:
			return fmt.Errorf("from: no value named %q", value)
		case v.Const != nil:
			return fmt.Errorf("from: %q is a constant, not a value computed by the graph", value)
		case v.Producer() == nil:
			return nil // already a graph input
		}
		// A stored contract describes images at the old input; the new
		// input holds what the graph computed from them (features).
		var stored *contract.Contract
		if _, ok := m.MetadataValue(contract.Key); ok {
			var err error
			if stored, err = contract.Derive(m); err != nil {
				return fmt.Errorf("from: %w", err)
			}
			stored.Input = contract.Input{Name: value}
		}
		if err := m.InferShapes(); err != nil {
			return fmt.Errorf("from: %w", err)
		}
		if v.Type == nil || !v.Type.IsTensor() || v.Type.Shape == nil {
			v.Type = typeFromGemm(g, v)
		}
		if v.Type == nil || !v.Type.IsTensor() || v.Type.Shape == nil {
			return fmt.Errorf("from: the type of %q is unknown (shape inference does not reach it); it cannot become a graph input", value)
		}
		shape := make(onnx.Shape, len(v.Type.Shape))
		for i, d := range v.Type.Shape {
			shape[i] = onnx.Dim{Value: d.Value, Param: d.Param, Denotation: d.Denotation}
		}
		ty := &onnx.Type{Elem: v.Type.Elem, Shape: shape, Denotation: v.Type.Denotation}
		readBefore := readValues(g)
		params := map[string]bool{}
		for _, p := range Params(m) {
			params[p.Name] = true
		}
		v.Name += "__upstream"
		in := g.AddInput(value, ty)
		g.ReplaceUses(v, in)
		g.Cleanup()
		// Drop the inputs only the removed part read.
		read := readValues(g)
		var inputs []*onnx.Value
		for _, u := range g.Inputs {
			if u == in || read[u] || !readBefore[u] || g.IsOutput(u) {
				inputs = append(inputs, u)
			}
		}
		g.Inputs = inputs
		g.Cleanup()
		if stored != nil {
			if err := contract.Store(m, stored); err != nil {
				return fmt.Errorf("from: %w", err)
			}
		}
		return keepTrainable(m, params)
	}
}

// readValues returns every value a node of g (or of its subgraphs) reads.
func readValues(g *onnx.Graph) map[*onnx.Value]bool {
	read := map[*onnx.Value]bool{}
	var walk func(g *onnx.Graph)
	walk = func(g *onnx.Graph) {
		for _, n := range g.Nodes {
			for _, u := range n.Inputs {
				if u != nil {
					read[u] = true
				}
			}
			for _, a := range n.Attrs {
				if a.Graph != nil {
					walk(a.Graph)
				}
				for _, sg := range a.Graphs {
					walk(sg)
				}
			}
		}
	}
	walk(g)
	return read
}

// typeFromGemm infers v's type backwards, from a Gemm (without transA) that
// reads it as A: A is [M, K], K from the constant B and M from the Gemm's
// output. It covers a classifier's features where forward inference stops,
// as in graphs that reshape by shapes computed at run time (ShuffleNet's
// channel shuffle). It returns nil when no such Gemm reads v.
func typeFromGemm(g *onnx.Graph, v *onnx.Value) *onnx.Type {
	for _, n := range g.Nodes {
		if n.OpType != "Gemm" || n.Input(0) != v || n.AttrInt("transA", 0) != 0 {
			continue
		}
		b, y := n.ConstInput(1), n.Outputs[0].Type
		if b == nil || len(b.Dims) != 2 || y == nil || len(y.Shape) != 2 {
			continue
		}
		k := b.Dims[0]
		if n.AttrInt("transB", 0) == 1 {
			k = b.Dims[1]
		}
		m := y.Shape[0]
		return &onnx.Type{Elem: b.DType, Shape: onnx.Shape{onnx.Dim{Value: m.Value, Param: m.Param}, onnx.Fixed(k)}}
	}
	return nil
}
