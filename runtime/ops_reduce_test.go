package runtime

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
)

// reduceRef reduces x of shape over the axes flagged in red, element by
// element with explicit multi-indices.
func reduceRef(kind reduceKind, x []float64, shape []int, red []bool) []float64 {
	outShape := make([]int, len(shape))
	count := 1
	for i, d := range shape {
		outShape[i] = d
		if red[i] {
			outShape[i] = 1
			count *= d
		}
	}
	out := make([]float64, size(outShape))
	for i := range out {
		if kind == reduceMax {
			out[i] = math.Inf(-1)
		}
	}
	idx := make([]int, len(shape))
	for flat, v := range x {
		r := flat
		for d := len(shape) - 1; d >= 0; d-- {
			idx[d] = r % shape[d]
			r /= shape[d]
		}
		o := 0
		for d := range shape {
			if !red[d] {
				o = o*outShape[d] + idx[d]
			} else {
				o = o * outShape[d]
			}
		}
		if kind == reduceMax {
			out[o] = math.Max(out[o], v)
		} else {
			out[o] += v
		}
	}
	if kind == reduceMean {
		for i := range out {
			out[i] /= float64(count)
		}
	}
	return out
}

func TestReduce(t *testing.T) {
	type tc struct {
		shape []int
		axes  []int64 // nil: all
		keep  int64
	}
	cases := []tc{
		{[]int{3, 4, 5}, []int64{1}, 1},
		{[]int{3, 4, 5}, []int64{0, 2}, 1}, // Gorgonia's multi-axis mean gradient was wrong here
		{[]int{3, 4, 5}, []int64{-1, 0}, 0},
		{[]int{3, 4, 5}, nil, 0},
		{[]int{3, 4, 5}, nil, 1},
		{[]int{2, 3, 5, 7}, []int64{2, 3}, 1}, // global pooling over contiguous HW
		{[]int{2, 3, 5, 7}, []int64{0, 2, 3}, 0},
		{[]int{2, 1, 5, 3}, []int64{1, 3}, 1}, // a size-1 axis among the reduced ones
		{[]int{5, 1, 3}, []int64{1}, 0},
		{[]int{7}, []int64{0}, 1},
	}
	for _, kind := range []reduceKind{reduceSum, reduceMean, reduceMax} {
		for _, c := range cases {
			red := make([]bool, len(c.shape))
			for _, a := range c.axes {
				red[(int(a)+len(c.shape))%len(c.shape)] = true
			}
			if c.axes == nil {
				for i := range red {
					red[i] = true
				}
			}
			// The three forms: axes attribute, axes input, and the opset
			// boundary where the input appears.
			attrOpset, inputOpset := int64(13), int64(18)
			if kind == reduceSum {
				attrOpset, inputOpset = 11, 13
			}
			forms := []opCase{
				{op: kind.String(), opset: attrOpset, shapes: [][]int{c.shape}, attrs: []*onnx.Attribute{aInt("keepdims", c.keep)}},
				{op: kind.String(), opset: inputOpset, shapes: [][]int{c.shape}, attrs: []*onnx.Attribute{aInt("keepdims", c.keep)}},
			}
			if c.axes != nil {
				forms[0].attrs = append(forms[0].attrs, aInts("axes", c.axes...))
				forms[1].ints = map[int][]int64{1: c.axes}
			}
			for _, oc := range forms {
				name := fmt.Sprintf("%s opset %d %v axes %v keepdims %d", kind, oc.opset, c.shape, c.axes, c.keep)
				k := oc.kernel(t)
				var want []int
				for i, d := range c.shape {
					if !red[i] {
						want = append(want, d)
					} else if c.keep == 1 {
						want = append(want, 1)
					}
				}
				if fmt.Sprint(k.outShape()) != fmt.Sprint(want) && !(len(want) == 0 && len(k.outShape()) == 0) {
					t.Errorf("%s: shape %v, want %v", name, k.outShape(), want)
				}
				in := randomInputs(20, [][]int{c.shape})
				out := make([]float64, size(k.outShape()))
				if err := k.forward(in, out); err != nil {
					t.Fatal(err)
				}
				ref := reduceRef(kind, in[0], c.shape, red)
				for i := range ref {
					if math.Abs(out[i]-ref[i]) > 1e-12 {
						t.Errorf("%s: out[%d] = %g, want %g", name, i, out[i], ref[i])
						break
					}
				}
				checkGrad(t, k, in)
			}
		}
	}
}

func TestReduceNoop(t *testing.T) {
	// noop_with_empty_axes with no axes passes the input through.
	c := opCase{op: "ReduceSum", opset: 13, shapes: [][]int{{3, 4}}, attrs: []*onnx.Attribute{aInt("noop_with_empty_axes", 1)}}
	b, outs := c.build(t)
	if len(b.kernels) != 0 || fmt.Sprint(outs[0].shape) != "[3 4]" {
		t.Errorf("noop built %d kernels, shape %v", len(b.kernels), outs[0].shape)
	}
	// Without the flag, empty axes reduce everything.
	c = opCase{op: "ReduceMean", opset: 18, shapes: [][]int{{3, 4}}, ints: map[int][]int64{1: {}}, attrs: []*onnx.Attribute{aInt("keepdims", 0)}}
	if s := c.kernel(t).outShape(); len(s) != 0 {
		t.Errorf("empty axes: shape %v, want a scalar", s)
	}
}

