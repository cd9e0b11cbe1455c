package runtime

import (
	"fmt"
	"math"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
)

var (
	sampleModes = []string{"bilinear", "nearest", "bicubic"}
	samplePads  = []string{"zeros", "border", "reflection"}
)

func gridSampleCase(mode, pad string, align int64, x, grid []int) opCase {
	return opCase{op: "GridSample", opset: 16, shapes: [][]int{x, grid}, attrs: []*onnx.Attribute{
		aString("mode", mode), aString("padding_mode", pad), aInt("align_corners", align)}}
}

// safeGrid returns a grid [n, ho, wo, 2] for an input of h x w pixels whose
// points lie, in pixel coordinates, within [-1.5 size - 1, 2.5 size) and at
// least 0.1 pixel from every integer and half-integer: away from the kinks
// of interpolation weights, clamping, reflection and nearest rounding.
func safeGrid(seed int64, n, ho, wo, h, w int, align bool) []float64 {
	rng := rand.New(rand.NewSource(seed))
	g := make([]float64, n*ho*wo*2)
	for i := range g {
		size := w
		if i%2 == 1 {
			size = h
		}
		if size == 1 && align {
			g[i] = rng.Float64()*4 - 2 // any coordinate reads the one pixel
			continue
		}
		lo := int(-1.5*float64(size)) - 1
		u := float64(lo+rng.Intn(int(2.5*float64(size))-lo)) + 0.1 + 0.3*rng.Float64() + 0.5*float64(rng.Intn(2))
		if align {
			g[i] = 2*u/float64(size-1) - 1
		} else {
			g[i] = (2*u+1)/float64(size) - 1
		}
	}
	return g
}

func TestGridSampleGradients(t *testing.T) {
	x, grid := []int{2, 2, 5, 3}, []int{2, 3, 4, 2}
	for _, mode := range sampleModes {
		for _, pad := range samplePads {
			for align := range int64(2) {
				t.Run(fmt.Sprintf("%s_%s_ac%d", mode, pad, align), func(t *testing.T) {
					c := gridSampleCase(mode, pad, align, x, grid)
					in := randomInputs(20, c.shapes)
					in[1] = safeGrid(21, 2, 3, 4, 5, 3, align == 1)
					checkGrad(t, c.kernel(t), in)
				})
			}
		}
	}
	// Upsampling (more grid points than pixels) with a one-pixel-high
	// input, whose y coordinate never matters.
	for _, mode := range sampleModes {
		for _, pad := range samplePads {
			for align := range int64(2) {
				c := gridSampleCase(mode, pad, align, []int{1, 2, 1, 3}, []int{1, 4, 5, 2})
				in := randomInputs(24, c.shapes)
				in[1] = safeGrid(25, 1, 4, 5, 1, 3, align == 1)
				checkGrad(t, c.kernel(t), in)
			}
		}
	}
	// Opset 20's mode names.
	for _, mode := range []string{"linear", "cubic"} {
		c := gridSampleCase(mode, "border", 0, x, grid)
		in := randomInputs(22, c.shapes)
		in[1] = safeGrid(23, 2, 3, 4, 5, 3, false)
		checkGrad(t, c.kernel(t), in)
	}
}

func TestGridSampleForward(t *testing.T) {
	// One 3x4 image, pixels 0..11, read at exact points.
	img := make([]float64, 12)
	for i := range img {
		img[i] = float64(i)
	}
	cases := []struct {
		mode, pad string
		align     int64
		grid      []float64 // (x, y) pairs
		want      []float64
	}{
		// Pixel centres without align_corners: x = (2j+1)/4 - 1, y = (2i+1)/3 - 1.
		{"bilinear", "zeros", 0, []float64{-0.75, -2.0 / 3, 0.75, 2.0 / 3, 0.25, 0}, []float64{0, 11, 6}},
		// Corners with align_corners; halfway between pixels 1 and 2 of row 1.
		{"bilinear", "zeros", 1, []float64{-1, -1, 1, 1, 0, 0}, []float64{0, 11, 5.5}},
		// Half a pixel outside the edge: half the edge pixel with zeros.
		{"bilinear", "zeros", 0, []float64{-1, 0}, []float64{2}},
		{"bilinear", "border", 0, []float64{-1, 0, 3, 0}, []float64{4, 7}},
		// Pixel x 4.25 is 0.75 past the right edge (3.5): it reflects to 2.75.
		{"bilinear", "reflection", 0, []float64{(2*4.25+1)/4 - 1, 0}, []float64{4 + 2.75}},
		// Nearest rounds half to even: pixel x 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
		{"nearest", "zeros", 0, []float64{-0.5, 0, 0, 0, 0.5, 0}, []float64{4, 6, 6}},
		{"nearest", "zeros", 0, []float64{-1.3, 0, 1.2, 0}, []float64{0, 0}},
		{"nearest", "border", 0, []float64{-1.3, 0, 1.2, 0}, []float64{4, 7}},
		// Bicubic reproduces pixels at their centres and linear ramps
		// inside (row 1 of the image is 4, 5, 6, 7).
		{"bicubic", "border", 1, []float64{-1.0 / 3, 0, 0, 0}, []float64{5, 5.5}},
	}
	for _, c := range cases {
		k := gridSampleCase(c.mode, c.pad, c.align, []int{1, 1, 3, 4}, []int{1, 1, len(c.want), 2}).kernel(t)
		out := make([]float64, len(c.want))
		if err := k.forward([][]float64{img, c.grid}, out); err != nil {
			t.Fatal(err)
		}
		for i := range out {
			if math.Abs(out[i]-c.want[i]) > 1e-12 {
				t.Errorf("%s: point %d: got %g, want %g", k.describe(), i, out[i], c.want[i])
			}
		}
	}
}

