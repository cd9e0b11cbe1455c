package surgery

import (
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"gorgonia.org/tensor"
)

// Cut and From at the head's input split a classifier into an extractor and
// a head whose composition computes what the whole model does.
func TestFromSplitsAtHead(t *testing.T) {
	whole := load(t, "../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err := SetTrainable(whole, []string{"fc.weight", "fc.bias", "conv1.weight"}); err != nil {
		t.Fatal(err)
	}
	h, err := FindHead(whole.Graph)
	if err != nil {
		t.Fatal(err)
	}
	feat := h.Node.Input(0).Name
	ext, _ := whole.Clone()
	head, _ := whole.Clone()
	if err := Apply(ext, Cut(feat)); err != nil {
		t.Fatal(err)
	}
	if err := Apply(head, From(feat)); err != nil {
		t.Fatal(err)
	}
	g := head.Graph
	if len(g.Inputs) != 1 || g.Inputs[0].Name != feat || g.Inputs[0].Type.String() != "float32[batch,64]" {
		var got []string
		for _, v := range g.Inputs {
			got = append(got, v.Name+" "+v.Type.String())
		}
		t.Errorf("head inputs %v, want %s float32[batch,64]", got, feat)
	}
	var ops, inits []string
	for _, n := range g.Nodes {
		ops = append(ops, n.OpType)
	}
	for _, v := range g.Initializers {
		inits = append(inits, v.Name)
	}
	if !slices.Equal(ops, []string{"Gemm"}) || !slices.Equal(inits, []string{"fc.weight", "fc.bias"}) {
		t.Errorf("head has nodes %v and initializers %v, want [Gemm] and [fc.weight fc.bias]", ops, inits)
	}
	if names, err := Trainable(head); err != nil || !slices.Equal(names, []string{"fc.weight", "fc.bias"}) {
		t.Errorf("head's trainable set %v (%v), want [fc.weight fc.bias]", names, err)
	}
	if got := g.Outputs[0].Type.Shape.String(); got != "[batch,10]" {
		t.Errorf("head output shape %s", got)
	}
	// The head survives a save and load.
	b, err := onnx.Encode(head)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onnx.Decode(b); err != nil {
		t.Fatal(err)
	}

	run := func(m *onnx.Model, x *tensor.Dense) []float32 {
		t.Helper()
		p, err := runtime.Compile(m, runtime.Options{})
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.Run(x)
		if err != nil {
			t.Fatal(err)
		}
		return out[0].Data().([]float32)
	}
	x := tensor.New(tensor.WithShape(2, 3, 64, 64), tensor.Of(tensor.Float32))
	for i, d := 0, x.Data().([]float32); i < len(d); i++ {
		d[i] = float32(i%89) / 89
	}
	want := run(whole, x)
	f := run(ext, x)
	got := run(head, tensor.New(tensor.WithShape(2, 64), tensor.WithBacking(f)))
	if !slices.Equal(got, want) {
		t.Errorf("extractor then head gives %v, the whole model %v", got, want)
	}
}

// Inputs the dropped part read go; inputs still read stay.
func TestFromKeepsOtherInputs(t *testing.T) {
	g := &onnx.Graph{Name: "g"}
	x := g.AddInput("x", onnx.TensorType(onnx.Float, 2, 3))
	y := g.AddInput("y", onnx.TensorType(onnx.Float, 2, 3))
	a := g.AddNode("Relu", "relu", []*onnx.Value{x}, []string{"a"}).Outputs[0]
	b := g.AddNode("Add", "add", []*onnx.Value{a, y}, []string{"b"}).Outputs[0]
	c := g.AddNode("Mul", "mul", []*onnx.Value{b, x}, []string{"c"}).Outputs[0]
	g.Outputs = []*onnx.Value{b, c}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}

	// x is still read by Mul: it stays.
	m1, _ := m.Clone()
	if err := Apply(m1, From("a")); err != nil {
		t.Fatal(err)
	}
	if got := inputNames(m1); got != "x y a" {
		t.Errorf("inputs %q, want \"x y a\"", got)
	}
	if len(m1.Graph.Nodes) != 2 {
		t.Errorf("%d nodes, want Add and Mul", len(m1.Graph.Nodes))
	}

	// Cut at c, then from b: Mul still reads x; y fed only the dropped Add.
	m2, _ := m.Clone()
	if err := Apply(m2, Cut("c"), From("b")); err != nil {
		t.Fatal(err)
	}
	if got := inputNames(m2); got != "x b" {
		t.Errorf("inputs %q, want \"x b\"", got)
	}
	if ty := m2.Graph.Inputs[1].Type.String(); ty != "float32[2,3]" {
		t.Errorf("b has type %s", ty)
	}

	// A graph input: nothing to do.
	m3, _ := m.Clone()
	if err := Apply(m3, From("x")); err != nil {
		t.Fatal(err)
	}
	if got := inputNames(m3); got != "x y" {
		t.Errorf("inputs %q, want \"x y\"", got)
	}
}

