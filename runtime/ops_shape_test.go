package runtime

import (
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func TestShapeGradients(t *testing.T) {
	cases := []opCase{
		{op: "Transpose", shapes: [][]int{{2, 3, 4}}, attrs: []*onnx.Attribute{aInts("perm", 1, 2, 0)}},
		{op: "Transpose", shapes: [][]int{{3, 1, 2, 4}}},
		{op: "Concat", shapes: [][]int{{2, 3, 4}, {2, 1, 4}, {2, 5, 4}}, attrs: []*onnx.Attribute{aInt("axis", 1)}},
		{op: "Concat", shapes: [][]int{{2, 3}, {2, 2}, {2, 1}, {2, 4}}, attrs: []*onnx.Attribute{aInt("axis", -1)}},
		{op: "Concat", shapes: [][]int{{1, 3}, {2, 3}}, attrs: []*onnx.Attribute{aInt("axis", 0)}},
		{op: "Gather", shapes: [][]int{{5, 3}}, ints: map[int][]int64{1: {4, 1, 1, -1, 0, 1}}},
		{op: "Gather", shapes: [][]int{{2, 4, 3}}, ints: map[int][]int64{1: {3, 3, 0}}, attrs: []*onnx.Attribute{aInt("axis", 1)}},
		{op: "Gather", shapes: [][]int{{2, 3, 4}}, ints: map[int][]int64{1: {-1, 2, -1, 0}}, attrs: []*onnx.Attribute{aInt("axis", -1)}},
		// Negative steps, clamped starts and ends, negative axes.
		{op: "Slice", shapes: [][]int{{6, 5, 4}}, ints: map[int][]int64{1: {5, 100, -1}, 2: {0, -100, 0}, 3: {0, 1, -1}, 4: {-2, -1, -2}}},
		{op: "Slice", shapes: [][]int{{7, 5}}, ints: map[int][]int64{1: {1, -4}, 2: {math.MaxInt64, 5}, 4: {3, 2}}},
		{op: "Slice", opset: 9, shapes: [][]int{{4, 6}}, attrs: []*onnx.Attribute{aInts("starts", 1), aInts("ends", -1), aInts("axes", 1)}},
		{op: "Expand", shapes: [][]int{{3, 1}}, ints: map[int][]int64{1: {2, 1, 4}}},
		{op: "Expand", shapes: [][]int{{2, 1, 4}}, ints: map[int][]int64{1: {3, 1}}},
	}
	for _, c := range cases {
		t.Run(c.op, func(t *testing.T) {
			checkGrad(t, c.kernel(t), randomInputs(13, c.shapes))
		})
	}
}

// runKernel runs a kernel's forward pass.
func runKernel(t *testing.T, k kernel[float64], in ...[]float64) []float64 {
	t.Helper()
	out := make([]float64, size(k.outShape()))
	if err := k.forward(in, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// iota64 returns 0, 1, ..., n-1.
func iota64(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i)
	}
	return out
}

func TestShapeForward(t *testing.T) {
	// Elements are their own row-major offsets in x, so each output element
	// names the input element it copied.
	tr := opCase{op: "Transpose", shapes: [][]int{{2, 3, 4}}, attrs: []*onnx.Attribute{aInts("perm", 2, 0, 1)}}.kernel(t)
	got := runKernel(t, tr, iota64(24))
	if fmt.Sprint(tr.outShape()) != "[4 2 3]" {
		t.Fatalf("Transpose shape %v", tr.outShape())
	}
	for i := 0; i < 4; i++ {
		for j := 0; j < 2; j++ {
			for k := 0; k < 3; k++ {
				if w := float64(j*12 + k*4 + i); got[(i*2+j)*3+k] != w {
					t.Fatalf("Transpose[%d,%d,%d] = %g, want %g", i, j, k, got[(i*2+j)*3+k], w)
				}
			}
		}
	}

	// x[5:0:-2, :, ::-3] of a [6, 2, 7] tensor.
	sl := opCase{op: "Slice", shapes: [][]int{{6, 2, 7}}, ints: map[int][]int64{1: {5, -1}, 2: {0, math.MinInt64}, 3: {0, 2}, 4: {-2, -3}}}.kernel(t)
	got = runKernel(t, sl, iota64(84))
	var want []float64
	for i := 5; i > 0; i -= 2 {
		for j := 0; j < 2; j++ {
			for k := 6; k >= 0; k -= 3 {
				want = append(want, float64(i*14+j*7+k))
			}
		}
	}
	if fmt.Sprint(sl.outShape()) != "[3 2 3]" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Slice: shape %v, %v, want %v", sl.outShape(), got, want)
	}

	g := opCase{op: "Gather", shapes: [][]int{{3, 4}}, ints: map[int][]int64{1: {-1, 1}}, attrs: []*onnx.Attribute{aInt("axis", 1)}}.kernel(t)
	if got := runKernel(t, g, iota64(12)); fmt.Sprint(got) != "[3 1 7 5 11 9]" {
		t.Fatalf("Gather: %v", got)
	}

	c := opCase{op: "Concat", shapes: [][]int{{2, 1}, {2, 2}}, attrs: []*onnx.Attribute{aInt("axis", 1)}}.kernel(t)
	if got := runKernel(t, c, []float64{1, 2}, []float64{3, 4, 5, 6}); fmt.Sprint(got) != "[1 3 4 2 5 6]" {
		t.Fatalf("Concat: %v", got)
	}

	e := opCase{op: "Expand", shapes: [][]int{{3, 1}}, ints: map[int][]int64{1: {2, 1, 2}}}.kernel(t)
	if got := runKernel(t, e, []float64{1, 2, 3}); fmt.Sprint(e.outShape()) != "[2 3 2]" || fmt.Sprint(got) != "[1 1 2 2 3 3 1 1 2 2 3 3]" {
		t.Fatalf("Expand: shape %v, %v", e.outShape(), got)
	}
}

