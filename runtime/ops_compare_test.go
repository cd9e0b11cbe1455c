package runtime

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

// Where's gradient goes to X where the condition holds and to Y elsewhere,
// summed over broadcast copies; the condition computed at run time has
// none.
func TestWhereGradient(t *testing.T) {
	for _, shapes := range [][][]int{
		{{2, 3}, {2, 3}, {2, 3}},
		{{2, 1, 4}, {3, 1}, {2, 3, 4}},
		{{4}, {2, 3, 4}, {}},
	} {
		c := opCase{op: "Where", shapes: shapes, kinds: map[int]onnx.DType{0: onnx.Bool}}
		in := randomInputs(31, shapes)
		for i := range in[0] {
			in[0][i] = float64(i % 2)
		}
		checkGrad(t, c.kernel(t), in)
	}
}

// A mask computed from data at run time picks elements and passes the
// gradient through them: the attention mask of Swin's shifted windows
// (ScatterND into zeros, then masked_fill by Equal and Not) and ReLU by
// hand. Step's input gradient is the mask itself.
func TestMaskAtRunTime(t *testing.T) {
	g := &onnx.Graph{Name: "mask"}
	x := g.AddInput("x", onnx.TensorType(onnx.Float, 1, 4))
	zero, _ := onnx.FromFloat32("zero", nil, []float32{0})
	big, _ := onnx.FromFloat32("big", nil, []float32{-100})
	z := g.AddInitializer(zero)
	pos := g.AddNode("Greater", "pos", []*onnx.Value{x, z}, []string{"pos"}).Outputs[0]
	relu := g.AddNode("Where", "relu", []*onnx.Value{pos, x, z}, []string{"relu"}).Outputs[0]
	eq := g.AddNode("Equal", "eq", []*onnx.Value{relu, z}, []string{"eq"}).Outputs[0]
	ne := g.AddNode("Not", "ne", []*onnx.Value{eq}, []string{"ne"}).Outputs[0]
	filled := g.AddNode("Where", "fill", []*onnx.Value{eq, g.AddInitializer(big), relu}, []string{"filled"}).Outputs[0]
	g.Outputs = []*onnx.Value{filled, ne}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}
	p, err := Compile(m, Options{Float64: true})
	if err != nil {
		t.Fatal(err)
	}
	xs := tensor.New(tensor.WithShape(1, 4), tensor.WithBacking([]float64{0.5, -1, 2, -3}))
	res, err := p.Step(&Request{Inputs: []*tensor.Dense{xs}, Loss: CrossEntropy, InputGrads: true,
		Targets: tensor.New(tensor.WithShape(1, 4), tensor.WithBacking([]float64{0, 0, 1, 0}))})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Outputs[0].Data(), res.Outputs[1].Dtype(), res.Outputs[1].Data()); got != "[0.5 -100 2 -100] bool [true false true false]" {
		t.Errorf("outputs %s", got)
	}
	// d CE / d logits = softmax - target, through where x > 0 only.
	lg := []float64{0.5, -100, 2, -100}
	sum := 0.0
	for _, v := range lg {
		sum += math.Exp(v)
	}
	gx := res.InputGrads[0].Data().([]float64)
	want := []float64{math.Exp(0.5) / sum, 0, math.Exp(2)/sum - 1, 0}
	for i := range want {
		if math.Abs(gx[i]-want[i]) > 1e-12 {
			t.Errorf("input gradient %v, want %v", gx, want)
			break
		}
	}
}

