package train_test

// A GAN through the public API: two models, two programs, two optimizers.
//
//   - The generator G (z [N,16] -> Gemm 128 -> LeakyRelu -> Gemm 784 ->
//     Sigmoid -> Reshape [N,1,28,28]) and the discriminator D (image ->
//     Flatten -> Gemm 128 -> LeakyRelu(0.2) -> Gemm 2 logits, class 1 =
//     real) are onnx.Models built with the IR and initialised by
//     surgery.Initialize (Gemm weights N(0, 0.02), biases 0).
//   - surgery.Compose(G, D, "D/") is the GAN, z -> D(G(z)): one program
//     that holds G's parameters under their names and D's under "D/...".
//     D is also compiled alone, for real images.
//   - Which model a step trains is chosen by Request.Params alone: the other
//     gets no gradient and its optimizer never sees it.
//   - D step: the gradient of the loss on a real batch (label 1, D program)
//     plus that on a fake batch (label 0, GAN program, Params = D's prefixed
//     names), one Adam update on the D program, then ShareParams copies D's
//     new values into the GAN program.
//   - G step: the GAN program, Params = G's names, label 1 (the
//     non-saturating loss), an Adam update on the GAN program.
//   - ShareParams copies G's values into G compiled alone, to sample.
//
// The test checks that each step leaves the other model's parameters
// untouched, that D wins early (accuracy well above chance, D's loss below
// ln 2 and G's above) and G then catches up, and that after 1000 steps the
// samples have about the digits' mean intensity and are not constant,
// whereas the untrained generator gives 0.5 everywhere.

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/data"
	"github.com/graft-dev/graft/runtime/train"
	"github.com/graft-dev/graft/surgery"
	"gorgonia.org/tensor"
)

const (
	ganZ     = 16
	ganBatch = 32
)

// ganGemm adds a Gemm with zero weights [out, in] and bias [out]; Initialize
// draws them.
func ganGemm(t *testing.T, g *onnx.Graph, name string, x *onnx.Value, in, out int) *onnx.Value {
	t.Helper()
	w, err := onnx.FromFloat32(name+".weight", []int64{int64(out), int64(in)}, make([]float32, in*out))
	if err != nil {
		t.Fatal(err)
	}
	b, err := onnx.FromFloat32(name+".bias", []int64{int64(out)}, make([]float32, out))
	if err != nil {
		t.Fatal(err)
	}
	return g.AddNode("Gemm", name, []*onnx.Value{x, g.AddInitializer(w), g.AddInitializer(b)}, []string{name + "_out"},
		&onnx.Attribute{Name: "transB", Type: onnx.AttrInt, Int: 1}).Outputs[0]
}

func ganLeaky(g *onnx.Graph, name string, x *onnx.Value) *onnx.Value {
	return g.AddNode("LeakyRelu", name, []*onnx.Value{x}, []string{name + "_out"},
		&onnx.Attribute{Name: "alpha", Type: onnx.AttrFloat, Float: 0.2}).Outputs[0]
}

// ganInit is DCGAN's N(0, 0.02) for the Gemm weights (DCGAN() covers
// convolutions and batch norm only), biases 0.
func ganInit(t *testing.T, m *onnx.Model, seed int64) {
	t.Helper()
	rules := []surgery.Rule{
		{Op: "Gemm", Role: surgery.Weight, Init: surgery.Normal{Mean: 0, Std: 0.02}},
		{Op: "Gemm", Role: surgery.Bias, Init: surgery.Constant{Value: 0}},
	}
	if err := surgery.Apply(m, surgery.Initialize(rules, nil, seed)); err != nil {
		t.Fatal(err)
	}
}

