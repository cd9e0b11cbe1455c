package runtime

import (
	"math"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
)

// awayFrom moves values within 0.05 of a kink off it, for finite
// differences.
func awayFrom(x []float64, kinks ...float64) {
	for i, v := range x {
		for _, k := range kinks {
			if math.Abs(v-k) < 0.05 {
				x[i] = k + 0.1
			}
		}
	}
}

func TestActivationGradients(t *testing.T) {
	for _, c := range []struct {
		oc    opCase
		kinks []float64
	}{
		{opCase{op: "HardSigmoid"}, []float64{-2.5, 2.5}},
		{opCase{op: "HardSigmoid", attrs: []*onnx.Attribute{aFloat("alpha", 1.0/6), aFloat("beta", 0.5)}}, []float64{-3, 3}},
		{opCase{op: "HardSigmoid", attrs: []*onnx.Attribute{aFloat("alpha", -0.7), aFloat("beta", 0.2)}}, []float64{0.2 / 0.7, -0.8 / 0.7}},
		{opCase{op: "HardSwish", opset: 14}, []float64{-3, 3}},
		{opCase{op: "Erf"}, nil},
		{opCase{op: "Gelu", opset: 20}, nil},
		{opCase{op: "Gelu", opset: 20, attrs: []*onnx.Attribute{aString("approximate", "tanh")}}, nil},
		{opCase{op: "Softplus"}, nil},
	} {
		c.oc.shapes = [][]int{{4, 50}}
		in := randomInputs(21, c.oc.shapes)
		for i := range in[0] {
			in[0][i] *= 5 // through every piece of the piecewise ones
		}
		awayFrom(in[0], c.kinks...)
		checkGrad(t, c.oc.kernel(t), in)
	}
}

// PyTorch's values (float64), at points the backend tests do not have:
// GELU's two forms at and around 0 and far out, Softplus where exp
// overflows, HardSwish at its kinks.
func TestActivationValues(t *testing.T) {
	for _, c := range []struct {
		oc      opCase
		x, want []float64
	}{
		{opCase{op: "Gelu", opset: 20}, []float64{0, 1, -1, -10, 10},
			[]float64{0, 0.841344746068543, -0.15865525393145702, 0, 10}},
		{opCase{op: "Gelu", opset: 20, attrs: []*onnx.Attribute{aString("approximate", "tanh")}}, []float64{0, 1, -1, 10},
			[]float64{0, 0.8411919906082768, -0.15880800939172324, 10}},
		{opCase{op: "Softplus"}, []float64{0, 800, -800, 1}, []float64{math.Ln2, 800, 0, 1.3132616875182228}},
		{opCase{op: "HardSwish", opset: 14}, []float64{-3, 3, -4, 1}, []float64{0, 3, 0, 2.0 / 3}},
	} {
		c.oc.shapes = [][]int{{len(c.x)}}
		k := c.oc.kernel(t)
		out := make([]float64, len(c.x))
		if err := k.forward([][]float64{c.x}, out); err != nil {
			t.Fatal(err)
		}
		for i, w := range c.want {
			if math.Abs(out[i]-w) > 1e-15*(1+math.Abs(w)) {
				t.Errorf("%s(%g) = %.17g, want %.17g", k.describe(), c.x[i], out[i], w)
			}
		}
	}
}

func TestGeluApproximateRefused(t *testing.T) {
	f := registryFor[float64]()["Gelu"]
	n := &onnx.Node{Name: "g", OpType: "Gelu", Attrs: []*onnx.Attribute{aString("approximate", "sigmoid")}}
	_, err := f(nil, n, []*val[float64]{{shape: []int{2}}})
	if err == nil || !strings.Contains(err.Error(), `approximate="sigmoid"`) {
		t.Fatalf("error %v, want one naming approximate=\"sigmoid\"", err)
	}
}

// At the kinks, the gradients PyTorch's kernels give: HardSigmoid's is 0
// at both ends of its linear part (alpha and beta exact in float32 here,
// so the ends are hit exactly), HardSwish's is -1/2 at -3 and 1 at 3.
func TestActivationKinkGradients(t *testing.T) {
	for _, c := range []struct {
		oc      opCase
		x, want []float64
	}{
		{opCase{op: "HardSigmoid", attrs: []*onnx.Attribute{aFloat("alpha", 0.5), aFloat("beta", 0.5)}}, []float64{-1, 1, 0}, []float64{0, 0, 0.5}},
		{opCase{op: "HardSwish", opset: 14}, []float64{-3, 3, 0}, []float64{-0.5, 1, 0.5}},
	} {
		c.oc.shapes = [][]int{{len(c.x)}}
		k := c.oc.kernel(t)
		out := make([]float64, len(c.x))
		k.forward([][]float64{c.x}, out)
		g := make([]float64, len(c.x))
		ones := []float64{1, 1, 1}
		k.backward(0, [][]float64{c.x}, out, ones, g)
		for i, w := range c.want {
			if g[i] != w {
				t.Errorf("%s: gradient at %g is %g, want %g", k.describe(), c.x[i], g[i], w)
			}
		}
	}
}
