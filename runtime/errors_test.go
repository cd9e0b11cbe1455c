package runtime

import (
	"errors"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

func TestUnsupportedOpsAreAllNamed(t *testing.T) {
	m, err := onnx.Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	// Rename three nodes' ops to ones the runtime lacks.
	m.Graph.Nodes[0].OpType = "FancyConv"
	m.Graph.Nodes[1].OpType = "Mystery"
	m.Graph.Nodes[3].OpType = "Mystery"
	_, err = Compile(m, Options{})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("error %v, want ErrUnsupported", err)
	}
	for _, want := range []string{"FancyConv", "Mystery", m.Graph.Nodes[0].Name, m.Graph.Nodes[1].Name, m.Graph.Nodes[3].Name} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestBadInputsAreNamed(t *testing.T) {
	m, err := onnx.Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f32 := func(shape ...int) *tensor.Dense {
		return tensor.New(tensor.WithShape(shape...), tensor.Of(tensor.Float32))
	}
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"wrong shape", func() error { _, err := p.Run(f32(2, 1, 32, 32)); return err }, `input "input" has shape (2, 1, 32, 32), the model expects [batch,1,28,28]`},
		{"wrong rank", func() error { _, err := p.Run(f32(1, 28, 28)); return err }, `the model expects [batch,1,28,28]`},
		{"wrong dtype", func() error {
			_, err := p.Run(tensor.New(tensor.WithShape(1, 1, 28, 28), tensor.Of(tensor.Float64)))
			return err
		}, "is float64, the program computes in float32"},
		{"too many inputs", func() error { _, err := p.Run(f32(1, 1, 28, 28), f32(1, 1, 28, 28)); return err }, "the model has 1 inputs (input), got 2"},
		{"no targets", func() error {
			_, err := p.Step(&Request{Inputs: []*tensor.Dense{f32(1, 1, 28, 28)}, Loss: CrossEntropy})
			return err
		}, "needs targets"},
		{"wrong targets", func() error {
			_, err := p.Step(&Request{Inputs: []*tensor.Dense{f32(1, 1, 28, 28)}, Loss: CrossEntropy, Targets: f32(1, 7)})
			return err
		}, "targets have shape (1, 7) but output"},
		{"unknown param", func() error {
			tg, _ := p.OneHot([]int{1}, 10)
			_, err := p.Step(&Request{Inputs: []*tensor.Dense{f32(1, 1, 28, 28)}, Loss: CrossEntropy, Targets: tg, Params: []string{"nope"}})
			return err
		}, `no parameter named "nope"`},
		{"grad without loss", func() error {
			_, err := p.Step(&Request{Inputs: []*tensor.Dense{f32(1, 1, 28, 28)}, InputGrads: true})
			return err
		}, "gradients need a loss"},
		{"bad label", func() error { _, err := p.OneHot([]int{10}, 10); return err }, "label 10 of example 0 is outside 0..9"},
	}
	for _, c := range cases {
		err := c.run()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
	// After all that, the program still works.
	if _, err := p.Run(f32(3, 1, 28, 28)); err != nil {
		t.Errorf("program broken after bad calls: %v", err)
	}
}

// A shape that only fails inside a kernel (a Reshape to an impossible size
// for this batch) comes back as an error naming the node, not a panic.
func TestKernelErrorsNameTheNode(t *testing.T) {
	g := &onnx.Graph{Name: "g"}
	x := g.AddInput("x", &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("n"), onnx.Fixed(6)}})
	shape, _ := onnx.FromInt64("shape", []int64{2}, []int64{4, -1})
	r := g.AddNode("Reshape", "reshape_to_4", []*onnx.Value{x, g.AddInitializer(shape)}, []string{"y"})
	g.Outputs = []*onnx.Value{r.Outputs[0]}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}
	p, err := Compile(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Run(tensor.New(tensor.WithShape(3, 6), tensor.Of(tensor.Float32)))
	if err == nil || !strings.Contains(err.Error(), `Reshape node "reshape_to_4"`) || !strings.Contains(err.Error(), "cannot reshape") {
		t.Errorf("error %v", err)
	}
}
