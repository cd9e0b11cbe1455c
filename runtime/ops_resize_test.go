package runtime

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"gorgonia.org/tensor"
)

// resizeCase is a Resize node with constant scales or sizes.
func resizeCase(opset int64, x []int, scales []float64, sizes []int64, roi []float64, attrs ...*onnx.Attribute) opCase {
	c := opCase{op: "Resize", opset: opset, attrs: attrs, shapes: [][]int{x}, ints: map[int][]int64{}, floats: map[int][]float64{}}
	if roi != nil {
		c.floats[1] = roi
	}
	if scales != nil && opset < 11 {
		c.floats[1] = scales // Resize(X, scales) before opset 11
	} else if scales != nil {
		c.floats[2] = scales
	}
	if sizes != nil {
		c.ints[3] = sizes
	}
	return c
}

// Resize is linear in its input: its gradient is the transposed map, in
// every mode and coordinate transformation, up, down, and both at once.
func TestResizeGradients(t *testing.T) {
	x := []int{2, 2, 4, 5}
	for _, mode := range []string{"nearest", "linear", "cubic"} {
		for _, coord := range []string{"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn"} {
			for _, sizes := range [][]int64{{2, 2, 7, 3}, {2, 2, 2, 9}, {2, 2, 1, 1}} {
				c := resizeCase(13, x, nil, sizes, nil, aString("mode", mode), aString("coordinate_transformation_mode", coord))
				checkGrad(t, c.kernel(t), randomInputs(71, c.shapes))
			}
		}
	}
	for _, c := range []opCase{
		resizeCase(13, x, []float64{1, 1, 1.5, 0.6}, nil, nil, aString("mode", "linear")),
		resizeCase(13, x, []float64{1, 1, 2, 2}, nil, nil, aString("mode", "cubic"), aFloat("cubic_coeff_a", -0.5), aInt("exclude_outside", 1)),
		resizeCase(13, x, nil, []int64{2, 2, 3, 3}, []float64{0, 0, 0.4, 0.6, 1, 1, 1.2, 1.7}, aString("mode", "linear"),
			aString("coordinate_transformation_mode", "tf_crop_and_resize"), aFloat("extrapolation_value", 10)),
		resizeCase(13, []int{1, 3, 2, 2, 3}, []float64{1, 1, 2, 0.5, 1.5}, nil, nil, aString("mode", "linear")),
		resizeCase(10, x, []float64{1, 1, 2, 0.5}, nil, nil, aString("mode", "linear")),
		resizeCase(18, x, []float64{0.5, 2}, nil, nil, aString("mode", "cubic"), aInts("axes", 3, 2)),
		resizeCase(18, x, nil, []int64{8, 8}, nil, aString("mode", "linear"), aInts("axes", 2, 3), aString("keep_aspect_ratio_policy", "not_larger")),
		{op: "Upsample", opset: 7, attrs: []*onnx.Attribute{aString("mode", "linear"), {Name: "scales", Type: onnx.AttrFloats, Floats: []float32{1, 1, 2, 3}}}, shapes: [][]int{x}},
		{op: "Upsample", opset: 9, attrs: []*onnx.Attribute{aString("mode", "nearest")}, shapes: [][]int{x}, floats: map[int][]float64{1: {1, 1, 3, 2}}},
	} {
		checkGrad(t, c.kernel(t), randomInputs(72, c.shapes))
	}
}