// ONNX 1.12's test_gridsample_bicubic stores its expected output rounded
// to 4 decimals, so the conformance suite (tolerance 1e-5 + 1e-4 relative)
// cannot run it; check it here within that rounding.
func TestGridSampleBicubicBackendData(t *testing.T) {
	const test = "node/test_gridsample_bicubic"
	testenv.Backend.Files(t, test+"/model.onnx", test+"/test_data_set_0/input_0.pb", test+"/test_data_set_0/input_1.pb", test+"/test_data_set_0/output_0.pb")
	dir := testenv.Backend.Path(test)
	m, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	x, xs := loadSampleRef(t, dir, "test_data_set_0/input_0")
	grid, gs := loadSampleRef(t, dir, "test_data_set_0/input_1")
	want, _ := loadSampleRef(t, dir, "test_data_set_0/output_0")
	c := opCase{op: "GridSample", opset: 16, attrs: m.Graph.Nodes[0].Attrs, shapes: [][]int{xs, gs}}
	k := c.kernel(t)
	out := make([]float64, len(want))
	if err := k.forward([][]float64{x, grid}, out); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if d := math.Abs(out[i] - want[i]); d > 5.01e-5 {
			t.Errorf("%s: element %d: got %g, want %g (4 decimals)", k.describe(), i, out[i], want[i])
		}
	}
}

func TestAffineGridGradients(t *testing.T) {
	for align := range int64(2) {
		for _, sz := range [][]int64{{2, 3, 5, 4}, {1, 1, 1, 3}, {2, 1, 3, 2, 5}} {
			r := len(sz) - 2
			c := opCase{op: "AffineGrid", opset: 20, attrs: []*onnx.Attribute{aInt("align_corners", align)},
				shapes: [][]int{{int(sz[0]), r, r + 1}}, ints: map[int][]int64{1: sz}}
			checkGrad(t, c.kernel(t), randomInputs(24, c.shapes))
		}
	}
}

func TestSampleErrors(t *testing.T) {
	for _, c := range []struct {
		attrs  []*onnx.Attribute
		shapes [][]int
		want   string
	}{
		{[]*onnx.Attribute{aString("mode", "area")}, [][]int{{1, 1, 3, 3}, {1, 2, 2, 2}}, "unknown mode"},
		{[]*onnx.Attribute{aString("padding_mode", "wrap")}, [][]int{{1, 1, 3, 3}, {1, 2, 2, 2}}, "unknown padding_mode"},
		{nil, [][]int{{1, 1, 3, 3}, {2, 2, 2, 2}}, "does not match"},
		{nil, [][]int{{1, 1, 3, 3}, {1, 2, 2, 3}}, "does not match"},
		{nil, [][]int{{1, 1, 3, 3, 3}, {1, 2, 2, 2, 3}}, "only 2-D"},
	} {
		f := registryFor[float64]()["GridSample"]
		node := &onnx.Node{Name: "n", OpType: "GridSample", Attrs: c.attrs}
		in := []*val[float64]{{shape: c.shapes[0]}, {shape: c.shapes[1]}}
		if _, err := f(nil, node, in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: error %v, want %q", c.attrs, c.shapes, err, c.want)
		}
	}
}

// loadSampleRef reads one reference tensor of a PyTorch case.
func loadSampleRef(t *testing.T, dir, name string) ([]float64, []int) {
	t.Helper()
	x, err := onnx.LoadTensor(filepath.Join(dir, name+".pb"))
	if err != nil {
		t.Fatal(err)
	}
	if x.DType == onnx.Int64 {
		v, err := x.Int64s()
		if err != nil {
			t.Fatal(err)
		}
		f := make([]float64, len(v))
		for i, e := range v {
			f[i] = float64(e)
		}
		return f, ints(x.Dims)
	}
	v, err := x.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return v, ints(x.Dims)
}

