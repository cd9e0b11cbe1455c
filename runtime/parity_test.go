package runtime

import (
	"math"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

// committedModelDirs lists the committed exported models (testdata/models),
// each a folder with model.onnx and test_data_set_0.
func committedModelDirs(t testing.TB) []string {
	paths, _ := filepath.Glob("../testdata/models/*/model.onnx")
	if len(paths) < 7 {
		t.Fatalf("%d models in testdata/models, want 7", len(paths))
	}
	var dirs []string
	for _, p := range paths {
		dirs = append(dirs, filepath.Dir(p))
	}
	return dirs
}

// bigModelDirs lists the full-size exported models (testdata/big), calling
// testenv.Missing unless all four are there with their test data.
func bigModelDirs(t testing.TB) []string {
	paths := testenv.Big.Glob(t, "resnet18_*/model.onnx", 4)
	var dirs []string
	for _, p := range paths {
		dir := filepath.Dir(p)
		name := filepath.Base(dir)
		testenv.Big.Files(t, filepath.Join(name, "test_data_set_0/input_0.pb"), filepath.Join(name, "test_data_set_0/output_0.pb"))
		dirs = append(dirs, dir)
	}
	return dirs
}

// loadDense reads a TensorProto file as a float32 or float64 tensor.
func loadDense(t testing.TB, path string, f64 bool) *tensor.Dense {
	t.Helper()
	x, err := onnx.LoadTensor(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := x.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return denseOf(v, ints(x.Dims), f64)
}

func denseOf(v []float64, shape []int, f64 bool) *tensor.Dense {
	if f64 {
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), v...)))
	}
	v32 := make([]float32, len(v))
	for i, x := range v {
		v32[i] = float32(x)
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v32))
}

func float64sOf(d *tensor.Dense) []float64 {
	switch x := d.Data().(type) {
	case []float32:
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = float64(v)
		}
		return out
	case []float64:
		return x
	}
	return nil
}

func maxAbsDiff(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

// Every exported model's output equals PyTorch's within 1e-4.
func TestParityWithPyTorch(t *testing.T) {
	for _, dir := range committedModelDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) { checkParity(t, dir) })
	}
	t.Run("big", func(t *testing.T) {
		for _, dir := range bigModelDirs(t) {
			t.Run(filepath.Base(dir), func(t *testing.T) { checkParity(t, dir) })
		}
	})
}

func checkParity(t *testing.T, dir string) {
	m, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := loadDense(t, filepath.Join(dir, "test_data_set_0/input_0.pb"), false)
	want := loadDense(t, filepath.Join(dir, "test_data_set_0/output_0.pb"), false)
	out, err := p.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(float64sOf(out[0]), float64sOf(want)); d > 1e-4 || math.IsNaN(d) {
		t.Errorf("max |graft - PyTorch| = %g, want <= 1e-4", d)
	} else {
		t.Logf("max |graft - PyTorch| = %.2g", d)
	}
}

// Gradients through the whole compiled graph (Gorgonia's autodiff over our
// kernels, residual fan-out included) match finite differences in float64,
// for the input and for a sample of parameters, in eval and train mode.
func TestModelGradientsFiniteDifferences(t *testing.T) {
	for _, c := range []struct {
		model string
		train bool
	}{
		{"cnn", false},
		{"resnet_tiny_op13_bn", false},
		{"resnet_tiny_op13_bn", true},
		{"resnet_tiny_op17_folded", false},
		{"stn", false},
	} {
		name := c.model
		if c.train {
			name += "_train"
		}
		t.Run(name, func(t *testing.T) {
			m, err := onnx.Load(filepath.Join("../testdata/models", c.model, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			p, err := Compile(m, Options{Float64: true})
			if err != nil {
				t.Fatal(err)
			}
			in := loadDense(t, filepath.Join("../testdata/models", c.model, "test_data_set_0/input_0.pb"), true)
			out, err := p.Run(in)
			if err != nil {
				t.Fatal(err)
			}
			classes := out[0].Shape()[1]
			targets, _ := p.OneHot([]int{3, 7}, classes)
			loss := NLL
			if c.model != "stn" {
				loss = CrossEntropy
			}
			var names []string
			for _, prm := range p.Params() {
				// Running statistics are buffers, not trainable parameters.
				if !strings.Contains(prm.Name, "running_") {
					names = append(names, prm.Name)
				}
			}
			req := &Request{Inputs: []*tensor.Dense{in}, Targets: targets, Loss: loss, Train: c.train, Params: names, InputGrads: true}
			if c.train {
				// Training mode updates running statistics on every step;
				// finite differences need a pure function, so check BN's
				// batch-statistics path with the update undone each time.
				req.Params = nil
			}
			res, err := p.Step(req)
			if err != nil {
				t.Fatal(err)
			}
			f := func() float64 {
				snap := snapshot(p)
				r, err := p.Step(&Request{Inputs: []*tensor.Dense{in}, Targets: targets, Loss: loss, Train: c.train})
				restore(p, snap)
				if err != nil {
					t.Fatal(err)
				}
				return r.Loss
			}
			rng := rand.New(rand.NewSource(3))
			check := func(what string, data []float64, grad []float64) {
				for trial := 0; trial < 6; trial++ {
					j := rng.Intn(len(data))
					x := data[j]
					h := 1e-7 // small enough not to cross bilinear sampling kinks (STN)
					data[j] = x + h
					lp := f()
					data[j] = x - h
					lm := f()
					data[j] = x
					num := (lp - lm) / (2 * h)
					if math.Abs(num-grad[j]) > 1e-6+1e-4*math.Abs(num) {
						t.Errorf("%s[%d]: gradient %.8g, finite difference %.8g", what, j, grad[j], num)
					}
				}
			}
			check("input", in.Data().([]float64), float64sOf(res.InputGrads[0]))
			for name, g := range res.ParamGrads {
				check(name, p.Param(name).Value.Data().([]float64), float64sOf(g))
			}
		})
	}
}

// snapshot copies every parameter (running statistics change in training).
func snapshot(p *Program) [][]float64 {
	var s [][]float64
	for _, prm := range p.Params() {
		s = append(s, append([]float64(nil), prm.Value.Data().([]float64)...))
	}
	return s
}

func restore(p *Program, s [][]float64) {
	for i, prm := range p.Params() {
		copy(prm.Value.Data().([]float64), s[i])
	}
}
