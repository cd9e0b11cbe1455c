package runtime

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

// runGraph compiles g at opset and runs it in float32, or float64.
func runGraph(t *testing.T, g *onnx.Graph, opset int64, f64 bool, inputs ...*tensor.Dense) ([]*tensor.Dense, error) {
	t.Helper()
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: opset}}, Graph: g}
	p, err := Compile(m, Options{Float64: f64})
	if err != nil {
		return nil, err
	}
	return p.Run(inputs...)
}

func i64s(shape []int, v ...int64) *tensor.Dense {
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
}

func f32s(shape []int, v ...float32) *tensor.Dense {
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
}

// Integer arithmetic on tensors fed at run time follows ONNX's integer
// rules (Div and Mod fmod=1 truncate, Mod fmod=0 takes the divisor's sign,
// narrow types wrap), gives int64 outputs, and agrees with the same graph
// folded when the graph is built.
func TestIntegerArithmeticAtRunTime(t *testing.T) {
	a := []int64{7, -7, 7, -7, 250, 3}
	c := []int64{2, 2, -2, -2, 10, 4}
	type op struct {
		op    string
		attrs []*onnx.Attribute
		want  func(x, y int64) int64
	}
	ops := []op{
		{"Add", nil, func(x, y int64) int64 { return x + y }},
		{"Sub", nil, func(x, y int64) int64 { return x - y }},
		{"Mul", nil, func(x, y int64) int64 { return x * y }},
		{"Div", nil, func(x, y int64) int64 { return x / y }},
		{"Pow", nil, func(x, y int64) int64 { return int64(math.Pow(float64(x), math.Abs(float64(y)))) }},
		{"Mod", []*onnx.Attribute{aInt("fmod", 1)}, func(x, y int64) int64 { return x % y }},
		{"Mod", nil, func(x, y int64) int64 { return ((x % y) + y) % y }},
	}
	for _, o := range ops {
		c := c
		if o.op == "Pow" {
			c = []int64{2, 2, 2, 2, 1, 4} // no negative powers of integers
		}
		for _, folded := range []bool{false, true} {
			g := &onnx.Graph{Name: "ints"}
			var x, y *onnx.Value
			var feeds []*tensor.Dense
			if folded {
				ta, _ := onnx.FromInt64("a", []int64{6}, a)
				tc, _ := onnx.FromInt64("c", []int64{6}, c)
				x, y = g.AddInitializer(ta), g.AddInitializer(tc)
			} else {
				x = g.AddInput("a", onnx.TensorType(onnx.Int64, 6))
				y = g.AddInput("c", onnx.TensorType(onnx.Int64, 6))
				feeds = []*tensor.Dense{i64s([]int{6}, a...), i64s([]int{6}, c...)}
			}
			g.Outputs = g.AddNode(o.op, "op", []*onnx.Value{x, y}, []string{"z"}, o.attrs...).Outputs
			outs, err := runGraph(t, g, 13, false, feeds...)
			if err != nil {
				t.Fatalf("%s (folded %v): %v", o.op, folded, err)
			}
			want := make([]int64, len(a))
			for i := range a {
				want[i] = o.want(a[i], c[i])
			}
			if outs[0].Dtype() != tensor.Int64 || fmt.Sprint(outs[0].Data()) != fmt.Sprint(want) {
				t.Errorf("%s %v (folded %v): got %v %v, want %v", o.op, o.attrs, folded, outs[0].Dtype(), outs[0].Data(), want)
			}
		}
	}

	// uint8 wraps: 3 - 5 is 254, 20 * 20 is 144.
	g := &onnx.Graph{Name: "uint8"}
	x := g.AddInput("a", onnx.TensorType(onnx.Uint8, 2))
	y := g.AddInput("c", onnx.TensorType(onnx.Uint8, 2))
	sub := g.AddNode("Sub", "sub", []*onnx.Value{x, y}, []string{"d"}).Outputs[0]
	mul := g.AddNode("Mul", "mul", []*onnx.Value{x, x}, []string{"p"}).Outputs[0]
	g.Outputs = []*onnx.Value{sub, mul}
	outs, err := runGraph(t, g, 13, false, i64s([]int{2}, 3, 20), i64s([]int{2}, 5, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(outs[0].Data(), outs[1].Data()); got != "[254 19] [9 144]" {
		t.Errorf("uint8 Sub and Mul: %s, want [254 19] [9 144]", got)
	}
}

// An integer result the float type cannot hold exactly, or a division by
// zero, fails the run naming the node; float64 holds what float32 cannot.
func TestIntegerRunTimeErrors(t *testing.T) {
	g := &onnx.Graph{Name: "big"}
	x := g.AddInput("a", onnx.TensorType(onnx.Int64, 2))
	y := g.AddInput("c", onnx.TensorType(onnx.Int64, 2))
	g.Outputs = g.AddNode("Mul", "square", []*onnx.Value{x, y}, []string{"p"}).Outputs
	_, err := runGraph(t, g, 13, false, i64s([]int{2}, 4097, 1), i64s([]int{2}, 4097, 1))
	if err == nil || !strings.Contains(err.Error(), `Mul node "square"`) || !strings.Contains(err.Error(), "16785409, beyond the integers float32 holds exactly") {
		t.Errorf("4097 * 4097 in float32: %v", err)
	}
	outs, err := runGraph(t, g, 13, true, i64s([]int{2}, 4097, 1), i64s([]int{2}, 4097, 1))
	if err != nil || fmt.Sprint(outs[0].Data()) != "[16785409 1]" {
		t.Errorf("4097 * 4097 in float64: %v %v", outs, err)
	}
	if _, err := runGraph(t, g, 13, false, i64s([]int{2}, 1<<25+1, 1), i64s([]int{2}, 1, 1)); err == nil || !strings.Contains(err.Error(), `input "a": element 0 is 33554433`) {
		t.Errorf("an input float32 cannot hold: %v", err)
	}
	g.Nodes[0].OpType = "Div"
	if _, err := runGraph(t, g, 13, false, i64s([]int{2}, 1, 1), i64s([]int{2}, 1, 0)); err == nil || !strings.Contains(err.Error(), `Div node "square"`) || !strings.Contains(err.Error(), "integer division by zero") {
		t.Errorf("division by zero: %v", err)
	}
	g.Nodes[0].OpType = "Mod"
	if _, err := runGraph(t, g, 13, false, i64s([]int{2}, 1, 1), i64s([]int{2}, 1, 0)); err == nil || !strings.Contains(err.Error(), "integer modulo by zero") {
		t.Errorf("modulo by zero: %v", err)
	}
}

// Cast computes integers from floats at run time: truncated toward zero,
// wrapped to narrow types; bool is nonzero; NaN has no integer.
func TestCastAtRunTime(t *testing.T) {
	in := []float32{2.7, -2.7, 300, 0.5, 0, -1}
	for _, c := range []struct {
		to   onnx.DType
		want string
	}{
		{onnx.Int64, "[2 -2 300 0 0 -1]"},
		{onnx.Int32, "[2 -2 300 0 0 -1]"},
		{onnx.Uint8, "[2 254 44 0 0 255]"},
		{onnx.Int8, "[2 -2 44 0 0 -1]"},
		{onnx.Bool, "[true true true true false true]"},
	} {
		g := &onnx.Graph{Name: "cast"}
		x := g.AddInput("x", onnx.TensorType(onnx.Float, 6))
		g.Outputs = g.AddNode("Cast", "cast", []*onnx.Value{x}, []string{"y"}, aInt("to", int64(c.to))).Outputs
		outs, err := runGraph(t, g, 13, false, f32s([]int{6}, in...))
		if err != nil {
			t.Fatalf("to %s: %v", c.to, err)
		}
		if got := fmt.Sprint(outs[0].Data()); got != c.want {
			t.Errorf("to %s: %s, want %s", c.to, got, c.want)
		}
	}
	g := &onnx.Graph{Name: "cast"}
	x := g.AddInput("x", onnx.TensorType(onnx.Float, 2))
	i := g.AddNode("Cast", "to_int", []*onnx.Value{x}, []string{"i"}, aInt("to", int64(onnx.Int64))).Outputs[0]
	g.Outputs = g.AddNode("Cast", "back", []*onnx.Value{i}, []string{"f"}, aInt("to", int64(onnx.Float))).Outputs
	outs, err := runGraph(t, g, 13, false, f32s([]int{2}, -3.5, 9.9))
	if err != nil || outs[0].Dtype() != tensor.Float32 || fmt.Sprint(outs[0].Data()) != "[-3 9]" {
		t.Errorf("float -> int64 -> float: %v %v", outs, err)
	}
	if _, err := runGraph(t, g, 13, false, f32s([]int{2}, float32(math.NaN()), 1)); err == nil || !strings.Contains(err.Error(), `Cast node "to_int"`) || !strings.Contains(err.Error(), "cannot cast NaN to int64") {
		t.Errorf("NaN to int64: %v", err)
	}
}

// Integer inputs are fed as int64 tensors and booleans as bool tensors; an
// op that would compute integers by float rules refuses them; they have no
// gradient.
func TestIntegerInputsAndRefusals(t *testing.T) {
	g := &onnx.Graph{Name: "ints"}
	x := g.AddInput("x", onnx.TensorType(onnx.Int64, 2))
	g.Outputs = g.AddNode("Sigmoid", "sig", []*onnx.Value{x}, []string{"y"}).Outputs
	if _, err := runGraph(t, g, 13, false, i64s([]int{2}, 1, 2)); err == nil || !strings.Contains(err.Error(), `Sigmoid node "sig": Sigmoid on int64 tensors computed at run time is not supported`) {
		t.Errorf("Sigmoid on int64: %v", err)
	}
	g.Nodes[0].OpType = "Neg"
	if _, err := runGraph(t, g, 13, false, f32s([]int{2}, 1, 2)); err == nil || !strings.Contains(err.Error(), `input "x" is float32, the model declares int64`) {
		t.Errorf("a float fed for an int64 input: %v", err)
	}
	outs, err := runGraph(t, g, 13, false, i64s([]int{2}, 1, -2))
	if err != nil || fmt.Sprint(outs[0].Data()) != "[-1 2]" {
		t.Errorf("Neg of int64: %v %v", outs, err)
	}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}
	p, err := Compile(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Step(&Request{Inputs: []*tensor.Dense{i64s([]int{2}, 1, 2)}, Loss: CrossEntropy, Targets: f32s([]int{1, 2}, 1, 0), InputGrads: true}); err == nil || !strings.Contains(err.Error(), `input "x" is a int64 tensor: it has no gradient`) {
		t.Errorf("InputGrads of an int64 input: %v", err)
	}
}

// The float Mod (fmod=1) has the gradient of a - trunc(a/b) b.
func TestModGradient(t *testing.T) {
	c := opCase{op: "Mod", attrs: []*onnx.Attribute{aInt("fmod", 1)}, shapes: [][]int{{2, 3, 4}, {3, 1}}}
	in := randomInputs(21, c.shapes)
	for i := range in[0] {
		in[0][i] *= 5
	}
	for i := range in[1] {
		in[1][i] = math.Copysign(0.7+math.Abs(in[1][i]), in[1][i])
	}
	checkGrad(t, c.kernel(t), in)
	if err := buildErr(t, opCase{op: "Mod", shapes: [][]int{{2}, {2}}}); err == nil || !strings.Contains(err.Error(), "fmod is 0 on float inputs") {
		t.Errorf("Mod fmod=0 on floats: %v", err)
	}
}

// The memory estimate counts integer and boolean outputs as Run returns
// them: int64 and bool tensors, not the float nodes that computed them.
func TestEstimateIntegerOutputs(t *testing.T) {
	g := &onnx.Graph{Name: "outs"}
	x := g.AddInput("x", onnx.TensorType(onnx.Float, 1000))
	zero, _ := onnx.FromFloat32("zero", nil, []float32{0})
	pos := g.AddNode("Greater", "pos", []*onnx.Value{x, g.AddInitializer(zero)}, []string{"pos"}).Outputs[0]
	n := g.AddNode("Cast", "n", []*onnx.Value{x}, []string{"n"}, aInt("to", int64(onnx.Int32))).Outputs[0]
	g.Outputs = []*onnx.Value{pos, n, x}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}
	est, err := Estimate(m, Options{}, Plan{Inputs: [][]int{{1000}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(1000*1 + 1000*8 + 1000*4); est.Results != want {
		t.Errorf("results %d bytes, want %d (bool, int64 and float32 outputs)", est.Results, want)
	}
}