// shapeNode builds one node over the given values, which may be compile-time
// integers of any shape, and returns the builder and the node's outputs.
func shapeNode(t *testing.T, op string, opset int64, attrs []*onnx.Attribute, in ...*val[float64]) (*builder[float64], []*val[float64], error) {
	t.Helper()
	g := &onnx.Graph{Name: "test"}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: opset}}, Graph: g}
	p := &Program{model: m, rng: rand.New(rand.NewSource(1))}
	b := &builder[float64]{p: p, g: G.NewGraph(), opset: opset, vals: map[*onnx.Value]*val[float64]{}}
	node := &onnx.Node{Name: "node", OpType: op, Attrs: attrs, Outputs: []*onnx.Value{{Name: "out"}}}
	for i, v := range in {
		var x *onnx.Value
		if v != nil {
			x = &onnx.Value{Name: fmt.Sprint("in", i)}
		}
		node.Inputs = append(node.Inputs, x)
	}
	f, ok := registryFor[float64]()[op]
	if !ok {
		t.Fatalf("no builder for %s", op)
	}
	outs, err := f(b, node, in)
	return b, outs, err
}

// ic is an integer constant of the given shape.
func ic(shape []int, v ...int64) *val[float64] {
	if v == nil {
		v = []int64{}
	}
	return &val[float64]{ints: v, shape: shape}
}

// fnode is a float graph input of the given shape.
func fnode(b *builder[float64], shape ...int) *val[float64] {
	n := G.NewTensor(b.g, G.Float64, len(shape), G.WithShape(shape...), G.WithName(fmt.Sprint("x", opIDs.Add(1))))
	return &val[float64]{node: n, shape: shape}
}

// wantInts checks that a node folds to the integer constant want of shape.
func wantInts(t *testing.T, what string, shape []int, want []int64, b *builder[float64], outs []*val[float64], err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(b.kernels) != 0 {
		t.Errorf("%s built %d kernels, want none", what, len(b.kernels))
	}
	o := outs[0]
	if !o.isInt() || fmt.Sprint(o.shape) != fmt.Sprint(shape) || fmt.Sprint(o.ints) != fmt.Sprint(want) {
		t.Errorf("%s = %v of shape %v (int %v), want %v of shape %v", what, o.ints, o.shape, o.isInt(), want, shape)
	}
}

