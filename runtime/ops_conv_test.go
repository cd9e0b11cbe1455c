package runtime

import (
	"math/rand"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/graft-dev/graft/onnx"
)

// TestConvLoweringMatchesGather checks the direct im2col and col2im loops
// (run over goroutines for these sizes) against the gather-table reference.
func TestConvLoweringMatchesGather(t *testing.T) {
	cases := []opCase{
		{op: "Conv", shapes: [][]int{{1, 16, 40, 37}, {8, 16, 3, 3}}, attrs: []*onnx.Attribute{aInts("pads", 1, 1, 1, 1)}},
		{op: "Conv", shapes: [][]int{{1, 8, 41, 38}, {4, 8, 7, 5}}, attrs: []*onnx.Attribute{aInts("strides", 2, 3), aInts("dilations", 1, 2), aInts("pads", 3, 2, 4, 6)}},
		{op: "Conv", shapes: [][]int{{1, 6, 3000}, {2, 6, 5}}, attrs: []*onnx.Attribute{aInts("strides", 2), aInts("pads", 4, 1)}},
	}
	for _, c := range cases {
		k := c.kernel(t).(*conv[float64])
		if k.plane == nil {
			t.Fatalf("%v: no direct lowering", c.shapes)
		}
		ref := &conv[float64]{n: k.n, c: k.c, m: k.m, group: k.group, win: k.win, out: k.out, cols: new(scratch[float64])}
		ref.buildGather()
		in := randomInputs(3, c.shapes)
		cg, _, kN, oN, iN := k.sizes()
		got, want := make([]float64, cg*kN*oN), make([]float64, cg*kN*oN)
		for i := range got {
			got[i] = 7 // every element must be written
		}
		k.im2col(in[0], got)
		ref.im2col(in[0], want)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%v: im2col[%d] = %v, want %v", c.shapes, i, got[i], want[i])
			}
		}
		dx, dxRef := make([]float64, cg*iN), make([]float64, cg*iN)
		k.col2im(want, dx)
		ref.col2im(want, dxRef)
		for i := range dx {
			if dx[i] != dxRef[i] {
				t.Fatalf("%v: col2im[%d] = %v, want %v", c.shapes, i, dx[i], dxRef[i])
			}
		}
	}
}

// A depthwise convolution's own forward loop (strides, dilations,
// asymmetric pads, 1-d and 2-d, with a bias) gives what the im2col + GEMM
// lowering gives.
func TestDepthwiseMatchesGEMM(t *testing.T) {
	cases := []opCase{
		{op: "Conv", shapes: [][]int{{2, 7, 13, 17}, {7, 1, 3, 3}, {7}}, attrs: []*onnx.Attribute{aInts("pads", 1, 1, 1, 1), aInt("group", 7)}},
		{op: "Conv", shapes: [][]int{{1, 5, 20, 19}, {5, 1, 5, 3}}, attrs: []*onnx.Attribute{aInts("strides", 2, 3), aInts("dilations", 2, 1), aInts("pads", 3, 0, 2, 4), aInt("group", 5)}},
		{op: "Conv", shapes: [][]int{{3, 4, 65}, {4, 1, 3}, {4}}, attrs: []*onnx.Attribute{aInts("strides", 2), aInts("pads", 1, 2), aInt("group", 4)}},
	}
	for _, c := range cases {
		k := c.kernel(t).(*conv[float64])
		if !k.depthwise() {
			t.Fatalf("%v: not depthwise", c.shapes)
		}
		ref := &conv[float64]{n: k.n, c: k.c, m: k.m, group: k.group, win: k.win, out: k.out, hasBias: k.hasBias, cols: new(scratch[float64])}
		in := randomInputs(5, c.shapes)
		got, want := make([]float64, size(k.out)), make([]float64, size(k.out))
		for i := range got {
			got[i] = 7 // every element must be written
		}
		if err := k.forward(in, got); err != nil {
			t.Fatal(err)
		}
		if err := ref.forward(in, want); err != nil { // plane nil: im2col by gather, a GEMM per group
			t.Fatal(err)
		}
		for i := range got {
			if d := got[i] - want[i]; d > 1e-12 || d < -1e-12 {
				t.Fatalf("%v: element %d is %v, want %v", c.shapes, i, got[i], want[i])
			}
		}
	}
}

