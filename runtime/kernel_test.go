package runtime

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/graft-dev/graft/onnx"
	G "gorgonia.org/gorgonia"
)

// Attribute constructors for building test nodes.
func aInts(name string, v ...int64) *onnx.Attribute {
	return &onnx.Attribute{Name: name, Type: onnx.AttrInts, Ints: v}
}
func aInt(name string, v int64) *onnx.Attribute {
	return &onnx.Attribute{Name: name, Type: onnx.AttrInt, Int: v}
}
func aFloat(name string, v float32) *onnx.Attribute {
	return &onnx.Attribute{Name: name, Type: onnx.AttrFloat, Float: v}
}
func aString(name, v string) *onnx.Attribute {
	return &onnx.Attribute{Name: name, Type: onnx.AttrString, String: []byte(v)}
}

// opCase describes one node to build for a kernel test: float inputs of the
// given shapes (nil shape: input omitted), and integer or float constant
// inputs by position.
type opCase struct {
	op     string
	opset  int64
	attrs  []*onnx.Attribute
	shapes [][]int
	ints   map[int][]int64
	floats map[int][]float64 // constant float inputs (e.g. Clip's bounds)
	// kinds makes the inputs at these positions integer or boolean tensors
	// computed at run time (Where's condition, indices that depend on data).
	kinds map[int]onnx.DType
	train bool
	// outputs is the number of node outputs (Split's parts); 0 means 1.
	outputs int
}

// build builds the node in float64 and returns the builder, whose kernels
// field holds what it added, and the node's outputs.
func (c opCase) build(t testing.TB) (*builder[float64], []*val[float64]) {
	t.Helper()
	opset := c.opset
	if opset == 0 {
		opset = 17
	}
	g := &onnx.Graph{Name: "test"}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: opset}}, Graph: g}
	p := &Program{model: m, rng: rand.New(rand.NewSource(1))}
	b := &builder[float64]{p: p, g: G.NewGraph(), opset: opset, mode: buildMode{train: c.train}, vals: map[*onnx.Value]*val[float64]{}}
	n := max(len(c.shapes), maxKey(c.ints)+1, maxKey(c.floats)+1)
	in := make([]*val[float64], n)
	node := &onnx.Node{Name: "node", OpType: c.op, Attrs: c.attrs}
	for i := 0; i < n; i++ {
		switch {
		case c.ints[i] != nil:
			in[i] = &val[float64]{ints: c.ints[i], shape: []int{len(c.ints[i])}}
		case c.floats[i] != nil:
			in[i] = b.constant(fmt.Sprint("c", i), c.floats[i], []int{})
		case i < len(c.shapes) && c.shapes[i] != nil:
			s := c.shapes[i]
			nd := G.NewTensor(b.g, G.Float64, len(s), G.WithShape(s...), G.WithName(fmt.Sprint("x", i)))
			in[i] = &val[float64]{node: nd, shape: s, need: c.kinds[i] == onnx.Undefined, elem: c.kinds[i]}
		}
		var v *onnx.Value
		if in[i] != nil {
			v = &onnx.Value{Name: fmt.Sprint("in", i)}
		}
		node.Inputs = append(node.Inputs, v)
	}
	node.Outputs = []*onnx.Value{{Name: "out"}}
	for i := 1; i < c.outputs; i++ {
		node.Outputs = append(node.Outputs, &onnx.Value{Name: fmt.Sprint("out", i)})
	}
	g.Nodes = []*onnx.Node{node}
	f, ok := registryFor[float64]()[c.op]
	if !ok {
		t.Fatalf("no builder for %s", c.op)
	}
	outs, err := f(b, node, in)
	if err != nil {
		t.Fatalf("%s: %v", c.op, err)
	}
	return b, outs
}

func maxKey[V any](m map[int]V) int {
	k := -1
	for i := range m {
		k = max(k, i)
	}
	return k
}

// kernel returns the single kernel the case builds.
func (c opCase) kernel(t testing.TB) kernel[float64] {
	t.Helper()
	b, _ := c.build(t)
	if len(b.kernels) != 1 {
		t.Fatalf("%s built %d kernels, want 1", c.op, len(b.kernels))
	}
	return b.kernels[0]
}

// randomInputs fills each float input with values in [-1, 1), seeded.
func randomInputs(seed int64, shapes [][]int) [][]float64 {
	rng := rand.New(rand.NewSource(seed))
	out := make([][]float64, len(shapes))
	for i, s := range shapes {
		if s == nil {
			continue
		}
		out[i] = make([]float64, size(s))
		for j := range out[i] {
			out[i][j] = rng.Float64()*2 - 1
		}
	}
	return out
}