func ganGenerator(t *testing.T) *onnx.Model {
	g := &onnx.Graph{Name: "generator"}
	z := g.AddInput("z", &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("N"), onnx.Fixed(ganZ)}})
	h := ganLeaky(g, "act1", ganGemm(t, g, "fc1", z, ganZ, 128))
	s := g.AddNode("Sigmoid", "sigmoid", []*onnx.Value{ganGemm(t, g, "fc2", h, 128, 784)}, []string{"pixels"}).Outputs[0]
	shape, err := onnx.FromInt64("image_shape", []int64{4}, []int64{-1, 1, 28, 28})
	if err != nil {
		t.Fatal(err)
	}
	g.Outputs = []*onnx.Value{g.AddNode("Reshape", "reshape", []*onnx.Value{s, g.AddInitializer(shape)}, []string{"image"}).Outputs[0]}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}
	ganInit(t, m, 1)
	return m
}

func ganDiscriminator(t *testing.T) *onnx.Model {
	g := &onnx.Graph{Name: "discriminator"}
	x := g.AddInput("image", &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("batch"), onnx.Fixed(1), onnx.Fixed(28), onnx.Fixed(28)}})
	f := g.AddNode("Flatten", "flatten", []*onnx.Value{x}, []string{"flat"}).Outputs[0]
	h := ganLeaky(g, "act1", ganGemm(t, g, "fc1", f, 784, 128))
	y := ganGemm(t, g, "fc2", h, 128, 2)
	y.Name = "logits"
	g.Outputs = []*onnx.Value{y}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}
	ganInit(t, m, 2)
	return m
}

func paramNames(p *runtime.Program) []string {
	var names []string
	for _, prm := range p.Params() {
		names = append(names, prm.Name)
	}
	return names
}

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

// snapshot copies the named parameters' values.
func snapshot(p *runtime.Program, names []string) map[string][]float32 {
	out := map[string][]float32{}
	for _, n := range names {
		out[n] = append([]float32(nil), p.Param(n).Value.Data().([]float32)...)
	}
	return out
}

func sameParams(t *testing.T, what string, p *runtime.Program, before map[string][]float32) {
	t.Helper()
	for n, v := range before {
		now := p.Param(n).Value.Data().([]float32)
		for i := range v {
			if v[i] != now[i] {
				t.Fatalf("%s: parameter %q changed at %d: %g -> %g", what, n, i, v[i], now[i])
			}
		}
	}
}

func noise(rng *rand.Rand, n int) *tensor.Dense {
	z := make([]float32, n*ganZ)
	for i := range z {
		z[i] = float32(rng.NormFloat64())
	}
	return tensor.New(tensor.WithShape(n, ganZ), tensor.WithBacking(z))
}

func labels(n, class int) []int {
	l := make([]int, n)
	for i := range l {
		l[i] = class
	}
	return l
}

func meanStd(v []float32) (mean, std float64) {
	for _, x := range v {
		mean += float64(x)
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (float64(x) - mean) * (float64(x) - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)))
}

// realClass counts the rows whose logits say class 1.
func realClass(logits *tensor.Dense) int {
	d := logits.Data().([]float32)
	n := 0
	for i := 0; i < len(d); i += 2 {
		if d[i+1] > d[i] {
			n++
		}
	}
	return n
}

