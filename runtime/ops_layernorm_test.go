package runtime

import (
	"math"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
)

// layerNormRef computes LayerNormalization element by element: x viewed
// as [rows, cols], scale and bias given per column.
func layerNormRef(x, scale, bias []float64, rows, cols int, eps float64) []float64 {
	y := make([]float64, len(x))
	for r := 0; r < rows; r++ {
		var mean, v float64
		for j := 0; j < cols; j++ {
			mean += x[r*cols+j]
		}
		mean /= float64(cols)
		for j := 0; j < cols; j++ {
			d := x[r*cols+j] - mean
			v += d * d
		}
		v /= float64(cols)
		for j := 0; j < cols; j++ {
			y[r*cols+j] = (x[r*cols+j]-mean)/math.Sqrt(v+eps)*scale[j] + bias[j]
		}
	}
	return y
}

func TestLayerNormGradients(t *testing.T) {
	for _, c := range []struct {
		x, scale, bias []int
		axis           int64
	}{
		{[]int{2, 5, 8}, []int{8}, []int{8}, -1},
		{[]int{2, 3, 4, 5}, []int{3, 4, 5}, []int{3, 4, 5}, 1},
		{[]int{3, 7}, []int{7}, nil, 1},
		{[]int{2, 3, 4}, []int{4}, []int{3, 1}, 1}, // parameters broadcast over [3, 4]
		{[]int{2, 3, 4}, []int{1}, []int{}, 1},
		{[]int{6}, []int{6}, []int{6}, 0},
		{[]int{2, 3}, []int{2, 3}, []int{2, 3}, -2},
	} {
		oc := opCase{op: "LayerNormalization", shapes: [][]int{c.x, c.scale, c.bias},
			attrs: []*onnx.Attribute{aInt("axis", c.axis), aFloat("epsilon", 0.01)}}
		k := oc.kernel(t)
		in := randomInputs(40, oc.shapes)
		checkGrad(t, k, in)

		// Forward against the element-by-element definition, parameters
		// expanded to the normalised shape.
		axis := int(c.axis)
		if axis < 0 {
			axis += len(c.x)
		}
		norm := c.x[axis:]
		expand := func(p []float64, shape []int) []float64 {
			out := make([]float64, size(norm))
			if shape == nil {
				return out
			}
			for j, i := range broadcastIndex(shape, norm) {
				out[j] = p[i]
			}
			return out
		}
		rows, cols := size(c.x[:axis]), size(norm)
		want := layerNormRef(in[0], expand(in[1], c.scale), expand(in[2], c.bias), rows, cols, float64(float32(0.01)))
		out := make([]float64, len(want))
		k.forward(in, out)
		for i := range want {
			if math.Abs(out[i]-want[i]) > 1e-12*(1+math.Abs(want[i])) {
				t.Errorf("%v axis %d: out[%d] = %g, want %g", c.x, c.axis, i, out[i], want[i])
				break
			}
		}

		// Mean and InvStdDev, and their gradients.
		nk := k.(*normRows[float64])
		for _, inv := range []bool{false, true} {
			s := &rowStat[float64]{rows: nk.rows, cols: nk.cols, eps: nk.eps, invStd: inv, shape: []int{rows, 1}}
			checkGrad(t, s, in[:1])
		}
	}
}

func TestInstanceNormGradients(t *testing.T) {
	for _, x := range [][]int{{2, 3, 4, 5}, {3, 2, 7}, {1, 4, 2, 2, 3}} {
		c := []int{x[1]}
		oc := opCase{op: "InstanceNormalization", shapes: [][]int{x, c, c}, attrs: []*onnx.Attribute{aFloat("epsilon", 0.05)}}
		k := oc.kernel(t)
		in := randomInputs(41, oc.shapes)
		checkGrad(t, k, in)
		// Forward: every (sample, channel) is a LayerNorm row with the
		// channel's scale and bias.
		rows, cols := x[0]*x[1], size(x[2:])
		out := make([]float64, size(x))
		k.forward(in, out)
		for r := 0; r < rows; r++ {
			s, b := make([]float64, cols), make([]float64, cols)
			for j := range s {
				s[j], b[j] = in[1][r%x[1]], in[2][r%x[1]]
			}
			want := layerNormRef(in[0][r*cols:(r+1)*cols], s, b, 1, cols, float64(float32(0.05)))
			for j, w := range want {
				if got := out[r*cols+j]; math.Abs(got-w) > 1e-12*(1+math.Abs(w)) {
					t.Fatalf("%v: row %d [%d] = %g, want %g", x, r, j, got, w)
				}
			}
		}
	}
}

func TestNormalizationErrors(t *testing.T) {
	for _, c := range []struct {
		op     string
		attrs  []*onnx.Attribute
		shapes [][]int
		want   string
	}{
		{"LayerNormalization", []*onnx.Attribute{aInt("axis", 3)}, [][]int{{2, 3, 4}, {4}}, "attribute axis: axis 3 is out of range for rank 3 of input X [2 3 4]"},
		{"LayerNormalization", nil, [][]int{{2, 3, 4}, {3}}, "Scale [3] does not broadcast to the normalised shape [4] (X [2 3 4] from axis 2)"},
		{"LayerNormalization", []*onnx.Attribute{aInt("axis", 2)}, [][]int{{2, 3, 4}, {4}, {2, 4}}, "B [2 4] does not broadcast to the normalised shape [4]"},
		{"LayerNormalization", []*onnx.Attribute{aInt("stash_type", 7)}, [][]int{{2, 3}, {3}}, "stash_type=7 is not a float type"},
		{"LayerNormalization", nil, [][]int{{2, 3}}, "needs inputs X and Scale"},
		{"InstanceNormalization", nil, [][]int{{2, 3, 4}, {3}, {4}}, "B has shape [4], want [3] (the channels of input [2 3 4])"},
		{"InstanceNormalization", nil, [][]int{{2}, {2}, {2}}, "input [2] must have at least 2 dimensions"},
		{"InstanceNormalization", nil, [][]int{{2, 3, 4}, {3}}, "needs inputs input, scale and B"},
	} {
		in := make([]*val[float64], len(c.shapes))
		for i, s := range c.shapes {
			in[i] = &val[float64]{shape: s}
		}
		n := &onnx.Node{Name: "n", OpType: c.op, Attrs: c.attrs}
		if _, err := registryFor[float64]()[c.op](nil, n, in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: error %v, want %q", c.op, c.shapes, err, c.want)
		}
	}
}