func TestShapeOpsAtCompileTime(t *testing.T) {
	m23 := ic([]int{2, 3}, 1, 2, 3, 4, 5, 6)
	check := func(what string, shape []int, want []int64, op string, opset int64, attrs []*onnx.Attribute, in ...*val[float64]) {
		t.Helper()
		b, outs, err := shapeNode(t, op, opset, attrs, in...)
		wantInts(t, what, shape, want, b, outs, err)
	}
	check("Transpose", []int{3, 2}, []int64{1, 4, 2, 5, 3, 6}, "Transpose", 13, nil, m23)
	check("Concat", []int{2, 4}, []int64{1, 2, 3, 7, 4, 5, 6, 8}, "Concat", 13, []*onnx.Attribute{aInt("axis", -1)}, m23, ic([]int{2, 1}, 7, 8))
	check("Concat with an empty part", []int{2}, []int64{4, 5}, "Concat", 13, []*onnx.Attribute{aInt("axis", 0)}, ic([]int{0}), ic([]int{2}, 4, 5))
	check("Squeeze (input)", []int{3}, []int64{1, 2, 3}, "Squeeze", 13, nil, ic([]int{1, 3, 1}, 1, 2, 3), ic([]int{2}, 0, -1))
	check("Squeeze (all)", []int{3}, []int64{1, 2, 3}, "Squeeze", 13, nil, ic([]int{1, 3, 1}, 1, 2, 3))
	check("Squeeze (attribute)", []int{3, 1}, []int64{1, 2, 3}, "Squeeze", 11, []*onnx.Attribute{aInts("axes", 0)}, ic([]int{1, 3, 1}, 1, 2, 3))
	check("Unsqueeze (input)", []int{1, 2, 1, 3}, []int64{1, 2, 3, 4, 5, 6}, "Unsqueeze", 13, nil, m23, ic([]int{2}, -2, 0))
	check("Unsqueeze (attribute)", []int{1}, []int64{7}, "Unsqueeze", 11, []*onnx.Attribute{aInts("axes", 0)}, ic([]int{}, 7))
	check("Shape", []int{2}, []int64{2, 3}, "Shape", 13, nil, m23)
	check("Shape(start=-2, end=10)", []int{2}, []int64{3, 4}, "Shape", 15, []*onnx.Attribute{aInt("start", -2), aInt("end", 10)}, ic([]int{2, 3, 4}, make([]int64, 24)...))
	check("Shape before opset 15 ignores start", []int{3}, []int64{2, 3, 4}, "Shape", 13, []*onnx.Attribute{aInt("start", 1)}, ic([]int{2, 3, 4}, make([]int64, 24)...))
	check("Size", []int{}, []int64{6}, "Size", 13, nil, m23)
	check("Gather (scalar index)", []int{}, []int64{3}, "Gather", 13, nil, ic([]int{3}, 2, 3, 4), ic([]int{}, -2))
	check("Gather (axis 1)", []int{2, 2}, []int64{3, 1, 6, 4}, "Gather", 13, []*onnx.Attribute{aInt("axis", 1)}, m23, ic([]int{2}, 2, 0))
	check("Slice", []int{2, 1}, []int64{3, 6}, "Slice", 13, nil, m23, ic([]int{1}, -1), ic([]int{1}, math.MinInt64), ic([]int{1}, 1), ic([]int{1}, -5))
	check("Slice (empty)", []int{0}, []int64{}, "Slice", 13, nil, ic([]int{3}, 1, 2, 3), ic([]int{1}, 2), ic([]int{1}, 1))
	check("Expand", []int{2, 2, 3}, []int64{1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6}, "Expand", 13, nil, m23, ic([]int{3}, 2, 1, 1))
	check("Range", []int{2}, []int64{10, 7}, "Range", 11, nil, ic([]int{}, 10), ic([]int{}, 6), ic([]int{}, -3))
	check("Range (empty)", []int{0}, []int64{}, "Range", 11, nil, ic([]int{}, 1), ic([]int{}, 1), ic([]int{}, 1))
	check("Cast to uint8 wraps", []int{3}, []int64{44, 255, 1}, "Cast", 13, []*onnx.Attribute{aInt("to", int64(onnx.Uint8))}, ic([]int{3}, 300, -1, 1))
	check("Cast to bool", []int{3}, []int64{1, 0, 1}, "Cast", 13, []*onnx.Attribute{aInt("to", int64(onnx.Bool))}, ic([]int{3}, -2, 0, 5))
	check("Identity", []int{2, 3}, m23.ints, "Identity", 13, nil, m23)

	// Elementwise arithmetic folds integers, broadcasting; Div truncates.
	a, d := ic([]int{2, 1}, 7, -7), ic([]int{2}, 2, -3)
	check("Add", []int{2, 2}, []int64{9, 4, -5, -10}, "Add", 13, nil, a, d)
	check("Sub", []int{2, 2}, []int64{5, 10, -9, -4}, "Sub", 13, nil, a, d)
	check("Mul", []int{2, 2}, []int64{14, -21, -14, 21}, "Mul", 13, nil, a, d)
	check("Div", []int{2, 2}, []int64{3, -2, -3, 2}, "Div", 13, nil, a, d)
	check("Pow", []int{2}, []int64{49, 1}, "Pow", 13, nil, ic([]int{2}, 7, -1), ic([]int{2}, 2, 4))
	check("Neg", []int{2}, []int64{2, -3}, "Neg", 13, nil, ic([]int{2}, -2, 3))
	check("Abs", []int{2}, []int64{2, 3}, "Abs", 13, nil, ic([]int{2}, -2, 3))
	if _, _, err := shapeNode(t, "Div", 13, nil, a, ic([]int{}, 0)); err == nil || !strings.Contains(err.Error(), "division by zero") {
		t.Errorf("integer Div by 0: %v", err)
	}
}

