package runtime

import (
	"fmt"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

func TestSplitForms(t *testing.T) {
	for _, c := range []struct {
		name    string
		opset   int64
		attrs   []*onnx.Attribute
		split   []int64 // the split input
		x       []int
		outputs int
		want    string // the parts' shapes
	}{
		{"equal parts", 13, []*onnx.Attribute{aInt("axis", 1)}, nil, []int{2, 6}, 3, "[[2 2] [2 2] [2 2]]"},
		{"attribute", 11, []*onnx.Attribute{aInt("axis", -1), aInts("split", 1, 4, 1)}, nil, []int{2, 6}, 3, "[[2 1] [2 4] [2 1]]"},
		{"input", 13, nil, []int64{3, 1}, []int{4, 2}, 2, "[[3 2] [1 2]]"},
		{"input, opset 18", 18, []*onnx.Attribute{aInt("axis", 1)}, []int64{5, 2}, []int{1, 7}, 2, "[[1 5] [1 2]]"},
		{"num_outputs uneven", 18, []*onnx.Attribute{aInt("axis", 1), aInt("num_outputs", 3)}, nil, []int{2, 7}, 3, "[[2 3] [2 3] [2 1]]"},
		{"num_outputs even", 18, []*onnx.Attribute{aInt("num_outputs", 2)}, nil, []int{4, 3}, 2, "[[2 3] [2 3]]"},
	} {
		g := &onnx.Graph{Name: "split"}
		x := g.AddInput("x", onnx.TensorType(onnx.Float, int64s(c.x)...))
		ins := []*onnx.Value{x}
		if c.split != nil {
			tt, _ := onnx.FromInt64("split", []int64{int64(len(c.split))}, c.split)
			ins = append(ins, g.AddInitializer(tt))
		}
		var names []string
		for i := range c.outputs {
			names = append(names, fmt.Sprint("y", i))
		}
		g.Outputs = g.AddNode("Split", "split", ins, names, c.attrs...).Outputs
		data := iota64(size(c.x))
		outs, err := runGraph(t, g, c.opset, true, tensor.New(tensor.WithShape(c.x...), tensor.WithBacking(data)))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var shapes [][]int
		var got []float64
		for _, o := range outs {
			shapes = append(shapes, o.Shape())
			got = append(got, o.Data().([]float64)...)
		}
		if fmt.Sprint(shapes) != c.want {
			t.Errorf("%s: parts %v, want %s", c.name, shapes, c.want)
		}
		// Concatenated along the axis, the parts give x back: check the
		// elements of each part against x's.
		axis := 0
		if a := g.Nodes[0].Attr("axis"); a != nil {
			axis = int(a.Int)
			if axis < 0 {
				axis += len(c.x)
			}
		}
		start, k := 0, 0
		outer, inner := size(c.x[:axis]), size(c.x[axis+1:])
		for _, s := range shapes {
			for o := 0; o < outer; o++ {
				for j := 0; j < s[axis]; j++ {
					for i := 0; i < inner; i++ {
						if want := data[(o*c.x[axis]+start+j)*inner+i]; got[k] != want {
							t.Fatalf("%s: element %d is %g, want %g", c.name, k, got[k], want)
						}
						k++
					}
				}
			}
			start += s[axis]
		}
	}
}

// Split's parts pass their gradients back to their slices of the input.
func TestSplitGradient(t *testing.T) {
	c := opCase{op: "Split", opset: 18, attrs: []*onnx.Attribute{aInt("axis", 1), aInt("num_outputs", 3)}, shapes: [][]int{{2, 7, 3}}, outputs: 3}
	b, outs := c.build(t)
	if len(outs) != 3 || len(b.kernels) != 3 {
		t.Fatalf("%d outputs, %d kernels", len(outs), len(b.kernels))
	}
	for _, k := range b.kernels {
		checkGrad(t, k, randomInputs(41, c.shapes))
	}
}

func TestSplitErrors(t *testing.T) {
	for _, c := range []struct {
		oc   opCase
		want string
	}{
		{opCase{op: "Split", opset: 13, shapes: [][]int{{5}}}, ""},
		{opCase{op: "Split", opset: 13, shapes: [][]int{{5}}, ints: map[int][]int64{1: {2, 2}}}, "split [2 2] has 2 parts but the node has 1 outputs"},
		{opCase{op: "Split", opset: 11, attrs: []*onnx.Attribute{aInts("split", 2, 2)}, shapes: [][]int{{5}}}, "has 2 parts"},
		{opCase{op: "Split", opset: 18, attrs: []*onnx.Attribute{aInt("num_outputs", 2)}, shapes: [][]int{{5}}}, "num_outputs is 2 but the node has 1 outputs"},
		{opCase{op: "Split", opset: 18, attrs: []*onnx.Attribute{aInt("num_outputs", 1)}, shapes: [][]int{{5}}, ints: map[int][]int64{1: {5}}}, "both the split input and num_outputs"},
		{opCase{op: "Split", opset: 13, attrs: []*onnx.Attribute{aInt("axis", 2)}, shapes: [][]int{{5, 2}}}, "axis 2 is out of range"},
		{opCase{op: "Split", opset: 13, shapes: [][]int{{5}}, ints: map[int][]int64{1: {6}}}, "adds up to 6, not the axis size 5"},
		{opCase{op: "Split", opset: 13, shapes: [][]int{{5}}, ints: map[int][]int64{1: {-1}}}, "negative part"},
	} {
		err := buildErr(t, c.oc)
		if c.want == "" {
			if err != nil {
				t.Errorf("%v: %v", c.oc, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: error %v, want %q", c.oc.attrs, c.oc.ints, err, c.want)
		}
	}
}

// ScatterND with each reduction, indices naming one row twice: without a
// reduction the last update wins; the others combine every update.
func TestScatterNDForward(t *testing.T) {
	data := iota64(12) // [4, 3]
	idx := []float64{1, 3, 1}
	upd := []float64{10, 20, 30, 40, 50, 60, 70, 80, 90}
	for _, c := range []struct {
		reduction string
		opset     int64
		row1      string // row 1 of the output; row 3 gets update 1 alike
	}{
		{"none", 13, "[70 80 90]"},
		{"add", 16, "[83 104 125]"},
		{"mul", 16, "[2100 6400 13500]"},
		{"max", 18, "[70 80 90]"},
		{"min", 18, "[3 4 5]"},
	} {
		oc := opCase{op: "ScatterND", opset: c.opset, shapes: [][]int{{4, 3}, {3, 1}, {3, 3}}, kinds: map[int]onnx.DType{1: onnx.Int64}}
		if c.opset >= 16 {
			oc.attrs = []*onnx.Attribute{aString("reduction", c.reduction)}
		}
		out := runKernel(t, oc.kernel(t), data, idx, upd)
		if got := fmt.Sprint(out[3:6], out[0:3], out[6:9]); got != c.row1+" [0 1 2] [6 7 8]" {
			t.Errorf("%s: rows 1, 0, 2: %s", c.reduction, got)
		}
		if c.reduction == "none" || c.reduction == "max" {
			if fmt.Sprint(out[9:12]) != "[40 50 60]" {
				t.Errorf("%s: row 3 %v", c.reduction, out[9:12])
			}
		}
	}
}

// ScatterND's gradient reaches the data and the updates, for every
// reduction, with repeated and negative indices and slices of rank 2.
func TestScatterNDGradient(t *testing.T) {
	for _, reduction := range []string{"none", "add", "mul", "max", "min"} {
		c := opCase{op: "ScatterND", opset: 18, attrs: []*onnx.Attribute{aString("reduction", reduction)},
			shapes: [][]int{{3, 4, 2}, {2, 2, 2}, {2, 2, 2}}, kinds: map[int]onnx.DType{1: onnx.Int64}}
		in := randomInputs(51, c.shapes)
		copy(in[1], []float64{0, 1, 2, -1, 0, 1, 1, 0}) // (0,1) twice
		checkGrad(t, c.kernel(t), in)
		c.shapes = [][]int{{3, 4, 2}, {3, 1}, {3, 4, 2}} // whole rows
		in = randomInputs(52, c.shapes)
		copy(in[1], []float64{2, -1, 0})
		checkGrad(t, c.kernel(t), in)
	}
}

// Indices known when the graph is built and indices computed at run time
// give the same ScatterND; a bad index fails the run naming the node.
func TestScatterNDIndices(t *testing.T) {
	for _, atRunTime := range []bool{false, true} {
		g := &onnx.Graph{Name: "scatter"}
		x := g.AddInput("x", onnx.TensorType(onnx.Float, 4))
		var idx *onnx.Value
		var feeds []*tensor.Dense
		feeds = append(feeds, f32s([]int{4}, 1, 2, 3, 4))
		if atRunTime {
			idx = g.AddInput("i", onnx.TensorType(onnx.Int64, 2, 1))
			feeds = append(feeds, i64s([]int{2, 1}, 3, -4))
		} else {
			tt, _ := onnx.FromInt64("i", []int64{2, 1}, []int64{3, -4})
			idx = g.AddInitializer(tt)
		}
		u, _ := onnx.FromFloat32("u", []int64{2}, []float32{9, 8})
		g.Outputs = g.AddNode("ScatterND", "scatter", []*onnx.Value{x, idx, g.AddInitializer(u)}, []string{"y"}).Outputs
		outs, err := runGraph(t, g, 13, false, feeds...)
		if err != nil || fmt.Sprint(outs[0].Data()) != "[8 2 3 9]" {
			t.Errorf("run time %v: %v %v", atRunTime, outs, err)
		}
		if atRunTime {
			feeds[1] = i64s([]int{2, 1}, 4, 0)
			if _, err := runGraph(t, g, 13, false, feeds...); err == nil || !strings.Contains(err.Error(), `ScatterND node "scatter": index [4] is out of range for data [4]`) {
				t.Errorf("index 4 of 4: %v", err)
			}
		}
	}
	for _, c := range []struct {
		oc   opCase
		want string
	}{
		{opCase{op: "ScatterND", shapes: [][]int{{4}, {2, 1}, {2}}}, "indices are float32, not integers"},
		{opCase{op: "ScatterND", shapes: [][]int{{4}, {2, 1}, {3}}, kinds: map[int]onnx.DType{1: onnx.Int64}}, "updates have shape [3], want [2]"},
		{opCase{op: "ScatterND", shapes: [][]int{{4}, {2, 2}, {2}}, kinds: map[int]onnx.DType{1: onnx.Int64}}, "pick 2 axes of data [4]"},
		{opCase{op: "ScatterND", opset: 16, attrs: []*onnx.Attribute{aString("reduction", "max")}, shapes: [][]int{{4}, {2, 1}, {2}}, kinds: map[int]onnx.DType{1: onnx.Int64}}, `reduction "max" needs opset 18`},
		{opCase{op: "ScatterND", opset: 18, attrs: []*onnx.Attribute{aString("reduction", "avg")}, shapes: [][]int{{4}, {2, 1}, {2}}, kinds: map[int]onnx.DType{1: onnx.Int64}}, `reduction "avg" is not`},
	} {
		if err := buildErr(t, c.oc); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.oc.shapes, err, c.want)
		}
	}
}

// Gather with indices computed at run time: repeated and negative indices,
// the gradient adding back into the data, a bad index failing the run.
func TestGatherAtRunTime(t *testing.T) {
	c := opCase{op: "Gather", attrs: []*onnx.Attribute{aInt("axis", 1)}, shapes: [][]int{{3, 4, 2}, {2, 3}}, kinds: map[int]onnx.DType{1: onnx.Int64}}
	in := randomInputs(61, c.shapes)
	copy(in[1], []float64{0, -1, 3, 3, 1, 0})
	k := c.kernel(t)
	if fmt.Sprint(k.outShape()) != "[3 2 3 2]" {
		t.Fatalf("shape %v", k.outShape())
	}
	out := runKernel(t, k, in...)
	for o := 0; o < 3; o++ {
		for j, ix := range []int{0, 3, 3, 3, 1, 0} {
			for i := 0; i < 2; i++ {
				if got, want := out[(o*6+j)*2+i], in[0][(o*4+ix)*2+i]; got != want {
					t.Fatalf("out[%d,%d,%d] = %g, want x[%d,%d,%d] = %g", o, j, i, got, o, ix, i, want)
				}
			}
		}
	}
	checkGrad(t, k, in)

	g := &onnx.Graph{Name: "gather"}
	x := g.AddInput("x", onnx.TensorType(onnx.Float, 2, 3))
	i := g.AddInput("i", onnx.TensorType(onnx.Int64, 2))
	g.Outputs = g.AddNode("Gather", "pick", []*onnx.Value{x, i}, []string{"y"}, aInt("axis", 1)).Outputs
	xs := f32s([]int{2, 3}, 1, 2, 3, 4, 5, 6)
	outs, err := runGraph(t, g, 13, false, xs, i64s([]int{2}, 2, -3))
	if err != nil || fmt.Sprint(outs[0].Shape(), outs[0].Data()) != "(2, 2) [3 1 6 4]" {
		t.Errorf("Gather: %v %v", outs, err)
	}
	if _, err := runGraph(t, g, 13, false, xs, i64s([]int{2}, 0, 3)); err == nil || !strings.Contains(err.Error(), `Gather node "pick": index 3 is out of range for axis 1 of [2 3]`) {
		t.Errorf("index 3 of 3: %v", err)
	}
}
