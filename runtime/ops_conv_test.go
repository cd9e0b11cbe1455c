package runtime

import (
	"testing"

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