func TestShapeOpsFloatConstants(t *testing.T) {
	// ConstantOfShape: float (the default, or a float value) becomes a graph
	// constant; an integer value stays at compile time.
	b, outs, err := shapeNode(t, "ConstantOfShape", 13, nil, ic([]int{2}, 2, 3))
	if err != nil || outs[0].node == nil || fmt.Sprint(outs[0].shape, outs[0].consts) != "[2 3] [0 0 0 0 0 0]" {
		t.Fatalf("ConstantOfShape default: %v %+v", err, outs)
	}
	one, _ := onnx.FromFloat32("v", []int64{1}, []float32{1.5})
	b, outs, err = shapeNode(t, "ConstantOfShape", 13, []*onnx.Attribute{{Name: "value", Type: onnx.AttrTensor, Tensor: one}}, ic([]int{1}, 3))
	if err != nil || fmt.Sprint(outs[0].shape, outs[0].consts) != "[3] [1.5 1.5 1.5]" {
		t.Fatalf("ConstantOfShape 1.5: %v %+v", err, outs)
	}
	seven, _ := onnx.FromInt64("v", []int64{1}, []int64{7})
	b, outs, err = shapeNode(t, "ConstantOfShape", 13, []*onnx.Attribute{{Name: "value", Type: onnx.AttrTensor, Tensor: seven}}, ic([]int{2}, 1, 2))
	wantInts(t, "ConstantOfShape int", []int{1, 2}, []int64{7, 7}, b, outs, err)

	// Cast: integers to float make a constant; float constants to integers
	// truncate toward zero; run-time floats become run-time integers.
	b, outs, err = shapeNode(t, "Cast", 13, []*onnx.Attribute{aInt("to", int64(onnx.Float))}, ic([]int{2}, 3, -4))
	if err != nil || outs[0].node == nil || fmt.Sprint(outs[0].consts) != "[3 -4]" {
		t.Fatalf("Cast int to float: %v %+v", err, outs)
	}
	c := b.constant("c", []float64{2.7, -2.7, 0.2}, []int{3})
	_, outs, err = shapeNode(t, "Cast", 13, []*onnx.Attribute{aInt("to", int64(onnx.Int64))}, c)
	if err != nil || !outs[0].isInt() || fmt.Sprint(outs[0].ints) != "[2 -2 0]" {
		t.Fatalf("Cast float constant to int64: %v %+v", err, outs)
	}
	b = &builder[float64]{g: G.NewGraph()}
	x := fnode(b, 2, 3)
	if _, outs, err = shapeNode(t, "Cast", 13, []*onnx.Attribute{aInt("to", int64(onnx.Int64))}, x); err != nil || outs[0].node == nil || outs[0].dtype() != onnx.Int64 {
		t.Errorf("Cast of a run-time float to int64: %v", err)
	}
	if _, outs, err = shapeNode(t, "Cast", 13, []*onnx.Attribute{aInt("to", int64(onnx.Double))}, x); err != nil || outs[0] != x {
		t.Errorf("Cast float to double should pass the tensor through: %v", err)
	}
	if _, _, err = shapeNode(t, "Cast", 13, []*onnx.Attribute{aInt("to", int64(onnx.Float16))}, x); err == nil {
		t.Errorf("Cast to float16 should be refused")
	}

	// Range over float constants.
	b, outs, err = shapeNode(t, "Range", 11, nil, b.constant("s", []float64{1}, nil), b.constant("l", []float64{2}, nil), b.constant("d", []float64{0.25}, nil))
	if err != nil || fmt.Sprint(outs[0].shape, outs[0].consts) != "[4] [1 1.25 1.5 1.75]" {
		t.Fatalf("Range float: %v %+v", err, outs)
	}

	// Gather's indices are integers.
	if _, _, err := shapeNode(t, "Gather", 13, nil, x, x); err == nil || !strings.Contains(err.Error(), "not integers") {
		t.Errorf("Gather with float indices: %v", err)
	}
}