// The output shapes of the forms the attributes select.
func TestResizeShapes(t *testing.T) {
	x := []int{1, 2, 4, 5}
	for _, c := range []struct {
		oc   opCase
		want string
	}{
		{resizeCase(13, x, []float64{1, 1, 0.6, 1.5}, nil, nil), "[1 2 2 7]"},
		{resizeCase(11, x, nil, []int64{1, 2, 9, 2}, nil), "[1 2 9 2]"},
		{resizeCase(10, x, []float64{1, 1, 2, 3}, nil, nil), "[1 2 8 15]"},
		{resizeCase(18, x, []float64{3}, nil, nil, aInts("axes", -1)), "[1 2 4 15]"},
		{resizeCase(18, x, nil, []int64{8, 8}, nil, aInts("axes", 2, 3), aString("keep_aspect_ratio_policy", "not_larger")), "[1 2 6 8]"},
		{resizeCase(18, x, nil, []int64{8, 8}, nil, aInts("axes", 2, 3), aString("keep_aspect_ratio_policy", "not_smaller")), "[1 2 8 10]"},
		{resizeCase(13, x, nil, []int64{1, 2, 2, 2}, []float64{0, 0, 0.25, 0.5, 1, 1, 0.75, 1}, aString("coordinate_transformation_mode", "tf_crop_and_resize")), "[1 2 2 2]"},
	} {
		if got := fmt.Sprint(c.oc.kernel(t).outShape()); got != c.want {
			t.Errorf("%v: shape %s, want %s", c.oc.attrs, got, c.want)
		}
	}
	// Scales of 1 copy the input: no kernel.
	b, outs := resizeCase(13, x, []float64{1, 1, 1, 1}, nil, nil, aString("mode", "linear")).build(t)
	if len(b.kernels) != 1 || b.kernels[0].describe() != "Reshape[1 2 4 5]" || formatInts(outs[0].shape) != "[1 2 4 5]" {
		t.Errorf("scales of 1 built %d kernels", len(b.kernels))
	}
}

func formatInts(s []int) string { return fmt.Sprint(s) }

func TestResizeErrors(t *testing.T) {
	x := []int{1, 1, 2, 2}
	for _, c := range []struct {
		oc   opCase
		want string
	}{
		{resizeCase(13, x, []float64{1, 1, 2, 2}, []int64{1, 1, 4, 4}, nil), "exactly one of scales and sizes"},
		{resizeCase(13, x, nil, nil, nil), "exactly one of scales and sizes"},
		{resizeCase(13, x, []float64{2, 2}, nil, nil), "scales [2 2] have 2 values for 4 axes"},
		{resizeCase(13, x, []float64{1, 1, 0, 2}, nil, nil), "must be positive and finite"},
		{resizeCase(13, x, nil, []int64{1, 1, 0, 2}, nil), "must be positive"},
		{resizeCase(13, x, []float64{1, 1, 2, 2}, nil, nil, aString("mode", "area")), `mode "area" is not nearest, linear or cubic`},
		{resizeCase(13, x, []float64{1, 1, 2, 2}, nil, nil, aString("coordinate_transformation_mode", "half_pixel_symmetric")), `"half_pixel_symmetric" is not supported`},
		{resizeCase(13, x, []float64{1, 1, 2, 2}, nil, nil, aString("nearest_mode", "round")), `nearest_mode "round" is not supported`},
		{resizeCase(18, x, []float64{1, 1, 2, 2}, nil, nil, aInt("antialias", 1)), "antialias is not supported"},
		{resizeCase(13, x, []float64{1, 1, 2, 2}, nil, []float64{0, 1}, aString("coordinate_transformation_mode", "tf_crop_and_resize")), "roi has 2 values; tf_crop_and_resize needs 8"},
		{resizeCase(18, x, []float64{2, 2}, nil, nil, aInts("axes", 1, 1)), "repeat an axis"},
		{resizeCase(18, x, nil, []int64{3, 3}, nil, aInts("axes", 2, 3), aString("keep_aspect_ratio_policy", "fit")), `keep_aspect_ratio_policy "fit"`},
		{opCase{op: "Resize", opset: 13, shapes: [][]int{x, nil, {4}}}, "input 2 (scales) must be a constant"},
		{opCase{op: "Upsample", opset: 7, shapes: [][]int{x}}, "the scales attribute is required"},
		{opCase{op: "Upsample", opset: 9, shapes: [][]int{x}, attrs: []*onnx.Attribute{aString("mode", "cubic")}, floats: map[int][]float64{1: {1, 1, 2, 2}}}, `mode "cubic" is not nearest or linear`},
	} {
		if err := buildErr(t, c.oc); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.oc.attrs, err, c.want)
		}
	}
}