func inputNames(m *onnx.Model) string {
	var names []string
	for _, v := range m.Graph.Inputs {
		names = append(names, v.Name)
	}
	return strings.Join(names, " ")
}

func TestFromErrors(t *testing.T) {
	g := &onnx.Graph{Name: "g"}
	x := g.AddInput("x", onnx.TensorType(onnx.Float, 2, 3))
	w := weight(t, g, "w", 2, 3)
	a := g.AddNode("Add", "add", []*onnx.Value{x, w}, []string{"a"}).Outputs[0]
	// An operator of another domain: shape inference never types its output.
	custom := g.AddNode("Mystery", "mystery", []*onnx.Value{a}, []string{"e"})
	custom.Domain = "com.example"
	e := custom.Outputs[0]
	r := g.AddNode("Relu", "relu", []*onnx.Value{e}, []string{"r"}).Outputs[0]
	g.Outputs = []*onnx.Value{r}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}, {Domain: "com.example", Version: 1}}, Graph: g}
	before := encode(t, m)
	for _, c := range []struct{ value, msg string }{
		{"nope", `no value named "nope"`},
		{"w", `"w" is a constant`},
		{"e", `the type of "e" is unknown`},
	} {
		err := Apply(m, From(c.value))
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("From(%q): error %v, want one containing %q", c.value, err, c.msg)
		}
	}
	if string(encode(t, m)) != string(before) {
		t.Error("a failed From changed the model")
	}
	if err := Apply(m, From("a")); err != nil {
		t.Fatal(err)
	}
	if got := inputNames(m); got != "a" || len(m.Graph.Initializers) != 0 {
		t.Errorf("inputs %q and %d initializers, want \"a\" and none", got, len(m.Graph.Initializers))
	}
}

// Where forward inference stops (a Reshape to a shape computed at run
// time, as in ShuffleNet's channel shuffle), From types a Gemm's input from
// the Gemm: [M, K], K from its weight and M from its output.
func TestFromTypesAGemmInputBackwards(t *testing.T) {
	for _, transB := range []int64{0, 1} {
		g := &onnx.Graph{Name: "g"}
		x := g.AddInput("x", &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("batch"), onnx.Fixed(2), onnx.Fixed(3)}})
		s := g.AddInput("s", onnx.TensorType(onnx.Int64, 2))
		f := g.AddNode("Reshape", "reshape", []*onnx.Value{x, s}, []string{"f"}).Outputs[0]
		dims := []int64{6, 4}
		if transB == 1 {
			dims = []int64{4, 6}
		}
		w := weight(t, g, "w", dims...)
		y := g.AddNode("Gemm", "fc", []*onnx.Value{f, w}, []string{"y"}, &onnx.Attribute{Name: "transB", Type: onnx.AttrInt, Int: transB}).Outputs[0]
		y.Type = &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("batch"), onnx.Fixed(4)}}
		g.Outputs = []*onnx.Value{y}
		m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}
		if err := Apply(m, From("f")); err != nil {
			t.Fatalf("transB %d: %v", transB, err)
		}
		if in := m.Graph.Inputs; len(in) != 1 || in[0].Name != "f" || in[0].Type.String() != "float32[batch,6]" {
			t.Errorf("transB %d: inputs %s, want f float32[batch,6]", transB, inputNames(m))
		}
	}
}

// From a 4-D feature map (SqueezeNet's head is a 1x1 Conv): the stored
// contract no longer claims the 3-channel images of the old input, so the
// head's contract derives without error.
func TestFromKeepsTheStoredContractTrue(t *testing.T) {
	m := load(t, "../testdata/models/resnet_tiny_op13_bn/model.onnx")
	c, err := contract.Derive(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := contract.Store(m, c); err != nil {
		t.Fatal(err)
	}
	h, err := FindHead(m.Graph)
	if err != nil {
		t.Fatal(err)
	}
	// The input of the pooling before the head: [batch,64,H,W].
	pool := h.Node.Input(0).Producer()
	for pool != nil && pool.OpType != "GlobalAveragePool" {
		pool = pool.Input(0).Producer()
	}
	if pool == nil {
		t.Fatal("no GlobalAveragePool before the head")
	}
	if err := Apply(m, From(pool.Input(0).Name)); err != nil {
		t.Fatal(err)
	}
	got, err := contract.Derive(m)
	if err != nil {
		t.Fatalf("the contract after From: %v", err)
	}
	if got.Input.Name != pool.Input(0).Name || got.Input.Channels != 64 || got.Output.Name != c.Output.Name {
		t.Errorf("contract after From: input %+v, output %q; want input %q with 64 channels and output %q", got.Input, got.Output.Name, pool.Input(0).Name, c.Output.Name)
	}
}