func TestShapeOpErrors(t *testing.T) {
	m23 := ic([]int{2, 3}, 1, 2, 3, 4, 5, 6)
	for _, c := range []struct {
		op    string
		opset int64
		attrs []*onnx.Attribute
		in    []*val[float64]
		want  string
	}{
		{"Transpose", 13, []*onnx.Attribute{aInts("perm", 0, 0)}, []*val[float64]{m23}, "not a permutation"},
		{"Concat", 13, nil, []*val[float64]{m23}, "axis attribute is required"},
		{"Concat", 13, []*onnx.Attribute{aInt("axis", 0)}, []*val[float64]{m23, ic([]int{2, 2}, 1, 2, 3, 4)}, "differ outside axis"},
		{"Squeeze", 13, nil, []*val[float64]{m23, ic([]int{1}, 0)}, "size is not 1"},
		{"Unsqueeze", 13, nil, []*val[float64]{m23}, "axes are required"},
		{"Unsqueeze", 13, nil, []*val[float64]{m23, ic([]int{2}, 0, -4)}, "repeat"},
		{"Gather", 13, nil, []*val[float64]{m23, ic([]int{1}, 2)}, "out of range"},
		{"Gather", 13, []*onnx.Attribute{aInt("axis", 2)}, []*val[float64]{m23, ic([]int{1}, 0)}, "axis 2 is out of range"},
		{"Slice", 13, nil, []*val[float64]{m23, ic([]int{1}, 0), ic([]int{1}, 1), ic([]int{1}, 0), ic([]int{1}, 0)}, "zero step"},
		{"Slice", 13, nil, []*val[float64]{m23, ic([]int{2}, 0, 0), ic([]int{2}, 1, 1), ic([]int{2}, 1, -1)}, "repeat"},
		{"Expand", 13, nil, []*val[float64]{m23, ic([]int{1}, 2)}, "do not broadcast"},
		{"Range", 11, nil, []*val[float64]{ic([]int{}, 0), ic([]int{}, 1), ic([]int{}, 0)}, "delta is 0"},
		{"ConstantOfShape", 13, nil, []*val[float64]{ic([]int{1}, -1)}, "negative"},
		{"ConstantOfShape", 13, nil, []*val[float64]{ic([]int{2}, 0, 3)}, "empty"},
	} {
		_, _, err := shapeNode(t, c.op, c.opset, c.attrs, c.in...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s%v: error %v, want one mentioning %q", c.op, c.attrs, err, c.want)
		}
	}
}

