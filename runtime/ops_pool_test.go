package runtime

import (
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

// distinctInputs fills each input with a random permutation of evenly spaced
// values in [-1, 1), so max pooling has no ties for finite differences to
// trip on.
func distinctInputs(seed int64, shapes [][]int) [][]float64 {
	rng := rand.New(rand.NewSource(seed))
	out := make([][]float64, len(shapes))
	for i, s := range shapes {
		n := size(s)
		out[i] = make([]float64, n)
		for j, p := range rng.Perm(n) {
			out[i][j] = 2*float64(p)/float64(n) - 1
		}
	}
	return out
}

func TestPoolGradients(t *testing.T) {
	windows := []struct {
		shape []int
		attrs []*onnx.Attribute
	}{
		{[]int{2, 3, 7, 6}, []*onnx.Attribute{aInts("kernel_shape", 3, 3), aInts("pads", 1, 1, 1, 1), aInts("strides", 2, 2)}},
		{[]int{1, 2, 9, 7}, []*onnx.Attribute{aInts("kernel_shape", 3, 2), aInts("strides", 2, 3), aInts("pads", 0, 1, 2, 1), aInt("ceil_mode", 1)}},
		{[]int{2, 2, 9}, []*onnx.Attribute{aInts("kernel_shape", 3), aInts("strides", 2), aInts("dilations", 2), aInts("pads", 1, 2), aInt("ceil_mode", 1)}},
		{[]int{1, 2, 5, 7}, []*onnx.Attribute{aInts("kernel_shape", 2, 3), aInts("strides", 2, 2), aString("auto_pad", "SAME_UPPER")}},
		{[]int{1, 2, 7, 5}, []*onnx.Attribute{aInts("kernel_shape", 3, 2), aInts("strides", 1, 2), aString("auto_pad", "SAME_LOWER")}},
		{[]int{1, 3, 7, 8}, []*onnx.Attribute{aInts("kernel_shape", 2, 3), aInts("strides", 2, 2), aString("auto_pad", "VALID")}},
		{[]int{1, 2, 5, 4, 5}, []*onnx.Attribute{aInts("kernel_shape", 2, 2, 3), aInts("strides", 2, 1, 2), aInts("pads", 1, 0, 1, 0, 1, 1), aInt("ceil_mode", 1)}},
		{[]int{1, 1, 7, 7}, []*onnx.Attribute{aInts("kernel_shape", 3, 3), aInts("dilations", 2, 1), aInts("pads", 2, 1, 2, 1), aInts("strides", 3, 2), aInt("ceil_mode", 1)}},
	}
	for _, w := range windows {
		shapes := [][]int{w.shape}
		mp := opCase{op: "MaxPool", opset: 12, shapes: shapes, attrs: w.attrs}
		checkGrad(t, mp.kernel(t), distinctInputs(20, shapes))
		for _, cip := range []int64{0, 1} {
			ap := opCase{op: "AveragePool", opset: 19, shapes: shapes, attrs: append([]*onnx.Attribute{aInt("count_include_pad", cip)}, w.attrs...)}
			checkGrad(t, ap.kernel(t), randomInputs(21, shapes))
		}
	}
	for _, shape := range [][]int{{2, 3, 5, 3}, {2, 2, 7}, {1, 2, 3, 4, 3}} {
		shapes := [][]int{shape}
		checkGrad(t, opCase{op: "GlobalMaxPool", shapes: shapes}.kernel(t), distinctInputs(22, shapes))
		checkGrad(t, opCase{op: "GlobalAveragePool", shapes: shapes}.kernel(t), randomInputs(23, shapes))
	}
}

// runPool runs one pooling node in float64 on x.
func runPool(t *testing.T, c opCase, x []float64) ([]int, []float64) {
	t.Helper()
	k := c.kernel(t)
	out := make([]float64, size(k.outShape()))
	if err := k.forward([][]float64{x}, out); err != nil {
		t.Fatal(err)
	}
	return k.outShape(), out
}

func seq(n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = float64(i + 1)
	}
	return x
}