func TestReduceMaxTies(t *testing.T) {
	// The gradient goes to the first maximum only, in row-major order.
	for _, axes := range [][]int64{{1}, {0}, {0, 1}} {
		k := opCase{op: "ReduceMax", opset: 13, shapes: [][]int{{2, 3}}, attrs: []*onnx.Attribute{aInts("axes", axes...)}}.kernel(t)
		x := []float64{1, 5, 5, 5, 5, 2}
		out := make([]float64, size(k.outShape()))
		k.forward([][]float64{x}, out)
		g := make([]float64, len(out))
		for i := range g {
			g[i] = 1
		}
		gin := make([]float64, 6)
		k.backward(0, [][]float64{x}, out, g, gin)
		want := map[string]string{
			"[1]":   "[0 1 0 1 0 0]",
			"[0]":   "[0 1 1 1 0 0]",
			"[0 1]": "[0 1 0 0 0 0]",
		}[fmt.Sprint(axes)]
		if got := fmt.Sprint(gin); got != want {
			t.Errorf("axes %v: gradient %s, want %s", axes, got, want)
		}
	}
}

func TestReduceErrors(t *testing.T) {
	for _, c := range []struct {
		axes []int64
		want string
	}{
		{[]int64{3}, "out of range"},
		{[]int64{-4}, "out of range"},
		{[]int64{1, -2}, "repeat"},
	} {
		_, err := newReduce[float64](reduceSum, []int{2, 3, 4}, c.axes, true)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("axes %v: error %v, want %q", c.axes, err, c.want)
		}
	}
}

func TestSoftmax(t *testing.T) {
	type tc struct {
		opset int64
		axis  *int64
		shape []int
		// the normalised groups: [outer, n, inner]
		outer, n, inner int
	}
	ax := func(a int64) *int64 { return &a }
	cases := []tc{
		{13, nil, []int{3, 4, 5}, 12, 5, 1},
		{13, ax(1), []int{3, 4, 5}, 3, 4, 5},
		{13, ax(0), []int{3, 4, 5}, 1, 3, 20},
		{13, ax(-2), []int{2, 3, 5, 3}, 6, 5, 3},
		{11, nil, []int{3, 4, 5}, 3, 20, 1}, // flattened at axis 1
		{11, ax(2), []int{3, 4, 5}, 12, 5, 1},
		{11, ax(0), []int{3, 4, 5}, 1, 60, 1},
		{11, ax(-1), []int{2, 3, 5}, 6, 5, 1},
		{13, nil, []int{7}, 1, 7, 1},
	}
	for _, op := range []string{"Softmax", "LogSoftmax"} {
		for _, c := range cases {
			oc := opCase{op: op, opset: c.opset, shapes: [][]int{c.shape}}
			if c.axis != nil {
				oc.attrs = []*onnx.Attribute{aInt("axis", *c.axis)}
			}
			k := oc.kernel(t)
			in := randomInputs(21, [][]int{c.shape})
			for i := range in[0] {
				in[0][i] *= 3
			}
			out := make([]float64, len(in[0]))
			k.forward(in, out)
			// Each group sums to 1 after exp for LogSoftmax.
			for o := 0; o < c.outer; o++ {
				for i := 0; i < c.inner; i++ {
					var s float64
					for j := 0; j < c.n; j++ {
						y := out[(o*c.n+j)*c.inner+i]
						if op == "LogSoftmax" {
							y = math.Exp(y)
						}
						s += y
					}
					if math.Abs(s-1) > 1e-12 {
						t.Fatalf("%s opset %d axis %v %v: group (%d,%d) sums to %g", op, c.opset, c.axis, c.shape, o, i, s)
					}
				}
			}
			checkGrad(t, k, in)
		}
	}
	// Large inputs stay finite.
	k := opCase{op: "LogSoftmax", shapes: [][]int{{1, 3}}}.kernel(t)
	out := make([]float64, 3)
	k.forward([][]float64{{1000, 1001, 1002}}, out)
	for i, want := range []float64{-2.40760596, -1.40760596, -0.40760596} {
		if math.Abs(out[i]-want) > 1e-8 {
			t.Errorf("large LogSoftmax[%d] = %g, want %g", i, out[i], want)
		}
	}
}

func BenchmarkReduceMeanHW(b *testing.B) {
	shape := []int{8, 512, 7, 7}
	k, _ := newReduce[float32](reduceMean, shape, []int64{2, 3}, true)
	x := make([]float32, size(shape))
	out := make([]float32, size(k.outShape()))
	gin := make([]float32, size(shape))
	b.ResetTimer()
	for range b.N {
		clear(out)
		k.forward([][]float32{x}, out)
		k.backward(0, [][]float32{x}, out, out, gin)
	}
}

func BenchmarkSoftmaxLogits(b *testing.B) {
	k := &softmax[float32]{shape: []int{32, 1000}, outer: 32, n: 1000, inner: 1}
	x := make([]float32, 32000)
	out := make([]float32, 32000)
	gin := make([]float32, 32000)
	b.ResetTimer()
	for range b.N {
		k.forward([][]float32{x}, out)
		k.backward(0, [][]float32{x}, out, out, gin)
	}
}