// shapeModel is the shape arithmetic PyTorch exports for
// x.reshape(x.shape[0], -1): Shape -> Gather -> Unsqueeze -> Concat ->
// Reshape, plus Transpose and Slice, with the target shape as a second
// output.
func shapeModel(t *testing.T, opset int64) *onnx.Model {
	t.Helper()
	g := &onnx.Graph{Name: "flatten"}
	x := g.AddInput("x", &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("N"), onnx.Fixed(3), onnx.Fixed(4)}})
	konst := func(name string, dims []int64, v ...int64) *onnx.Value {
		tt, err := onnx.FromInt64(name, dims, v)
		if err != nil {
			t.Fatal(err)
		}
		return g.AddInitializer(tt)
	}
	zero := konst("zero", nil, 0)
	minus1 := konst("minus1", []int64{1}, -1)
	s := g.AddNode("Shape", "shape", []*onnx.Value{x}, []string{"s"}).Outputs[0]
	n := g.AddNode("Gather", "gather", []*onnx.Value{s, zero}, []string{"n"}, aInt("axis", 0)).Outputs[0]
	var n1 *onnx.Value
	if opset >= 13 {
		n1 = g.AddNode("Unsqueeze", "unsqueeze", []*onnx.Value{n, konst("axes", []int64{1}, 0)}, []string{"n1"}).Outputs[0]
	} else {
		n1 = g.AddNode("Unsqueeze", "unsqueeze", []*onnx.Value{n}, []string{"n1"}, aInts("axes", 0)).Outputs[0]
	}
	target := g.AddNode("Concat", "concat", []*onnx.Value{n1, minus1}, []string{"target"}, aInt("axis", 0)).Outputs[0]
	y := g.AddNode("Reshape", "reshape", []*onnx.Value{x, target}, []string{"y"}).Outputs[0]
	yt := g.AddNode("Transpose", "transpose", []*onnx.Value{y}, []string{"yt"}, aInts("perm", 1, 0)).Outputs[0]
	// Every other row of the transpose, from the back.
	sl := g.AddNode("Slice", "slice", []*onnx.Value{yt, konst("starts", []int64{1}, -1), konst("ends", []int64{1}, math.MinInt64),
		konst("sax", []int64{1}, 0), konst("steps", []int64{1}, -2)}, []string{"out"}).Outputs[0]
	g.Outputs = []*onnx.Value{sl, target}
	return &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: opset}}, Graph: g}
}