func TestPoolForward(t *testing.T) {
	for _, tc := range []struct {
		name  string
		c     opCase
		x     []float64
		shape string
		want  []float64
	}{
		// ONNX's averagepool_2d_ceil: the right and bottom windows overhang
		// the input and average the elements they cover.
		{"avg ceil", opCase{op: "AveragePool", shapes: [][]int{{1, 1, 4, 4}}, attrs: []*onnx.Attribute{
			aInts("kernel_shape", 3, 3), aInts("strides", 2, 2), aInt("ceil_mode", 1)}},
			seq(16), "[1 1 2 2]", []float64{6, 7.5, 12, 13.5}},
		// PyTorch's avg_pool1d(1..6, 3, stride 2, padding 1, ceil_mode): the
		// last window starts on the last element and runs past the end
		// padding; with count_include_pad it divides by the 2 taps inside the
		// padded input.
		{"avg ceil count pad", opCase{op: "AveragePool", shapes: [][]int{{1, 1, 6}}, attrs: []*onnx.Attribute{
			aInts("kernel_shape", 3), aInts("strides", 2), aInts("pads", 1, 1), aInt("ceil_mode", 1), aInt("count_include_pad", 1)}},
			seq(6), "[1 1 4]", []float64{1, 3, 5, 3}},
		{"avg ceil no count pad", opCase{op: "AveragePool", shapes: [][]int{{1, 1, 6}}, attrs: []*onnx.Attribute{
			aInts("kernel_shape", 3), aInts("strides", 2), aInts("pads", 1, 1), aInt("ceil_mode", 1)}},
			seq(6), "[1 1 4]", []float64{1.5, 3, 5, 6}},
		// A window may not start in the end padding: 1..4 with kernel 2,
		// stride 2, pads 0/1 and ceil_mode gives 2 windows, not 3.
		{"max ceil last window", opCase{op: "MaxPool", shapes: [][]int{{1, 1, 4}}, attrs: []*onnx.Attribute{
			aInts("kernel_shape", 2), aInts("strides", 2), aInts("pads", 0, 1), aInt("ceil_mode", 1)}},
			seq(4), "[1 1 2]", []float64{2, 4}},
		{"max ceil overhang", opCase{op: "MaxPool", shapes: [][]int{{1, 1, 5}}, attrs: []*onnx.Attribute{
			aInts("kernel_shape", 2), aInts("strides", 2), aInt("ceil_mode", 1)}},
			seq(5), "[1 1 3]", []float64{2, 4, 5}},
		// Padding is -inf for max pooling, not 0.
		{"max pads negative", opCase{op: "MaxPool", shapes: [][]int{{1, 1, 3}}, attrs: []*onnx.Attribute{
			aInts("kernel_shape", 2), aInts("pads", 1, 1)}},
			[]float64{-3, -1, -2}, "[1 1 4]", []float64{-3, -1, -1, -2}},
		// Dilated max pooling (ONNX's maxpool_2d_dilations).
		{"max dilations", opCase{op: "MaxPool", shapes: [][]int{{1, 1, 4, 4}}, attrs: []*onnx.Attribute{
			aInts("kernel_shape", 2, 2), aInts("dilations", 2, 2)}},
			seq(16), "[1 1 2 2]", []float64{11, 12, 15, 16}},
		// Dilated average pooling (opset 19) skips the taps in between.
		{"avg dilations", opCase{op: "AveragePool", opset: 19, shapes: [][]int{{1, 1, 5}}, attrs: []*onnx.Attribute{
			aInts("kernel_shape", 2), aInts("dilations", 3), aInts("pads", 1, 0)}},
			seq(5), "[1 1 3]", []float64{3, 2.5, 3.5}},
		{"global avg", opCase{op: "GlobalAveragePool", shapes: [][]int{{1, 2, 2, 3}}},
			seq(12), "[1 2 1 1]", []float64{3.5, 9.5}},
		{"global max", opCase{op: "GlobalMaxPool", shapes: [][]int{{2, 1, 3}}},
			[]float64{1, 5, 2, -4, -6, -5}, "[2 1 1]", []float64{5, -4}},
	} {
		shape, got := runPool(t, tc.c, tc.x)
		if fmt.Sprint(shape) != tc.shape || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %v %v, want %s %v", tc.name, shape, got, tc.shape, tc.want)
		}
	}
}