// residualModel is x [n, c, h, w] -> Conv(weight wshape, strides, pads,
// bias) -> BatchNormalization (when bn) -> Add(the other branch) -> Relu:
// the other branch is x itself, or a second convolution (1x1, strides s)
// when other is set. With exposeConv the first convolution's output is a
// graph output too (and the second's), so nothing can be fused into it.
func residualModel(t *testing.T, n, c, h, w int, wshape []int, s int, pad int64, bn, other, exposeConv bool) *onnx.Model {
	t.Helper()
	r := rand.New(rand.NewSource(int64(wshape[2]*10 + s)))
	g := &onnx.Graph{Name: "residual"}
	x := g.AddInput("x", onnx.TensorType(onnx.Float, int64(n), int64(c), int64(h), int64(w)))
	init := func(name string, dims ...int) *onnx.Value {
		d64 := make([]int64, len(dims))
		for i, v := range dims {
			d64[i] = int64(v)
		}
		vals := randF32(r, size(dims))
		if name == "var" {
			for i := range vals {
				vals[i] = 0.5 + vals[i]*vals[i]
			}
		}
		tt, err := onnx.FromFloat32(name, d64, vals)
		if err != nil {
			t.Fatal(err)
		}
		return g.AddInitializer(tt)
	}
	conv := g.AddNode("Conv", "conv", []*onnx.Value{x, init("w", wshape...), init("b", wshape[0])}, []string{"y"},
		aInts("strides", int64(s), int64(s)), aInts("pads", pad, pad, pad, pad))
	y := conv.Outputs[0]
	if bn {
		y = g.AddNode("BatchNormalization", "bn", []*onnx.Value{y, init("scale", wshape[0]), init("shift", wshape[0]), init("mean", wshape[0]), init("var", wshape[0])}, []string{"z"}).Outputs[0]
	}
	branch := x
	if other {
		branch = g.AddNode("Conv", "down", []*onnx.Value{x, init("wd", wshape[0], c, 1, 1)}, []string{"d"}, aInts("strides", int64(s), int64(s))).Outputs[0]
	}
	sum := g.AddNode("Add", "add", []*onnx.Value{y, branch}, []string{"sum"})
	g.Outputs = g.AddNode("Relu", "relu", sum.Outputs, []string{"out"}).Outputs
	if exposeConv {
		g.Outputs = append(g.Outputs, y)
		if other {
			g.Outputs = append(g.Outputs, branch)
		}
	}
	return &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}
}

// With fixed weights, an Add of a convolution's output (BatchNormalization
// folded or not) and another value of its shape is computed in the
// convolution's epilogue, with the Relu after it, on the Winograd and the
// GEMM paths; the output is the bits of the unfused program's (the same
// model with the convolution's output exposed, so that it cannot fuse).
// The panels' path (strided windows) and a convolution read twice keep
// the Add. (Programs that differentiate keep it too:
// TestResNet18FGSMMatchesPyTorch's input gradients flow through both
// branches.)
func TestConvFusesResidualAdd(t *testing.T) {
	for _, tc := range []struct {
		name      string
		c, m, hw  int
		k, s      int
		pad       int64
		bn, other bool
		f64       bool
		fuses     bool
	}{
		{name: "winograd+bn", c: 16, m: 16, hw: 12, k: 3, s: 1, pad: 1, bn: true, fuses: true},
		{name: "winograd, other conv", c: 16, m: 16, hw: 9, k: 3, s: 1, pad: 1, other: true, fuses: true},
		{name: "1x1 gemm+bn", c: 8, m: 8, hw: 7, k: 1, s: 1, bn: true, fuses: true},
		{name: "float64 im2col", c: 3, m: 3, hw: 6, k: 3, s: 1, pad: 1, bn: true, f64: true, fuses: true},
		{name: "panels, few channels", c: 3, m: 3, hw: 6, k: 3, s: 1, pad: 1, fuses: false},
		{name: "strided panels", c: 4, m: 6, hw: 9, k: 3, s: 2, pad: 1, other: true, fuses: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shape := []int{2, tc.c, tc.hw, tc.hw}
			data := randF32(rand.New(rand.NewSource(9)), size(shape))
			x := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
			if tc.f64 {
				x = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(float64sOf(x)))
			}
			run := func(expose bool) ([]float64, map[string]int) {
				m := residualModel(t, 2, tc.c, tc.hw, tc.hw, []int{tc.m, tc.c, tc.k, tc.k}, tc.s, tc.pad, tc.bn, tc.other, expose)
				p, err := Compile(m, Options{FixedWeights: true, Float64: tc.f64})
				if err != nil {
					t.Fatal(err)
				}
				out, err := p.Run(x)
				if err != nil {
					t.Fatal(err)
				}
				kinds := map[string]int{}
				var lean []leanStep
				if tc.f64 {
					lean = p.cache[Plan{Inputs: [][]int{shape}}.key()].(*graphSession[float64]).lean
				} else {
					lean = inferenceSession(p, shape).lean
				}
				for _, st := range lean {
					d := st.node.Op().String()
					kinds[strings.SplitN(d, "(", 2)[0]]++
					if strings.Contains(d, "+Add+Relu") {
						kinds["fused"]++
					}
				}
				return float64sOf(out[0]), kinds
			}
			fused, kinds := run(false)
			plain, plainKinds := run(true)
			if got := kinds["fused"] == 1 && kinds["Add+Relu"] == 0; got != tc.fuses {
				t.Errorf("fused %v, want %v: the run computes %v", got, tc.fuses, kinds)
			}
			if plainKinds["fused"] != 0 || plainKinds["Add+Relu"] != 1 {
				t.Errorf("a convolution read twice: the run computes %v, want the Add+Relu apart", plainKinds)
			}
			for i := range plain {
				if fused[i] != plain[i] {
					t.Fatalf("element %d: fused %v, apart %v", i, fused[i], plain[i])
				}
			}
		})
	}
}