// sampleRefKernels returns a case's kernel in float64 and float32 and its
// float inputs.
func sampleRefKernels(t *testing.T, dir string) (kernel[float64], kernel[float32], [][]float64, []string) {
	name := filepath.Base(dir)
	align := strings.HasSuffix(name, "_ac1")
	if strings.HasPrefix(name, "affinegrid_") {
		theta, ts := loadSampleRef(t, dir, "theta")
		szf, _ := loadSampleRef(t, dir, "size")
		sz := make([]int, len(szf))
		for i, v := range szf {
			sz[i] = int(v)
		}
		k64, err := newAffineGrid[float64](ts, sz, align)
		if err != nil {
			t.Fatal(err)
		}
		k32, _ := newAffineGrid[float32](ts, sz, align)
		return k64, k32, [][]float64{theta}, []string{"theta"}
	}
	parts := strings.Split(name, "_") // gridsample_<mode>_<padding>_ac<0|1>
	if len(parts) != 4 {
		t.Fatalf("unexpected case %s", name)
	}
	x, xs := loadSampleRef(t, dir, "x")
	grid, gs := loadSampleRef(t, dir, "grid")
	var mode sampleMode
	var pad samplePad
	for i, m := range sampleModeNames {
		if m == parts[1] {
			mode = sampleMode(i)
		}
	}
	for i, p := range samplePadNames {
		if p == parts[2] {
			pad = samplePad(i)
		}
	}
	if sampleModeNames[mode] != parts[1] || samplePadNames[pad] != parts[2] {
		t.Fatalf("unexpected case %s", name)
	}
	// Check the builder reads the attributes as the name says.
	k64 := gridSampleCase(parts[1], parts[2], int64(sampleBit(align)), xs, gs).kernel(t)
	k32, err := newGridSample[float32](xs, gs, mode, pad, align)
	if err != nil {
		t.Fatal(err)
	}
	return k64, k32, [][]float64{x, grid}, []string{"x", "grid"}
}

// compareRef reports elements of got outside tol*(1 + |want|) (forward) or
// tol*max(|want|, 1e-3*max|want|) (gradients, relative).
func compareRef(t *testing.T, what string, got, want []float64, tol float64, relative bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	scale := 0.0
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	bad := 0
	for i := range want {
		lim := tol * (1 + math.Abs(want[i]))
		if relative {
			lim = tol * math.Max(math.Abs(want[i]), 1e-3*scale)
		}
		if d := math.Abs(got[i] - want[i]); !(d <= lim) {
			if bad++; bad <= 3 {
				t.Errorf("%s[%d]: got %.10g, want %.10g", what, i, got[i], want[i])
			}
		}
	}
}

func to32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func from32(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// GridSample and AffineGrid match PyTorch's grid_sample and affine_grid,
// forward and backward, in float64 and float32 (references from
// testdata/gen/sample_refs.py).
func TestSamplePyTorchReferences(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/sample/*")
	if len(dirs) != 3*3*2+6 {
		t.Fatalf("found %d reference cases, want 24 (run testdata/gen/sample_refs.py)", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			k64, k32, in, names := sampleRefKernels(t, dir)
			want, _ := loadSampleRef(t, dir, "out")
			w, _ := loadSampleRef(t, dir, "w")
			grads := make([][]float64, len(in))
			for i, n := range names {
				grads[i], _ = loadSampleRef(t, dir, "grad_"+n)
			}

			out := make([]float64, len(want))
			if err := k64.forward(in, out); err != nil {
				t.Fatal(err)
			}
			compareRef(t, "float64 out", out, want, 1e-5, false)
			for i := range in {
				g := make([]float64, len(in[i]))
				if err := k64.backward(i, in, out, w, g); err != nil {
					t.Fatal(err)
				}
				compareRef(t, "float64 grad_"+names[i], g, grads[i], 1e-4, true)
			}

			in32 := make([][]float32, len(in))
			for i := range in {
				in32[i] = to32(in[i])
			}
			out32 := make([]float32, len(want))
			if err := k32.forward(in32, out32); err != nil {
				t.Fatal(err)
			}
			compareRef(t, "float32 out", from32(out32), want, 1e-5, false)
			for i := range in {
				g := make([]float32, len(in[i]))
				if err := k32.backward(i, in32, out32, to32(w), g); err != nil {
					t.Fatal(err)
				}
				compareRef(t, "float32 grad_"+names[i], from32(g), grads[i], 1e-4, true)
			}
		})
	}
}

// The STN batch size the runtime is tuned for.
func BenchmarkGridSampleSTN(b *testing.B) {
	x, grid := []int{64, 1, 28, 28}, []int{64, 28, 28, 2}
	k, _ := newGridSample[float32](x, grid, sampleLinear, samplePadZeros, false)
	in := [][]float32{to32(randomInputs(1, [][]int{x})[0]), to32(safeGrid(2, 64, 28, 28, 28, 28, false))}
	for i := range in[1] {
		in[1][i] *= 0.5
	}
	out := make([]float32, size(k.outShape()))
	gx, gg := make([]float32, len(in[0])), make([]float32, len(in[1]))
	b.ResetTimer()
	for range b.N {
		clear(out)
		clear(gx)
		clear(gg)
		_ = k.forward(in, out)
		_ = k.backward(0, in, out, out, gx)
		_ = k.backward(1, in, out, out, gg)
	}
}
