package onnx

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
)

// clearTypes forgets every type but those of graph inputs and initializers.
func clearTypes(g *Graph) {
	for _, n := range g.Nodes {
		for _, v := range n.Outputs {
			if v != nil {
				v.Type = nil
			}
		}
	}
}

func TestInferShapesOnTestModels(t *testing.T) {
	paths, _ := filepath.Glob("../testdata/models/*/model.onnx")
	if len(paths) < 7 {
		t.Fatalf("%d models in testdata/models, want 7", len(paths))
	}
	inferShapes(t, paths)
	t.Run("big", func(t *testing.T) { inferShapes(t, testenv.Big.Glob(t, "resnet18_*/model.onnx", 4)) })
}

func inferShapes(t *testing.T, paths []string) {
	for _, path := range paths {
		m, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		want := m.Graph.Outputs[0].Type.Shape
		clearTypes(m.Graph)
		if err := m.InferShapes(); err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		// Symbolic: the batch dimension carries through by name.
		if got := m.Graph.Outputs[0].Type.shape(); got.String() != want.String() {
			t.Errorf("%s: inferred output %v, model declares %v", path, got, want)
		}
		for _, n := range m.Graph.Nodes {
			for _, v := range n.Outputs {
				if v.Type == nil || v.Type.Shape == nil {
					t.Errorf("%s: %s: output %q got no shape", path, n, v.Name)
				}
			}
		}

		// Concrete: with the test input's dims, the output has PyTorch's dims.
		in, err := LoadTensor(filepath.Join(filepath.Dir(path), "test_data_set_0", "input_0.pb"))
		if err != nil {
			t.Fatal(err)
		}
		out, err := LoadTensor(filepath.Join(filepath.Dir(path), "test_data_set_0", "output_0.pb"))
		if err != nil {
			t.Fatal(err)
		}
		clearTypes(m.Graph)
		m.Graph.Inputs[0].Type = TensorType(in.DType, in.Dims...)
		if err := m.InferShapes(); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		got, ok := m.Graph.Outputs[0].Type.shape().Ints()
		if !ok || !slices.Equal(got, out.Dims) {
			t.Errorf("%s: inferred output %v for input %v, PyTorch gave %v", path, m.Graph.Outputs[0].Type, in.Dims, out.Dims)
		}
	}
}

func TestInferShapesReportsMismatch(t *testing.T) {
	m, err := Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	clearTypes(m.Graph)
	m.Graph.Inputs[0].Type = TensorType(Float, 2, 1, 20, 20) // fc1 expects 28x28 features
	err = m.InferShapes()
	if err == nil {
		t.Fatal("a 20x20 input through a 28x28 classifier gave no error")
	}
	t.Log(err)
}

// The activation and normalisation ops keep their input's type, Max and Min
// broadcast all their inputs, and LayerNormalization's statistics have 1
// from the axis on, symbolic dimensions carried through by name.
func TestInferShapesActivationsAndNorms(t *testing.T) {
	g := &Graph{Name: "g"}
	batch := &Type{Elem: Float, Shape: Shape{Symbolic("batch"), Fixed(197), Fixed(8)}}
	x := g.AddInput("x", batch)
	y := g.AddInput("y", TensorType(Float, 197, 1))
	z := g.AddInput("z", TensorType(Float, 8))
	scale := g.AddInitializer(&Tensor{Name: "scale", DType: Float, Dims: []int64{8}, raw: make([]byte, 32)})
	h := g.AddNode("HardSwish", "h", []*Value{x}, []string{"h"})
	e := g.AddNode("Gelu", "e", h.Outputs, []string{"e"})
	mx := g.AddNode("Max", "mx", []*Value{e.Outputs[0], y, z}, []string{"mx"})
	ln := g.AddNode("LayerNormalization", "ln", []*Value{mx.Outputs[0], scale}, []string{"ln", "mean", "istd"}, &Attribute{Name: "axis", Type: AttrInt, Int: -2})
	g.Outputs = ln.Outputs
	m := &Model{IRVersion: 8, Opsets: []Opset{{Version: 20}}, Graph: g}
	if err := m.InferShapes(); err != nil {
		t.Fatal(err)
	}
	for v, want := range map[*Value]string{
		h.Outputs[0]:  "float32[batch,197,8]",
		e.Outputs[0]:  "float32[batch,197,8]",
		mx.Outputs[0]: "float32[batch,197,8]",
		ln.Outputs[0]: "float32[batch,197,8]",
		ln.Outputs[1]: "float32[batch,1,1]",
		ln.Outputs[2]: "float32[batch,1,1]",
	} {
		if got := v.Type.String(); got != want {
			t.Errorf("%s: %s, want %s", v.Name, got, want)
		}
	}

	ln.Attrs[0].Int = 3
	clearTypes(g)
	if err := m.InferShapes(); err == nil || !strings.Contains(err.Error(), "axis 3 out of range") {
		t.Errorf("LayerNormalization with axis 3 of a 3-d input: error %v", err)
	}
	mx.Inputs[1] = g.AddInput("w", TensorType(Float, 5, 1))
	clearTypes(g)
	if err := m.InferShapes(); err == nil || !strings.Contains(err.Error(), "cannot broadcast") {
		t.Errorf("Max of [batch,197,8] and [5,1]: error %v", err)
	}
}
