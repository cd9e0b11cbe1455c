package surgery

import (
	"fmt"
	"math"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
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

// InsertAfter returns an edit that routes every reader of the named value
// (nodes and graph outputs) through new nodes. build adds them, reading v,
// and returns the value the readers should see instead. A graph output
// keeps its name: the new value takes it, and v is renamed NAME_inner. To
// insert before a node, insert after the value it reads.
func InsertAfter(value string, build func(g *onnx.Graph, v *onnx.Value) (*onnx.Value, error)) Edit {
	return func(m *onnx.Model) error {
		g := m.Graph
		v := g.Value(value)
		if v == nil {
			return fmt.Errorf("insert after %q: no such value", value)
		}
		readers := g.Consumers(v)
		nv, err := build(g, v)
		if err != nil {
			return fmt.Errorf("insert after %q: %w", value, err)
		}
		if nv == nil || nv == v {
			return fmt.Errorf("insert after %q: the inserted nodes return no new value", value)
		}
		for _, n := range readers {
			for i, in := range n.Inputs {
				if in == v {
					n.Inputs[i] = nv
				}
			}
		}
		for i, o := range g.Outputs {
			if o == v {
				g.Outputs[i] = nv
				nv.Name, v.Name = v.Name, v.Name+"_inner"
				if nv.Type == nil {
					nv.Type = v.Type
				}
			}
		}
		return nil
	}
}

// NormalizeNode is the name of the Div node Normalize adds: a model that
// has it takes pixels in [0, 1].
const NormalizeNode = "graft_normalize_div"

// normalizeSubNode is the name of the Sub node before NormalizeNode.
const normalizeSubNode = "graft_normalize_sub"

// Normalize returns an edit that puts (x - mean) / std, per channel (axis 1),
// after the named graph input, so callers feed pixels in [0, 1] and the
// normalisation lives inside the model: attacks and robustness reports then
// work in pixel space. The input keeps its name and type. Means must be
// finite, standard deviations finite and not 0.
//
// An empty input names the model's first graph input that is not an
// initializer: the image input its contract describes.
func Normalize(input string, mean, std []float32) Edit {
	named := input
	return func(m *onnx.Model) error {
		input := named
		if input == "" {
			x := firstInput(m.Graph)
			if x == nil {
				return fmt.Errorf("normalize: the model has no input")
			}
			input = x.Name
		}
		var x *onnx.Value
		for _, v := range m.Graph.Inputs {
			if v.Name == input && v.Const == nil {
				x = v
			}
		}
		if x == nil {
			return fmt.Errorf("normalize: no graph input named %q", input)
		}
		mean, std := mean, std
		if x.Type != nil && len(x.Type.Shape) > 1 && x.Type.Shape[1].Known() {
			// One value stands for every channel, as in torchvision.
			c := int(x.Type.Shape[1].Value)
			mean, std = repeat(mean, c), repeat(std, c)
			if len(mean) != c || len(std) != c {
				return fmt.Errorf("normalize: input %q has %d channels, got %d means and %d standard deviations", input, c, len(mean), len(std))
			}
		}
		if len(mean) != len(std) || len(mean) == 0 {
			return fmt.Errorf("normalize: %d means and %d standard deviations", len(mean), len(std))
		}
		for i, v := range mean {
			if !finite(v) {
				return fmt.Errorf("normalize: mean[%d] is %v, want a finite number", i, v)
			}
		}
		for i, v := range std {
			if !finite(v) || v == 0 {
				return fmt.Errorf("normalize: std[%d] is %v, want a finite number other than 0", i, v)
			}
		}
		// Per-channel constants shaped to broadcast over [N, C, ...].
		shape := []int64{1, int64(len(mean)), 1, 1}
		if x.Type != nil && x.Type.Shape != nil {
			shape = make([]int64, len(x.Type.Shape))
			for i := range shape {
				shape[i] = 1
			}
			shape[1] = int64(len(mean))
		}
		err := InsertAfter(input, func(g *onnx.Graph, x *onnx.Value) (*onnx.Value, error) {
			mt, err := onnx.FromFloat32(input+"_mean", shape, mean)
			if err != nil {
				return nil, err
			}
			st, err := onnx.FromFloat32(input+"_std", shape, std)
			if err != nil {
				return nil, err
			}
			sub := g.AddNode("Sub", normalizeSubNode, []*onnx.Value{x, g.AddInitializer(mt)}, []string{input + "_centered"})
			div := g.AddNode("Div", NormalizeNode, []*onnx.Value{sub.Outputs[0], g.AddInitializer(st)}, []string{input + "_normalized"})
			return div.Outputs[0], nil
		})(m)
		if err != nil {
			return err
		}
		if first := firstInput(m.Graph); first == nil || first.Name != input {
			return nil // not the image input the contract describes
		}
		return restoreContract(m, false, func(c *contract.Contract) {
			c.Input.Mean, c.Input.Std, c.Input.NormalizedInside = mean, std, true
		})
	}
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// A Query picks nodes: by name (a glob whose * matches any run of
// characters, see Glob; a malformed one matches nothing) and op type; empty
// fields match anything.
type Query struct {
	Name string
	Op   string
}

// Find returns the nodes matching q, in graph order.
func Find(g *onnx.Graph, q Query) []*onnx.Node {
	name := Glob(q.Name)
	var out []*onnx.Node
	for _, n := range g.Nodes {
		if q.Op != "" && n.OpType != q.Op {
			continue
		}
		if q.Name != "" && !name(Param{Name: n.Name}) {
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

// repeat returns v with one value a channel when it has one value for all.
func repeat(v []float32, channels int) []float32 {
	if len(v) != 1 || channels <= 1 {
		return v
	}
	out := make([]float32, channels)
	for i := range out {
		out[i] = v[0]
	}
	return out
}