// A window of padding only: -inf for max pooling, NaN for an average of no
// elements (as ONNX's reference computes), and no gradient.
func TestPoolPaddingOnlyWindow(t *testing.T) {
	attrs := []*onnx.Attribute{aInts("kernel_shape", 2), aInts("dilations", 2), aInts("pads", 1, 1)}
	_, got := runPool(t, opCase{op: "MaxPool", shapes: [][]int{{1, 1, 1}}, attrs: attrs}, []float64{4})
	if len(got) != 1 || !math.IsInf(got[0], -1) {
		t.Errorf("MaxPool: got %v, want [-Inf]", got)
	}
	_, got = runPool(t, opCase{op: "AveragePool", opset: 19, shapes: [][]int{{1, 1, 1}}, attrs: attrs}, []float64{4})
	if len(got) != 1 || !math.IsNaN(got[0]) {
		t.Errorf("AveragePool: got %v, want [NaN]", got)
	}
	for _, op := range []string{"MaxPool", "AveragePool"} {
		k := opCase{op: op, opset: 19, shapes: [][]int{{1, 1, 1}}, attrs: attrs}.kernel(t)
		gin := []float64{0}
		if err := k.backward(0, [][]float64{{4}}, []float64{0}, []float64{1}, gin); err != nil || gin[0] != 0 {
			t.Errorf("%s gradient: %v %v, want [0]", op, gin, err)
		}
	}
}

// Ties go to the first maximum in window order, as in PyTorch.
func TestMaxPoolTieGradient(t *testing.T) {
	k := opCase{op: "MaxPool", shapes: [][]int{{1, 1, 2, 2}}, attrs: []*onnx.Attribute{aInts("kernel_shape", 2, 2)}}.kernel(t)
	gin := make([]float64, 4)
	if err := k.backward(0, [][]float64{{1, 3, 3, 3}}, []float64{3}, []float64{2}, gin); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(gin) != "[0 2 0 0]" {
		t.Errorf("gradient %v, want [0 2 0 0]", gin)
	}
}

func TestPoolErrors(t *testing.T) {
	for _, c := range []struct {
		op    string
		shape []int
		attrs []*onnx.Attribute
		want  string
	}{
		{"MaxPool", []int{1, 1, 4, 4}, []*onnx.Attribute{aInts("kernel_shape", 2)}, "kernel_shape"},
		{"AveragePool", []int{1, 1, 4, 4}, nil, "kernel_shape"},
		{"MaxPool", []int{1, 4}, []*onnx.Attribute{aInts("kernel_shape", 2)}, "spatial"},
		{"GlobalAveragePool", []int{4}, nil, "spatial"},
		{"MaxPool", []int{1, 1, 2}, []*onnx.Attribute{aInts("kernel_shape", 3)}, "does not fit"},
		{"AveragePool", []int{1, 1, 4}, []*onnx.Attribute{aInts("kernel_shape", 2), aString("auto_pad", "SAME")}, "auto_pad"},
	} {
		g := &onnx.Graph{Name: "test"}
		x := g.AddInput("x", onnx.TensorType(onnx.Float, int64s(c.shape)...))
		n := g.AddNode(c.op, "pool", []*onnx.Value{x}, []string{"y"}, c.attrs...)
		g.Outputs = n.Outputs
		_, err := compileAndRun(t, g, 11, c.shape)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v %v: error %v, want one mentioning %q", c.op, c.shape, c.attrs, err, c.want)
		}
	}
}

func int64s(s []int) []int64 {
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = int64(d)
	}
	return out
}

// compileAndRun compiles g and runs it in float32 on an input of the given
// shape filled with 1, 2, 3...
func compileAndRun(t *testing.T, g *onnx.Graph, opset int64, shape []int) ([]*tensor.Dense, error) {
	t.Helper()
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: opset}}, Graph: g}
	p, err := Compile(m, Options{})
	if err != nil {
		return nil, err
	}
	x := make([]float32, size(shape))
	for i := range x {
		x[i] = float32(i + 1)
	}
	return p.Run(tensor.New(tensor.WithShape(shape...), tensor.WithBacking(x)))
}