func TestGAN(t *testing.T) {
	imgs, err := data.ReadIDXImages("../../testdata/models/lenet_mnist/heldout-images-idx3-ubyte.gz")
	if err != nil {
		t.Fatal(err)
	}
	realMean, realStd := meanStd(imgs.Tensor(0, imgs.Count).Data().([]float32))

	genModel, discModel := ganGenerator(t), ganDiscriminator(t)
	ganModel, err := surgery.Compose(genModel, discModel, "D/")
	if err != nil {
		t.Fatal(err)
	}
	compile := func(m *onnx.Model) *runtime.Program {
		p, err := runtime.Compile(m, runtime.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	gen, disc, gan := compile(genModel), compile(discModel), compile(ganModel)
	gNames, dNames := paramNames(gen), paramNames(disc)
	dInGAN := prefixed("D/", dNames)

	optD, err := train.NewAdam(train.AdamOptions{LR: 2e-4, Beta1: 0.5, Beta2: 0.999})
	if err != nil {
		t.Fatal(err)
	}
	optG, err := train.NewAdam(train.AdamOptions{LR: 2e-4, Beta1: 0.5, Beta2: 0.999})
	if err != nil {
		t.Fatal(err)
	}
	ones, err := gan.OneHot(labels(ganBatch, 1), 2)
	if err != nil {
		t.Fatal(err)
	}
	zeros, err := gan.OneHot(labels(ganBatch, 0), 2)
	if err != nil {
		t.Fatal(err)
	}

	sample := func(z *tensor.Dense) []float32 {
		if err := train.ShareParams(gen, "", gan, "", gNames); err != nil {
			t.Fatal(err)
		}
		out, err := gen.Run(z)
		if err != nil {
			t.Fatal(err)
		}
		return out[0].Data().([]float32)
	}
	rng := rand.New(rand.NewSource(7))
	fixedZ := noise(rng, 64)
	untrained := sample(fixedZ)
	uMean, uStd := meanStd(untrained)
	t.Logf("real digits: mean %.3f std %.3f; untrained generator: mean %.3f std %.3f", realMean, realStd, uMean, uStd)
	if math.Abs(uMean-0.5) > 0.02 || uStd > 0.05 {
		t.Fatalf("untrained generator: mean %.3f std %.3f, want ≈0.5 everywhere", uMean, uStd)
	}

	// Adam at lr 2e-4 moves each weight by about 2e-4 a step, so the gray
	// (0.5) images of the untrained generator take some 800 steps to darken
	// to the digits' mean; 1000 steps take about 5 s.
	const steps = 1000
	order := rng.Perm(imgs.Count)
	next := 0
	realBatch := func() *tensor.Dense {
		if next+ganBatch > len(order) {
			order, next = rng.Perm(imgs.Count), 0
		}
		x := make([]float32, 0, ganBatch*784)
		for _, i := range order[next : next+ganBatch] {
			x = append(x, imgs.Tensor(i, i+1).Data().([]float32)...)
		}
		next += ganBatch
		return tensor.New(tensor.WithShape(ganBatch, 1, 28, 28), tensor.WithBacking(x))
	}
	var dLoss, gLoss []float64
	var dAcc []float64 // D's accuracy on the batches of its step, before the update
	for step := 0; step < steps; step++ {
		check := step%100 == 0 || step == steps-1

		// D step: real (label 1) and fake (label 0) gradients summed.
		var gBefore map[string][]float32
		if check {
			gBefore = snapshot(gan, gNames)
		}
		real, err := disc.Step(&runtime.Request{Inputs: []*tensor.Dense{realBatch()}, Targets: ones, Loss: runtime.CrossEntropy, Params: dNames})
		if err != nil {
			t.Fatal(err)
		}
		fake, err := gan.Step(&runtime.Request{Inputs: []*tensor.Dense{noise(rng, ganBatch)}, Targets: zeros, Loss: runtime.CrossEntropy, Params: dInGAN})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range dNames {
			g, f := real.ParamGrads[n].Data().([]float32), fake.ParamGrads["D/"+n].Data().([]float32)
			for i := range g {
				g[i] += f[i]
			}
		}
		if err := optD.Update(disc.Params(), real.ParamGrads, optD.LR()); err != nil {
			t.Fatal(err)
		}
		if err := train.ShareParams(gan, "D/", disc, "", dNames); err != nil {
			t.Fatal(err)
		}
		dLoss = append(dLoss, (real.Loss+fake.Loss)/2)
		dAcc = append(dAcc, float64(realClass(real.Outputs[0])+ganBatch-realClass(fake.Outputs[0]))/(2*ganBatch))
		if check {
			sameParams(t, "a D step", gan, gBefore)
		}

		// G step: fool D (label 1) through the composed program.
		var dBefore, dBeforeGAN map[string][]float32
		if check {
			dBefore, dBeforeGAN = snapshot(disc, dNames), snapshot(gan, dInGAN)
		}
		res, err := gan.Step(&runtime.Request{Inputs: []*tensor.Dense{noise(rng, ganBatch)}, Targets: ones, Loss: runtime.CrossEntropy, Params: gNames})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.ParamGrads) != len(gNames) {
			t.Fatalf("G step: %d gradients, want %d (G's only)", len(res.ParamGrads), len(gNames))
		}
		if err := optG.Update(gan.Params(), res.ParamGrads, optG.LR()); err != nil {
			t.Fatal(err)
		}
		gLoss = append(gLoss, res.Loss)
		if check {
			sameParams(t, "a G step (D program)", disc, dBefore)
			sameParams(t, "a G step (GAN program)", gan, dBeforeGAN)
			m, sd := meanStd(sample(fixedZ))
			t.Logf("step %3d: D loss %.3f (acc %.2f), G loss %.3f; samples mean %.3f std %.3f", step, dLoss[step], dAcc[step], gLoss[step], m, sd)
		}
	}

	mean := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	// Early on D tells the gray fakes from digits, its loss falls below
	// ln 2 (chance) and G's rises above it: the two pull against each other.
	t.Logf("steps 10-30: D accuracy %.2f, D loss %.3f, G loss %.3f", mean(dAcc[10:30]), mean(dLoss[10:30]), mean(gLoss[10:30]))
	if a := mean(dAcc[10:30]); a < 0.75 {
		t.Errorf("D's accuracy over steps 10-30 is %.2f, want well above chance (0.5)", a)
	}
	if l := mean(dLoss[10:30]); l > 0.6 {
		t.Errorf("D's loss over steps 10-30 is %.3f, want below ln 2", l)
	}
	if l := mean(gLoss[10:30]); l < 0.8 {
		t.Errorf("G's loss over steps 10-30 is %.3f, want above ln 2", l)
	}
	// Then G catches up: its loss falls from its peak while D's rises from
	// its low, as the fakes get harder to tell.
	var gPeak, dLow float64 = 0, math.Inf(1)
	for i := 0; i+50 <= steps; i += 50 {
		gPeak, dLow = max(gPeak, mean(gLoss[i:i+50])), min(dLow, mean(dLoss[i:i+50]))
	}
	gEnd, dEnd := mean(gLoss[steps-100:]), mean(dLoss[steps-100:])
	t.Logf("G loss: peak %.3f, last 100 steps %.3f; D loss: low %.3f, last 100 steps %.3f", gPeak, gEnd, dLow, dEnd)
	if gEnd > gPeak/2 || dEnd < 2*dLow {
		t.Errorf("G loss peak %.3f -> end %.3f, D loss low %.3f -> end %.3f: the two should move back towards each other", gPeak, gEnd, dLow, dEnd)
	}

	fakes := sample(fixedZ)
	fMean, fStd := meanStd(fakes)
	t.Logf("after %d steps: generated mean %.3f std %.3f (real %.3f, %.3f)", steps, fMean, fStd, realMean, realStd)
	if math.Abs(fMean-realMean) > 0.1 {
		t.Errorf("generated mean intensity %.3f, want within 0.1 of the real digits' %.3f", fMean, realMean)
	}
	if fStd < 0.1 {
		t.Errorf("generated pixels' std %.3f: collapsed to a constant", fStd)
	}
	if err := writeGrid(filepath.Join(t.TempDir(), "gan.png"), fakes, 8); err != nil {
		t.Fatal(err)
	}
}

// writeGrid saves 28x28 images side by side, cols a row.
func writeGrid(path string, pixels []float32, cols int) error {
	n := len(pixels) / 784
	rows := (n + cols - 1) / cols
	im := image.NewGray(image.Rect(0, 0, cols*28, rows*28))
	for k := 0; k < n; k++ {
		for y := 0; y < 28; y++ {
			for x := 0; x < 28; x++ {
				v := math.Round(float64(pixels[k*784+y*28+x]) * 255)
				im.SetGray(k%cols*28+x, k/cols*28+y, color.Gray{Y: uint8(max(0, min(255, v)))})
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, im); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