func TestShapeArithmeticModel(t *testing.T) {
	for _, opset := range []int64{11, 13} {
		p, err := Compile(shapeModel(t, opset), Options{Float64: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, batch := range []int{2, 3} {
			x := tensor.New(tensor.WithShape(batch, 3, 4), tensor.WithBacking(iota64(batch*12)))
			outs, err := p.Run(x)
			if err != nil {
				t.Fatalf("opset %d, batch %d: %v", opset, batch, err)
			}
			// out[i, b] = x reshaped to [batch, 12], transposed: row 11-2i, column b.
			got := outs[0].Data().([]float64)
			if fmt.Sprint(outs[0].Shape()) != "(6, "+fmt.Sprint(batch)+")" {
				t.Fatalf("opset %d, batch %d: shape %v", opset, batch, outs[0].Shape())
			}
			for i := 0; i < 6; i++ {
				for b := 0; b < batch; b++ {
					if w := float64(b*12 + 11 - 2*i); got[i*batch+b] != w {
						t.Fatalf("opset %d, batch %d: out[%d,%d] = %g, want %g", opset, batch, i, b, got[i*batch+b], w)
					}
				}
			}
			if tg, ok := outs[1].Data().([]int64); !ok || fmt.Sprint(tg) != fmt.Sprintf("[%d -1]", batch) {
				t.Fatalf("opset %d, batch %d: target shape %v", opset, batch, outs[1].Data())
			}
		}
	}
}

// TestShapeOnlyModel runs a model whose outputs are all known at compile
// time, so its Gorgonia graph is empty.
func TestShapeOnlyModel(t *testing.T) {
	g := &onnx.Graph{Name: "shapes"}
	a, _ := onnx.FromInt64("a", []int64{3}, []int64{4, 5, 6})
	av := g.AddInitializer(a)
	two, _ := onnx.FromInt64("two", nil, []int64{2})
	tv := g.AddInitializer(two)
	out := g.AddNode("Div", "div", []*onnx.Value{av, tv}, []string{"half"}).Outputs[0]
	g.Outputs = []*onnx.Value{out}
	p, err := Compile(&onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := p.Run()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(outs[0].Data()) != "[2 2 3]" {
		t.Fatalf("got %v", outs[0].Data())
	}
}

// TestUnnamedConstantsStayDistinct guards against Gorgonia merging two
// constants of equal name and shape into one.
func TestUnnamedConstantsStayDistinct(t *testing.T) {
	g := &onnx.Graph{Name: "consts"}
	x := g.AddInput("x", onnx.TensorType(onnx.Float, 2))
	var cs []*onnx.Value
	for _, v := range []float32{1, 10} {
		tt, _ := onnx.FromFloat32("", []int64{2}, []float32{v, v})
		cs = append(cs, g.AddNode("Constant", "", nil, []string{fmt.Sprint("c", v)}, &onnx.Attribute{Name: "value", Type: onnx.AttrTensor, Tensor: tt}).Outputs[0])
	}
	s := g.AddNode("Add", "", []*onnx.Value{x, cs[0]}, []string{"s"}).Outputs[0]
	y := g.AddNode("Add", "", []*onnx.Value{s, cs[1]}, []string{"y"}).Outputs[0]
	g.Outputs = []*onnx.Value{y}
	p, err := Compile(&onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := p.Run(tensor.New(tensor.WithShape(2), tensor.WithBacking([]float32{0, 1})))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(outs[0].Data()) != "[11 12]" {
		t.Fatalf("got %v, want [11 12]", outs[0].Data())
	}
}

// TestGatherTrainingStep checks that Gorgonia accumulates the gradient of an
// embedding row looked up twice: logits = x + W[[2, 2]].
func TestGatherTrainingStep(t *testing.T) {
	g := &onnx.Graph{Name: "embed"}
	x := g.AddInput("x", onnx.TensorType(onnx.Double, 2, 3))
	wdata := []float32{0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -0.9, 1.0, 1.1, 1.2}
	wt, _ := onnx.FromFloat32("W", []int64{4, 3}, wdata)
	w := g.AddInitializer(wt)
	it, _ := onnx.FromInt64("idx", []int64{2}, []int64{2, -2})
	e := g.AddNode("Gather", "gather", []*onnx.Value{w, g.AddInitializer(it)}, []string{"e"}).Outputs[0]
	y := g.AddNode("Add", "add", []*onnx.Value{x, e}, []string{"y"}).Outputs[0]
	g.Outputs = []*onnx.Value{y}
	p, err := Compile(&onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}, Options{Float64: true})
	if err != nil {
		t.Fatal(err)
	}
	xv := []float64{0.5, -1, 2, 0, 0.3, -0.7}
	targets, _ := p.OneHot([]int{2, 0}, 3)
	res, err := p.Step(&Request{Inputs: []*tensor.Dense{tensor.New(tensor.WithShape(2, 3), tensor.WithBacking(xv))},
		Targets: targets, Loss: CrossEntropy, Params: []string{"W"}})
	if err != nil {
		t.Fatal(err)
	}
	// d loss / d logits = (softmax - target) / batch; both rows read W[2].
	want := make([]float64, 12)
	for r, label := range []int{2, 0} {
		var logits [3]float64
		var sum float64
		for j := range logits {
			logits[j] = xv[r*3+j] + float64(float32(wdata[6+j]))
			sum += math.Exp(logits[j])
		}
		for j := range logits {
			d := math.Exp(logits[j]) / sum
			if j == label {
				d--
			}
			want[6+j] += d / 2
		}
	}
	got := res.ParamGrads["W"].Data().([]float64)
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Fatalf("dW = %v, want %v", got, want)
		}
	}
}