// MaxPool's Indices output is computed when something reads it (row-major,
// or column-major with storage_order 1, over the whole tensor), and not
// built otherwise.
func TestMaxPoolIndices(t *testing.T) {
	for _, use := range []string{"none", "output", "consumer", "column-major"} {
		g := &onnx.Graph{Name: "test"}
		x := g.AddInput("x", onnx.TensorType(onnx.Float, 2, 1, 4, 4))
		attrs := []*onnx.Attribute{aInts("kernel_shape", 2, 2), aInts("strides", 2, 2)}
		if use == "column-major" {
			attrs = append(attrs, aInt("storage_order", 1))
		}
		n := g.AddNode("MaxPool", "pool", []*onnx.Value{x}, []string{"y", "indices"}, attrs...)
		g.Outputs = []*onnx.Value{n.Outputs[0]}
		switch use {
		case "output", "column-major":
			g.Outputs = n.Outputs
		case "consumer":
			r := g.AddNode("Relu", "relu", []*onnx.Value{n.Outputs[1]}, []string{"r"})
			g.Outputs = append(g.Outputs, r.Outputs[0])
		}
		outs, err := compileAndRun(t, g, 12, []int{2, 1, 4, 4})
		if err != nil {
			t.Fatalf("Indices used as %s: %v", use, err)
		}
		if got := fmt.Sprint(outs[0].Data()); got != "[6 8 14 16 22 24 30 32]" {
			t.Errorf("Indices used as %s: output %s", use, got)
		}
		want := map[string]string{"none": "", "output": "[5 7 13 15 21 23 29 31]",
			"consumer": "[5 7 13 15 21 23 29 31]", "column-major": "[5 13 7 15 21 29 23 31]"}[use]
		if want == "" {
			if len(outs) != 1 {
				t.Errorf("unused Indices: %d outputs", len(outs))
			}
			continue
		}
		if outs[1].Dtype() != tensor.Int64 || fmt.Sprint(outs[1].Data()) != want {
			t.Errorf("Indices used as %s: %v %v, want int64 %s", use, outs[1].Dtype(), outs[1].Data(), want)
		}
	}
}

// Float32 and float64 programs agree on a ResNet-like stem pooling.
func TestPoolFloat32(t *testing.T) {
	for _, op := range []string{"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"} {
		shape := []int{2, 3, 9, 9}
		attrs := []*onnx.Attribute{aInts("kernel_shape", 3, 3), aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1)}
		if strings.HasPrefix(op, "Global") {
			attrs = nil
		}
		g := &onnx.Graph{Name: "test"}
		x := g.AddInput("x", onnx.TensorType(onnx.Float, int64s(shape)...))
		n := g.AddNode(op, "pool", []*onnx.Value{x}, []string{"y"}, attrs...)
		g.Outputs = n.Outputs
		outs, err := compileAndRun(t, g, 17, shape)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		c := opCase{op: op, shapes: [][]int{shape}, attrs: attrs}
		_, want := runPool(t, c, seq(size(shape)))
		got := outs[0].Data().([]float32)
		for i := range want {
			if math.Abs(float64(got[i])-want[i]) > 1e-5*math.Abs(want[i]) {
				t.Fatalf("%s: element %d: float32 %g, float64 %g", op, i, got[i], want[i])
			}
		}
	}
}

func BenchmarkMaxPoolResNetStem(b *testing.B) {
	benchPool(b, "MaxPool", []int{8, 64, 112, 112}, aInts("kernel_shape", 3, 3), aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1))
}

func BenchmarkGlobalAveragePoolResNet(b *testing.B) {
	benchPool(b, "GlobalAveragePool", []int{8, 512, 7, 7})
}

func benchPool(b *testing.B, op string, shape []int, attrs ...*onnx.Attribute) {
	k := opCase{op: op, shapes: [][]int{shape}, attrs: attrs}.kernel(b)
	x := randomInputs(1, [][]int{shape})
	out := make([]float64, size(k.outShape()))
	gin := make([]float64, size(shape))
	b.ResetTimer()
	for range b.N {
		if err := k.forward(x, out); err != nil {
			b.Fatal(err)
		}
		if err := k.backward(0, x, out, out, gin); err != nil {
			b.Fatal(err)
		}
	}
}