// Comparisons of values known when the graph is built fold into constants
// of the same meaning as the kernels: the pattern before an exported Expand
// (Where(Equal(shape, -1), ones, shape)) leaves no node.
func TestCompareFolds(t *testing.T) {
	shape := ic([]int{3}, 2, -1, 4)
	minus1 := ic([]int{}, -1)
	b, outs, err := shapeNode(t, "Equal", 13, nil, shape, minus1)
	wantBools(t, "Equal", outs, err, "[0 1 0]")
	_, outs, err = shapeNode(t, "Where", 13, nil, outs[0], ic([]int{3}, 1, 1, 1), shape)
	wantInts(t, "Where", []int{3}, []int64{2, 1, 4}, b, outs, err)
	if len(b.kernels) != 0 {
		t.Errorf("folding built %d kernels", len(b.kernels))
	}
	a, c := ic([]int{4}, -2, 0, 3, 1<<60+1), ic([]int{4}, 1, 0, 3, 1<<60)
	for op, want := range map[string]string{"Less": "[1 0 0 0]", "Greater": "[0 0 0 1]", "LessOrEqual": "[1 1 1 0]", "GreaterOrEqual": "[0 1 1 1]", "Equal": "[0 1 1 0]"} {
		_, outs, err := shapeNode(t, op, 13, nil, a, c)
		wantBools(t, op, outs, err, want)
	}
	p, q := boolc(1, 1, 0, 0), boolc(1, 0, 1, 0)
	for op, want := range map[string]string{"And": "[1 0 0 0]", "Or": "[1 1 1 0]", "Xor": "[0 1 1 0]"} {
		_, outs, err := shapeNode(t, op, 13, nil, p, q)
		wantBools(t, op, outs, err, want)
	}
	_, outs, err = shapeNode(t, "Not", 13, nil, p)
	wantBools(t, "Not", outs, err, "[0 0 1 1]")
}

func boolc(v ...int64) *val[float64] {
	return &val[float64]{ints: v, shape: []int{len(v)}, elem: onnx.Bool}
}

func wantBools(t *testing.T, what string, outs []*val[float64], err error, want string) {
	t.Helper()
	if err != nil || !outs[0].isInt() || outs[0].dtype() != onnx.Bool || fmt.Sprint(outs[0].ints) != want {
		t.Errorf("%s: %v %+v, want bool %s", what, err, outs, want)
	}
}

// Comparisons of floats at run time, NaN included: every comparison with
// NaN is false.
func TestCompareAtRunTime(t *testing.T) {
	nan := float32(math.NaN())
	a := []float32{1, 2, 3, nan}
	c := []float32{2, 2, 2, nan}
	for op, want := range map[string]string{"Less": "[true false false false]", "Greater": "[false false true false]",
		"LessOrEqual": "[true true false false]", "GreaterOrEqual": "[false true true false]", "Equal": "[false true false false]"} {
		g := &onnx.Graph{Name: "cmp"}
		x := g.AddInput("a", onnx.TensorType(onnx.Float, 4))
		y := g.AddInput("c", onnx.TensorType(onnx.Float, 4))
		g.Outputs = g.AddNode(op, "cmp", []*onnx.Value{x, y}, []string{"z"}).Outputs
		outs, err := runGraph(t, g, 13, false, f32s([]int{4}, a...), f32s([]int{4}, c...))
		if err != nil || fmt.Sprint(outs[0].Data()) != want {
			t.Errorf("%s: %v %v, want %s", op, outs, err, want)
		}
	}
}

// Bad inputs are one-line errors naming what is wrong.
func TestCompareErrors(t *testing.T) {
	for _, c := range []struct {
		oc   opCase
		want string
	}{
		{opCase{op: "Where", shapes: [][]int{{2}, {2}, {2}}}, "the condition is float32, not bool"},
		{opCase{op: "Where", shapes: [][]int{{2}, {2}, {2}}, kinds: map[int]onnx.DType{0: onnx.Bool, 1: onnx.Int64}}, "X is int64 but Y is float32"},
		{opCase{op: "Where", shapes: [][]int{{2}, {3}, {2}}, kinds: map[int]onnx.DType{0: onnx.Bool}}, "do not broadcast"},
		{opCase{op: "And", shapes: [][]int{{2}, {2}}, kinds: map[int]onnx.DType{0: onnx.Bool}}, "input 1 is float32, not bool"},
		{opCase{op: "Not", shapes: [][]int{{2}}, kinds: map[int]onnx.DType{0: onnx.Int32}}, "input is int32, not bool"},
		{opCase{op: "Equal", shapes: [][]int{{2}, {2}}, kinds: map[int]onnx.DType{0: onnx.Int64}}, "inputs are int64 and float32"},
		{opCase{op: "Less", shapes: [][]int{{2}, {3}}}, "do not broadcast"},
	} {
		if err := buildErr(t, c.oc); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s %v: error %v, want %q", c.oc.op, c.oc.kinds, err, c.want)
		}
	}
}
