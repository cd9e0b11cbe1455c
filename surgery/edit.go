package surgery

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
)

// Cut returns an edit that makes the named value the graph's only output,
// dropping everything after it: a feature extractor.
func Cut(value string) Edit {
	return func(m *onnx.Model) error {
		g := m.Graph
		v := g.Value(value)
		if v == nil {
			return fmt.Errorf("cut: no value named %q", value)
		}
		g.Outputs = []*onnx.Value{v}
		return nil
	}
}

// NormalizeNode is the name of the Div node Normalize adds: a model that
// has it takes pixels in [0, 1].
const NormalizeNode = "graft_normalize_div"

// Normalize returns an edit that puts (x - mean) / std, per channel (axis 1),
// in front of the named graph input, so callers feed pixels in [0, 1] and the
// normalisation lives inside the model: attacks and robustness reports then
// work in pixel space. The input keeps its name and type.
func Normalize(input string, mean, std []float32) Edit {
	return func(m *onnx.Model) error {
		g := m.Graph
		var x *onnx.Value
		for _, v := range g.Inputs {
			if v.Name == input && v.Const == nil {
				x = v
			}
		}
		if x == nil {
			return fmt.Errorf("normalize: no graph input named %q", input)
		}
		if len(mean) != len(std) || len(mean) == 0 {
			return fmt.Errorf("normalize: %d means and %d standard deviations", len(mean), len(std))
		}
		if x.Type != nil && len(x.Type.Shape) > 1 && x.Type.Shape[1].Known() && x.Type.Shape[1].Value != int64(len(mean)) {
			return fmt.Errorf("normalize: input %q has %d channels, got %d means", input, x.Type.Shape[1].Value, len(mean))
		}
		for i, s := range std {
			if s == 0 {
				return fmt.Errorf("normalize: std[%d] is 0", i)
			}
		}
		// The old input value becomes the normalised value, produced by Div;
		// a new value takes over the input's name.
		raw := g.AddInput(input, x.Type) // appended; moved to x's place below
		g.Inputs = g.Inputs[:len(g.Inputs)-1]
		for i, v := range g.Inputs {
			if v == x {
				g.Inputs[i] = raw
			}
		}
		x.Name = input + "_normalized"
		x.Type = nil
		shape := []int64{1, int64(len(mean)), 1, 1}
		if raw.Type != nil && raw.Type.Shape != nil {
			shape = make([]int64, len(raw.Type.Shape))
			for i := range shape {
				shape[i] = 1
			}
			shape[1] = int64(len(mean))
		}
		mt, err := onnx.FromFloat32(input+"_mean", shape, mean)
		if err != nil {
			return err
		}
		st, err := onnx.FromFloat32(input+"_std", shape, std)
		if err != nil {
			return err
		}
		sub := g.AddNode("Sub", "graft_normalize_sub", []*onnx.Value{raw, g.AddInitializer(mt)}, []string{input + "_centered"})
		g.InsertNode(&onnx.Node{Name: NormalizeNode, OpType: "Div",
			Inputs: []*onnx.Value{sub.Outputs[0], g.AddInitializer(st)}, Outputs: []*onnx.Value{x}})
		return nil
	}
}

// A Query picks nodes: by name (a glob whose * matches any run of
// characters, see Glob) and op type; empty fields match anything.
type Query struct {
	Name string
	Op   string
}

// Find returns the nodes matching q, in graph order.
func Find(g *onnx.Graph, q Query) []*onnx.Node {
	var out []*onnx.Node
	for _, n := range g.Nodes {
		if q.Op != "" && n.OpType != q.Op {
			continue
		}
		if q.Name != "" && !globRegexp(q.Name).MatchString(n.Name) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// FindChains returns every run of nodes whose op types are ops, each node
// feeding the next through its first input (e.g. "Conv", "BatchNormalization",
// "Relu").
func FindChains(g *onnx.Graph, ops ...string) [][]*onnx.Node {
	if len(ops) == 0 {
		return nil
	}
	var out [][]*onnx.Node
	for _, n := range g.Nodes {
		if n.OpType != ops[0] {
			continue
		}
		chain := []*onnx.Node{n}
		for _, op := range ops[1:] {
			last := chain[len(chain)-1]
			var next *onnx.Node
			for _, c := range g.Consumers(last.Outputs[0]) {
				if c.OpType == op && c.Input(0) == last.Outputs[0] {
					next = c
					break
				}
			}
			if next == nil {
				chain = nil
				break
			}
			chain = append(chain, next)
		}
		if chain != nil {
			out = append(out, chain)
		}
	}
	return out
}