// maxPool2d (separable, vectorised for float32) against the plain
// maximum over each window, on odd sizes and windows, with NaNs and
// infinities among the values: NaN wins wherever a window holds one.
func TestMaxPool2dMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for trial := 0; trial < 400; trial++ {
		var in, kernel, strides, pb, pe []int
		for d := 0; d < 2; d++ {
			k := 1 + r.Intn(4)
			kernel = append(kernel, k)
			strides = append(strides, 1+r.Intn(3))
			pb = append(pb, r.Intn(k))
			pe = append(pe, r.Intn(k))
			in = append(in, k+r.Intn(40))
		}
		if trial%3 == 0 {
			kernel[1], strides[1] = 3, 2 // the stem's fast path
		}
		w := testWindow(in, kernel, strides, []int{1, 1}, pb, pe)
		x := make([]float32, in[0]*in[1])
		for i := range x {
			switch r.Intn(40) {
			case 0:
				x[i] = float32(math.NaN())
			case 1:
				x[i] = float32(math.Inf(-1 + 2*r.Intn(2)))
			default:
				x[i] = float32(r.NormFloat64())
			}
		}
		got := make([]float32, w.out[0]*w.out[1])
		maxPool2d(w, x, got, make([]float32, 2*in[1]))
		for oy := 0; oy < w.out[0]; oy++ {
			for ox := 0; ox < w.out[1]; ox++ {
				want := float32(math.Inf(-1))
				for i := 0; i < kernel[0]; i++ {
					for j := 0; j < kernel[1]; j++ {
						y, xx := oy*strides[0]-pb[0]+i, ox*strides[1]-pb[1]+j
						if y >= 0 && y < in[0] && xx >= 0 && xx < in[1] {
							want = max(want, x[y*in[1]+xx])
						}
					}
				}
				g := got[oy*w.out[1]+ox]
				if g != want && !(g != g && want != want) {
					t.Fatalf("window %v on %v: output (%d, %d) is %v, want %v", w, in, oy, ox, g, want)
				}
			}
		}
	}
}

// A Relu whose only reader is a max pool runs after the pool instead
// (poolBeforeRelu): the pooled output and the input gradient are those of
// the graph as written, to the bit. The reference is the same graph with
// the Relu's output also a graph output, which keeps the order; inputs
// are rounded to a coarse grid so that windows hold ties and zeros.
func TestPoolBeforeRelu(t *testing.T) {
	build := func(exposeRelu bool) *Program {
		g := &onnx.Graph{Name: "test"}
		x := g.AddInput("x", onnx.TensorType(onnx.Float, 2, 2, 9, 9))
		wv := make([]float32, 3*2*3*3)
		for i := range wv {
			wv[i] = float32(i%5-2) / 2
		}
		w, err := onnx.FromFloat32("w", []int64{3, 2, 3, 3}, wv)
		if err != nil {
			t.Fatal(err)
		}
		conv := g.AddNode("Conv", "conv", []*onnx.Value{x, g.AddInitializer(w)}, []string{"c"}, aInts("pads", 1, 1, 1, 1))
		relu := g.AddNode("Relu", "relu", conv.Outputs, []string{"r"})
		pool := g.AddNode("MaxPool", "pool", relu.Outputs, []string{"p"}, aInts("kernel_shape", 3, 3), aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1))
		flat := g.AddNode("Flatten", "flat", pool.Outputs, []string{"y"})
		g.Outputs = []*onnx.Value{flat.Outputs[0]}
		if exposeRelu {
			g.Outputs = append(g.Outputs, relu.Outputs[0])
		}
		p, err := Compile(&onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	r := rand.New(rand.NewSource(9))
	xv := make([]float32, 2*2*9*9)
	for i := range xv {
		xv[i] = float32(r.Intn(5) - 2)
	}
	var outs, grads [2][]float32
	for i, expose := range []bool{false, true} {
		p := build(expose)
		targets, err := p.OneHot([]int{3, 40}, 75)
		if err != nil {
			t.Fatal(err)
		}
		x := tensor.New(tensor.WithShape(2, 2, 9, 9), tensor.WithBacking(slices.Clone(xv)))
		res, err := p.Step(&Request{Inputs: []*tensor.Dense{x}, Targets: targets, Loss: CrossEntropy, InputGrads: true})
		if err != nil {
			t.Fatal(err)
		}
		outs[i], grads[i] = res.Outputs[0].Data().([]float32), res.InputGrads[0].Data().([]float32)
	}
	if !slices.Equal(outs[0], outs[1]) || !slices.Equal(grads[0], grads[1]) {
		t.Errorf("pool then Relu differs from Relu then pool:\noutputs %v\n        %v\ngradients %v\n          %v", outs[0], outs[1], grads[0], grads[1])
	}
	var nonzero int
	for _, g := range grads[0] {
		if g != 0 {
			nonzero++
		}
	}
	if nonzero == 0 {
		t.Error("no input gradient: the test checks nothing")
	}
}
