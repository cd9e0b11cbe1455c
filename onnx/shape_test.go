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

// The Reduce* rule against the operator's definition: axes from the
// attribute or a constant input, negative axes, keepdims, all axes, and
// noop_with_empty_axes; axes computed at run time leave the shape unknown.
func TestInferShapesReduce(t *testing.T) {
	x := &Type{Elem: Float, Shape: Shape{Symbolic("batch"), Fixed(16), Fixed(2), Fixed(3)}}
	ints := func(name string, v ...int64) *Attribute { return &Attribute{Name: name, Type: AttrInts, Ints: v} }
	one := func(name string, v int64) *Attribute { return &Attribute{Name: name, Type: AttrInt, Int: v} }
	for _, c := range []struct {
		op    string
		opset int64
		axes  []int64 // as the second input, when not nil
		attrs []*Attribute
		want  string
	}{
		{"ReduceMean", 13, nil, []*Attribute{ints("axes", 2, 3), one("keepdims", 0)}, "float32[batch,16]"},
		{"ReduceMean", 13, nil, []*Attribute{ints("axes", -1, -2)}, "float32[batch,16,1,1]"},
		{"ReduceMax", 13, nil, []*Attribute{one("keepdims", 0)}, "float32[]"},
		{"ReduceMin", 13, nil, nil, "float32[1,1,1,1]"},
		{"ReduceSum", 13, []int64{1}, []*Attribute{one("keepdims", 0)}, "float32[batch,2,3]"},
		{"ReduceMean", 18, []int64{}, []*Attribute{one("noop_with_empty_axes", 1)}, "float32[batch,16,2,3]"},
	} {
		g := &Graph{Name: "g"}
		in := []*Value{g.AddInput("x", x)}
		if c.axes != nil {
			axes, err := FromInt64("axes", []int64{int64(len(c.axes))}, c.axes)
			if err != nil {
				t.Fatal(err)
			}
			in = append(in, g.AddInitializer(axes))
		}
		n := g.AddNode(c.op, "r", in, []string{"y"}, c.attrs...)
		g.Outputs = n.Outputs
		m := &Model{IRVersion: 8, Opsets: []Opset{{Version: c.opset}}, Graph: g}
		if err := m.InferShapes(); err != nil {
			t.Fatalf("%s %v: %v", c.op, c.attrs, err)
		}
		if got := n.Outputs[0].Type.String(); got != c.want {
			t.Errorf("%s axes %v %v: %s, want %s", c.op, c.axes, c.attrs, got, c.want)
		}
	}
	g := &Graph{Name: "g"}
	a := g.AddInput("a", TensorType(Int64, 1))
	n := g.AddNode("ReduceSum", "r", []*Value{g.AddInput("x", x), a}, []string{"y"})
	m := &Model{IRVersion: 8, Opsets: []Opset{{Version: 13}}, Graph: g}
	if err := m.InferShapes(); err != nil {
		t.Fatal(err)
	}
	if ty := n.Outputs[0].Type; ty != nil && ty.Shape != nil {
		t.Errorf("ReduceSum with axes computed at run time: %s, want an unknown shape", ty)
	}
}