// checkGrad compares a kernel's backward pass with central finite
// differences of its forward pass, in float64, for the loss sum(w * out)
// with random w. Inputs should keep away from kinks (ReLU at 0, max ties).
func checkGrad(t *testing.T, k kernel[float64], in [][]float64) {
	t.Helper()
	out := make([]float64, size(k.outShape()))
	if err := k.forward(in, out); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(7))
	w := make([]float64, len(out))
	for i := range w {
		w[i] = rng.Float64()*2 - 1
	}
	loss := func() float64 {
		o := make([]float64, len(out))
		if err := k.forward(in, o); err != nil {
			t.Fatal(err)
		}
		var s float64
		for i := range o {
			s += w[i] * o[i]
		}
		return s
	}
	for i, d := range k.differentiable() {
		if !d || in[i] == nil {
			continue
		}
		gin := make([]float64, len(in[i]))
		if err := k.backward(i, in, out, w, gin); err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for j := range in[i] {
			x := in[i][j]
			h := 1e-6 * math.Max(1, math.Abs(x))
			in[i][j] = x + h
			lp := loss()
			in[i][j] = x - h
			lm := loss()
			in[i][j] = x
			num := (lp - lm) / (2 * h)
			if e := math.Abs(num-gin[j]) / (1e-6 + 1e-5*math.Abs(num)); e > 1 {
				if e > worst {
					worst = e
				}
				t.Errorf("%s: d/d input %d [%d]: backward %.10g, finite difference %.10g", k.describe(), i, j, gin[j], num)
				if worst > 0 && j > 0 {
					return
				}
			}
		}
	}
}

func TestElementwiseGradients(t *testing.T) {
	for _, op := range []string{"Relu", "Sigmoid", "Tanh", "Neg", "Exp", "Abs", "Identity"} {
		c := opCase{op: op, shapes: [][]int{{2, 3, 5}}}
		checkGrad(t, c.kernel(t), randomInputs(1, c.shapes))
	}
	pos := opCase{op: "Log", shapes: [][]int{{7}}}
	in := randomInputs(2, pos.shapes)
	for i := range in[0] {
		in[0][i] = math.Abs(in[0][i]) + 0.5
	}
	checkGrad(t, pos.kernel(t), in)
	pos.op = "Sqrt"
	checkGrad(t, pos.kernel(t), in)
	leaky := opCase{op: "LeakyRelu", attrs: []*onnx.Attribute{aFloat("alpha", 0.2)}, shapes: [][]int{{3, 4}}}
	checkGrad(t, leaky.kernel(t), randomInputs(3, leaky.shapes))
	clip := opCase{op: "Clip", shapes: [][]int{{3, 5}}, floats: map[int][]float64{1: {-0.5}, 2: {0.4}}}
	checkGrad(t, clip.kernel(t), randomInputs(4, [][]int{{3, 5}, nil, nil}))
	clip7 := opCase{op: "Clip", opset: 7, attrs: []*onnx.Attribute{aFloat("min", -0.3), aFloat("max", 0.6)}, shapes: [][]int{{9}}}
	checkGrad(t, clip7.kernel(t), randomInputs(5, clip7.shapes))
}

func TestBroadcastGradients(t *testing.T) {
	for _, shapes := range [][][]int{
		{{2, 3, 4}, {2, 3, 4}},
		{{2, 3, 4, 5}, {1, 3, 1, 1}},
		{{3, 1, 5}, {4, 1}},
		{{5}, {2, 3, 5}},
		{{2, 3}, {}},
		{{2, 3, 4}, {1, 3, 4}}, // a suffix: read modulo its size, no table
		{{2, 3, 4}, {4}},
	} {
		for _, op := range []string{"Add", "Sub", "Mul", "Div"} {
			c := opCase{op: op, shapes: shapes}
			in := randomInputs(6, shapes)
			if op == "Div" {
				for j := range in[1] {
					in[1][j] = math.Copysign(math.Abs(in[1][j])+0.5, in[1][j])
				}
			}
			checkGrad(t, c.kernel(t), in)
		}
	}
	c := opCase{op: "Pow", shapes: [][]int{{2, 3}, {3}}}
	in := randomInputs(8, c.shapes)
	for j := range in[0] {
		in[0][j] = math.Abs(in[0][j]) + 0.5
	}
	checkGrad(t, c.kernel(t), in)
}

// Inputs broadcast as a suffix of the output's shape (read modulo their
// size) give what broadcasting by index gives, for each op.
func TestBroadcastSuffixForward(t *testing.T) {
	for _, op := range []string{"Add", "Sub", "Mul", "Div"} {
		for _, shapes := range [][][]int{{{2, 3, 4}, {1, 3, 4}}, {{3, 4}, {2, 3, 4}}, {{2, 3, 4}, {4}}} {
			k := opCase{op: op, shapes: shapes}.kernel(t).(*binaryOp[float64])
			if k.amod == 0 && k.bmod == 0 {
				t.Fatalf("%s %v: no input read modulo its size", op, shapes)
			}
			in := randomInputs(3, shapes)
			got := make([]float64, 24)
			if err := k.forward(in, got); err != nil {
				t.Fatal(err)
			}
			ia, ib := broadcastIndex(shapes[0], k.out), broadcastIndex(shapes[1], k.out)
			for i := range got {
				if want := k.f(in[0][ia[i]], in[1][ib[i]]); got[i] != want {
					t.Fatalf("%s %v: element %d is %g, want %g", op, shapes, i, got[i], want)
				}
			}
		}
	}
}