// PyTorch's F.interpolate, exported by PyTorch at the opsets it supports,
// runs in graft with PyTorch's values and gradients (float64) and ONNX
// Runtime's values (float32). The references come from
// testdata/gen/resize_refs.py.
func TestResizeReferences(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/resize/*")
	if len(dirs) != 27 {
		t.Fatalf("found %d reference cases, want 27 (run testdata/gen/resize_refs.py)", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m, err := onnx.Load(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			x, xs := loadSampleRef(t, dir, "x")
			for _, f64 := range []bool{true, false} {
				p, err := Compile(m, Options{Float64: f64})
				if err != nil {
					t.Fatal(err)
				}
				in := tensor.New(tensor.WithShape(xs...), tensor.WithBacking(to32(x)))
				if f64 {
					in = tensor.New(tensor.WithShape(xs...), tensor.WithBacking(x))
				}
				outs, err := p.Run(in)
				if err != nil {
					t.Fatal(err)
				}
				if !f64 {
					ort := onnxtest.RunORT(t, filepath.Join(dir, "model.onnx"), filepath.Join(dir, "x.pb"))
					want, _ := ort[0].Float64s()
					if formatInts(outs[0].Shape()) != formatInts(ints(ort[0].Dims)) {
						t.Fatalf("shape %v, ONNX Runtime's %v", outs[0].Shape(), ort[0].Dims)
					}
					compareRef(t, "float32 output against ONNX Runtime", from32(outs[0].Data().([]float32)), want, 1e-6, false)
					continue
				}
				if _, err := os.Stat(filepath.Join(dir, "out.pb")); err != nil {
					continue // below opset 11, the graph does not mean what PyTorch computed (see resize_refs.py)
				}
				want, _ := loadSampleRef(t, dir, "out")
				compareRef(t, "float64 output against PyTorch", outs[0].Data().([]float64), want, 1e-12, false)
				w, _ := loadSampleRef(t, dir, "w")
				gwant, _ := loadSampleRef(t, dir, "grad_x")
				k := resizeKernelOf(t, p, xs)
				gin := make([]float64, len(x))
				if err := k.backward(0, [][]float64{x}, nil, w, gin); err != nil {
					t.Fatal(err)
				}
				compareRef(t, "float64 gradient against PyTorch", gin, gwant, 1e-12, true)
			}
		})
	}
}

// resizeKernelOf returns the resize kernel of p's graph for input shape x.
func resizeKernelOf(t *testing.T, p *Program, x []int) *resizeOp[float64] {
	t.Helper()
	s, _, err := buildSession[float64](p, Plan{Inputs: [][]int{x}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range s.g.AllNodes() {
		if op, ok := n.Op().(*kernelOp[float64]); ok {
			if k, ok := op.k.(*resizeOp[float64]); ok {
				return k
			}
		}
	}
	t.Fatal("no resize kernel in the graph")
	return nil
}

// The weights of one axis: nearest picks one input (rounding as
// nearest_mode says), linear two, cubic four with Keys' A, each clamped to
// the edge; every output's weights sum to 1.
func TestResizeAxisWeights(t *testing.T) {
	s := &resizeSpec{mode: "nearest", coord: "asymmetric", nearest: "round_prefer_ceil"}
	a := s.axisMap(0, 4, 8, 2, 0, 1) // x/2: 0, .5, 1, 1.5, ...
	if got := formatInts32(a.idx); got != "[0 1 1 2 2 3 3 3]" {
		t.Errorf("round_prefer_ceil picks %s", got)
	}
	s.nearest = "round_prefer_floor"
	if got := formatInts32(s.axisMap(0, 4, 8, 2, 0, 1).idx); got != "[0 0 1 1 2 2 3 3]" {
		t.Errorf("round_prefer_floor picks %s", got)
	}
	s.mode, s.coord = "cubic", "half_pixel"
	s.cubicA = -0.75
	a = s.axisMap(0, 5, 9, 9.0/5, 0, 1)
	for j := 0; j < a.out; j++ {
		sum := 0.0
		for t := a.start[j]; t < a.start[j+1]; t++ {
			sum += a.w[t]
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Errorf("cubic weights of output %d sum to %g", j, sum)
		}
	}
}

func formatInts32(v []int32) string {
	s := make([]int, len(v))
	for i, x := range v {
		s[i] = int(x)
	}
	return formatInts(s)
}