func TestBroadcastForward(t *testing.T) {
	// [2,1,3] + [4,1]: numpy gives shape [2,4,3] with out[i,j,k] = a[i,0,k] + b[j,0].
	c := opCase{op: "Add", shapes: [][]int{{2, 1, 3}, {4, 1}}}
	k := c.kernel(t)
	if fmt.Sprint(k.outShape()) != "[2 4 3]" {
		t.Fatalf("shape %v", k.outShape())
	}
	a := []float64{1, 2, 3, 4, 5, 6}
	b := []float64{10, 20, 30, 40}
	out := make([]float64, 24)
	k.forward([][]float64{a, b}, out)
	for i := 0; i < 2; i++ {
		for j := 0; j < 4; j++ {
			for l := 0; l < 3; l++ {
				if got, want := out[(i*4+j)*3+l], a[i*3+l]+b[j]; got != want {
					t.Fatalf("out[%d,%d,%d] = %g, want %g", i, j, l, got, want)
				}
			}
		}
	}
}

func TestCrossEntropyGradient(t *testing.T) {
	for _, scores := range []Loss{CrossEntropy, NLL, ProbabilityNLL} {
		k := &crossEntropy[float64]{n: 3, k: 4, scores: scores}
		in := randomInputs(9, [][]int{{3, 4}, {3, 4}})
		for i := range in[1] {
			in[1][i] = math.Abs(in[1][i])
			if scores == ProbabilityNLL {
				in[0][i] = 0.05 + math.Abs(in[0][i]) // probabilities, away from the clamp
			}
		}
		checkGrad(t, k, in)
	}
}

func TestConvGradients(t *testing.T) {
	cases := []opCase{
		{op: "Conv", shapes: [][]int{{2, 3, 7, 6}, {4, 3, 3, 3}, {4}}, attrs: []*onnx.Attribute{aInts("pads", 1, 1, 1, 1)}},
		{op: "Conv", shapes: [][]int{{1, 4, 9, 8}, {6, 2, 3, 2}}, attrs: []*onnx.Attribute{aInt("group", 2), aInts("strides", 2, 1), aInts("dilations", 1, 2), aInts("pads", 0, 1, 2, 1)}},
		{op: "Conv", shapes: [][]int{{2, 3, 5, 5}, {3, 1, 3, 3}, {3}}, attrs: []*onnx.Attribute{aInt("group", 3), aString("auto_pad", "SAME_UPPER"), aInts("strides", 2, 2)}},
		{op: "Conv", shapes: [][]int{{2, 2, 7}, {3, 2, 3}}, attrs: []*onnx.Attribute{aInts("strides", 2)}},
		{op: "Conv", shapes: [][]int{{1, 2, 4, 3, 5}, {2, 2, 2, 2, 3}, {2}}},
		{op: "Conv", shapes: [][]int{{2, 4, 3, 5}, {6, 2, 1, 1}, {6}}, attrs: []*onnx.Attribute{aInt("group", 2)}},
		{op: "Conv", shapes: [][]int{{2, 4, 6, 5}, {6, 2, 3, 2}, {6}}, attrs: []*onnx.Attribute{aInt("group", 2), aInts("pads", 0, 1, 2, 1)}},
		{op: "Conv", shapes: [][]int{{2, 3, 5, 6}, {4, 3, 1, 1}}, attrs: []*onnx.Attribute{aInts("strides", 2, 2)}},
		{op: "Conv", shapes: [][]int{{1, 2, 4, 5}, {3, 2, 2, 3}}, attrs: []*onnx.Attribute{aInts("strides", 1, 3), aInts("dilations", 2, 2), aInts("pads", 3, 4, 2, 5)}},
	}
	for _, c := range cases {
		checkGrad(t, c.kernel(t), randomInputs(10, c.shapes))
	}
}

func TestLinalgGradients(t *testing.T) {
	for _, tr := range [][2]int64{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
		a, b := []int{3, 4}, []int{4, 5}
		if tr[0] == 1 {
			a = []int{4, 3}
		}
		if tr[1] == 1 {
			b = []int{5, 4}
		}
		for _, cshape := range [][]int{{5}, {3, 5}, {1, 1}} {
			c := opCase{op: "Gemm", shapes: [][]int{a, b, cshape}, attrs: []*onnx.Attribute{aInt("transA", tr[0]), aInt("transB", tr[1]), aFloat("alpha", 0.7), aFloat("beta", 1.3)}}
			checkGrad(t, c.kernel(t), randomInputs(11, c.shapes))
		}
	}
	for _, shapes := range [][][]int{
		{{3, 4}, {4, 5}},
		{{2, 3, 4}, {4, 5}},
		{{2, 1, 3, 4}, {3, 4, 2}},
		{{4}, {2, 4, 3}},
		{{2, 3, 4}, {4}},
	} {
		c := opCase{op: "MatMul", shapes: shapes}
		checkGrad(t, c.kernel(t), randomInputs(12, shapes))
	}
}
