package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"path/filepath"
	"slices"
	"time"

	"github.com/graft-dev/graft/cmd/examples/internal/pics"
	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/train"
	"github.com/graft-dev/graft/surgery"
	"gorgonia.org/tensor"
)

// Options configure a DCGAN run.
type Options struct {
	// Data is the real images: an IDX images file (its labels beside it)
	// or an image folder, of 28x28 gray pictures.
	Data string
	// Out is the folder the run writes to (see the file names below).
	Out    string
	Epochs int
	Batch  int
	// MaxBatches, when above 0, ends each epoch after that many batches.
	MaxBatches int
	Sizes      Sizes
	// LR and Beta1 are both Adams' learning rate and first beta (the
	// paper's 2e-4 and 0.5; the second beta is 0.999).
	LR, Beta1 float64
	// Seed draws the initial weights, the data order, the noise and the
	// fixed noise of the sample grids.
	Seed int64
	// Log, when set, gets a line of progress every LogEvery batches and
	// at the end of every epoch.
	Log      func(string)
	LogEvery int
}

// DefaultOptions returns the settings of the README's run.
func DefaultOptions() Options {
	return Options{Epochs: 20, Batch: 64, Sizes: Sizes{Z: 100, NGF: 32, NDF: 32}, LR: 2e-4, Beta1: 0.5, Seed: 1, LogEvery: 50}
}

// The files a run writes into Options.Out.
const (
	GeneratorFile     = "generator.onnx"
	DiscriminatorFile = "discriminator.onnx"
	LossPlotFile      = "losses.png"
	MetricsFile       = "metrics.json"
	// SamplesFile is the grid of the generator's samples after each epoch
	// (formatted with the epoch, from 1): 64 images of the same fixed noise.
	SamplesFile = "samples_epoch_%02d.png"
)

// Step is one training iteration's numbers, as PyTorch's DCGAN tutorial
// prints them.
type Step struct {
	DLoss float64 `json:"d_loss"` // D's loss on the real batch plus that on the fake one
	GLoss float64 `json:"g_loss"` // G's non-saturating loss, -log D(G(z))
	DReal float64 `json:"d_real"` // D's mean output on the real batch
	DFake float64 `json:"d_fake"` // and on the fakes, before D's update
}

// Epoch is one epoch's means and how long it took.
type Epoch struct {
	Epoch   int     `json:"epoch"` // from 1
	Steps   int     `json:"steps"`
	Seconds float64 `json:"seconds"`
	Step
}

// Result is what a run did.
type Result struct {
	Epochs []Epoch `json:"epochs"`
	Steps  []Step  `json:"steps"`
	// Samples holds the last grid's generated images, in [-1, 1].
	Samples []float32 `json:"-"`
}

// Check reports options that cannot work.
func (o Options) Check() error {
	switch {
	case o.Epochs < 1, o.Batch < 1, o.MaxBatches < 0:
		return fmt.Errorf("dcgan: epochs %d, batch %d, max batches %d: want at least 1 epoch and 1 example a batch", o.Epochs, o.Batch, o.MaxBatches)
	case o.Sizes.Z < 1 || o.Sizes.NGF < 1 || o.Sizes.NDF < 1:
		return fmt.Errorf("dcgan: nz %d, ngf %d, ndf %d: want positive sizes", o.Sizes.Z, o.Sizes.NGF, o.Sizes.NDF)
	case !(o.LR > 0) || math.IsInf(o.LR, 0):
		return fmt.Errorf("dcgan: lr %v: want a positive learning rate", o.LR)
	case !(o.Beta1 >= 0 && o.Beta1 < 1):
		return fmt.Errorf("dcgan: beta1 %v: want 0 <= beta1 < 1", o.Beta1)
	}
	return nil
}

// gridSide is the sample grid's images a row (and rows).
const gridSide = 8

// Run trains the generator and discriminator on o.Data as PyTorch's DCGAN
// tutorial does, and writes the sample grids, the loss plot, the metrics
// and both networks (after every epoch) into o.Out.
//
// Three programs share the networks' weights: G alone (fakes for D's step,
// samples), D alone (real and fake batches) and G composed with D
// (surgery.Compose), through which G's step differentiates. After each
// update train.ShareParams copies the new values into the other programs.
// BatchNorm runs on batch statistics throughout, as in PyTorch's train mode.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	plan := fileio.Plan{}
	plan.Input(o.Data, "--data")
	plan.OutputDir(o.Out, "-o")
	for _, f := range []string{GeneratorFile, DiscriminatorFile, LossPlotFile, MetricsFile} {
		plan.Output(filepath.Join(o.Out, f), "")
	}
	for e := 1; e <= o.Epochs; e++ {
		plan.Output(filepath.Join(o.Out, fmt.Sprintf(SamplesFile, e)), "")
	}
	if err := plan.Check(); err != nil {
		return nil, err
	}
	ds, err := dataset.Open(o.Data, dataset.OpenOptions{})
	if err != nil {
		return nil, err
	}
	cfg, err := dataset.ForInput(1, 28, 28).Config(ds, o.Batch, true, o.Seed)
	if err != nil {
		return nil, err
	}
	loader, err := dataset.NewLoader(ds, cfg)
	if err != nil {
		return nil, err
	}
	lock, err := fileio.LockDir(o.Out)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()

	t, err := newTrainer(o)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	rng := rand.New(rand.NewSource(o.Seed))
	fixed := noise(rng, gridSide*gridSide, o.Sizes.Z)
	for epoch := range o.Epochs {
		start := time.Now()
		var sum Step
		n := 0
		for b, err := range loader.Batches(epoch) {
			if err != nil {
				return nil, err
			}
			if err := ctx.Err(); err != nil {
				return res, err
			}
			s, err := t.step(toTanhRange(b.X), noise(rng, b.X.Shape()[0], o.Sizes.Z))
			if err != nil {
				return nil, fmt.Errorf("dcgan: epoch %d, batch %d: %w", epoch+1, n+1, err)
			}
			res.Steps = append(res.Steps, s)
			sum.DLoss, sum.GLoss, sum.DReal, sum.DFake = sum.DLoss+s.DLoss, sum.GLoss+s.GLoss, sum.DReal+s.DReal, sum.DFake+s.DFake
			n++
			if o.Log != nil && o.LogEvery > 0 && n%o.LogEvery == 0 {
				o.Log(fmt.Sprintf("epoch %d batch %d: %s", epoch+1, n, s))
			}
			if n == o.MaxBatches {
				break
			}
		}
		k := float64(n)
		e := Epoch{Epoch: epoch + 1, Steps: n, Seconds: time.Since(start).Seconds(),
			Step: Step{DLoss: sum.DLoss / k, GLoss: sum.GLoss / k, DReal: sum.DReal / k, DFake: sum.DFake / k}}
		res.Epochs = append(res.Epochs, e)
		if res.Samples, err = t.sample(fixed); err != nil {
			return nil, err
		}
		if err := t.write(o.Out, res); err != nil {
			return nil, err
		}
		if o.Log != nil {
			o.Log(fmt.Sprintf("epoch %d: %d steps in %.1f s, mean %s", e.Epoch, n, e.Seconds, e.Step))
		}
	}
	return res, nil
}

func (s Step) String() string {
	return fmt.Sprintf("D loss %.3f, G loss %.3f, D(x) %.3f, D(G(z)) %.3f", s.DLoss, s.GLoss, s.DReal, s.DFake)
}

// trainer holds the three programs and the two optimizers.
type trainer struct {
	genModel, discModel *onnx.Model // discModel has the logit pair output
	gen, disc, gan      *runtime.Program
	gAll, dAll          []string // every parameter, running statistics included
	gTrain, dTrain      []string // the trained ones
	dNorm               []string // D's BatchNorm scales, prefixed as in gan
	optG, optD          *train.Adam
}

// ganPrefix prefixes D's names inside the composed program.
const ganPrefix = "D/"

func newTrainer(o Options) (*trainer, error) {
	gm, err := Generator(o.Sizes, o.Seed)
	if err != nil {
		return nil, err
	}
	dm, err := Discriminator(o.Sizes, o.Seed+1)
	if err != nil {
		return nil, err
	}
	if dm, err = withLogitPair(dm); err != nil {
		return nil, err
	}
	gan, err := surgery.Compose(gm, dm, ganPrefix)
	if err != nil {
		return nil, err
	}
	t := &trainer{genModel: gm, discModel: dm}
	for _, c := range []struct {
		m *onnx.Model
		p **runtime.Program
	}{{gm, &t.gen}, {dm, &t.disc}, {gan, &t.gan}} {
		if *c.p, err = runtime.Compile(c.m, runtime.Options{Seed: o.Seed}); err != nil {
			return nil, err
		}
	}
	for _, p := range t.gen.Params() {
		t.gAll = append(t.gAll, p.Name)
	}
	for _, p := range t.disc.Params() {
		t.dAll = append(t.dAll, p.Name)
	}
	if t.gTrain, err = surgery.Trainable(gm); err != nil {
		return nil, err
	}
	if t.dTrain, err = surgery.Trainable(dm); err != nil {
		return nil, err
	}
	for _, p := range surgery.Params(dm) {
		if p.Op == "BatchNormalization" && p.Role == surgery.Scale {
			t.dNorm = append(t.dNorm, ganPrefix+p.Name)
		}
	}
	adam := train.AdamOptions{LR: o.LR, Beta1: o.Beta1, Beta2: 0.999}
	if t.optG, err = train.NewAdam(adam); err != nil {
		return nil, err
	}
	if t.optD, err = train.NewAdam(adam); err != nil {
		return nil, err
	}
	return t, nil
}

// step is one iteration of PyTorch's tutorial: D's update on a real batch
// (label 1) and a fake one (label 0), then G's update through D, labelled
// real (the non-saturating loss).
func (t *trainer) step(real, z *tensor.Dense) (Step, error) {
	n := real.Shape()[0]
	ones, err := t.disc.OneHot(slices.Repeat([]int{1}, n), 2)
	if err != nil {
		return Step{}, err
	}
	zeros, err := t.disc.OneHot(make([]int, n), 2)
	if err != nil {
		return Step{}, err
	}
	dReq := func(x, labels *tensor.Dense) *runtime.Request {
		return &runtime.Request{Inputs: []*tensor.Dense{x}, Targets: labels, Loss: runtime.CrossEntropy,
			LossOn: pairOutput, Train: true, Params: t.dTrain}
	}

	// D: real, then fakes made by G in train mode (batch statistics), the
	// gradients summed, one update.
	r, err := t.disc.Step(dReq(real, ones))
	if err != nil {
		return Step{}, err
	}
	fake, err := t.gen.Step(&runtime.Request{Inputs: []*tensor.Dense{z}, Train: true})
	if err != nil {
		return Step{}, err
	}
	f, err := t.disc.Step(dReq(fake.Outputs[0], zeros))
	if err != nil {
		return Step{}, err
	}
	for name, g := range r.ParamGrads {
		add(g, f.ParamGrads[name])
	}
	if err := t.optD.Update(t.disc.Params(), r.ParamGrads, t.optD.LR()); err != nil {
		return Step{}, err
	}
	if err := train.ShareParams(t.gan, ganPrefix, t.disc, "", t.dAll); err != nil {
		return Step{}, err
	}

	// G: through D, on the same noise. Naming D's BatchNorm scales among
	// the parameters makes those layers use the fakes' batch statistics,
	// as PyTorch's D in train mode does; their gradients are dropped, so
	// only G changes.
	g, err := t.gan.Step(&runtime.Request{Inputs: []*tensor.Dense{z}, Targets: ones, Loss: runtime.CrossEntropy,
		LossOn: ganPrefix + pairOutput, Train: true, Params: append(slices.Clone(t.gTrain), t.dNorm...)})
	if err != nil {
		return Step{}, err
	}
	for _, name := range t.dNorm {
		delete(g.ParamGrads, name)
	}
	if err := t.optG.Update(t.gan.Params(), g.ParamGrads, t.optG.LR()); err != nil {
		return Step{}, err
	}
	// G's new weights and both networks' running statistics, updated by
	// the step, back into the programs that run them alone.
	if err := train.ShareParams(t.gen, "", t.gan, "", t.gAll); err != nil {
		return Step{}, err
	}
	if err := train.ShareParams(t.disc, "", t.gan, ganPrefix, t.dAll); err != nil {
		return Step{}, err
	}
	return Step{DLoss: r.Loss + f.Loss, GLoss: g.Loss, DReal: mean(r.Outputs[0]), DFake: mean(f.Outputs[0])}, nil
}

// sample runs G in inference form (running statistics), as the exported
// model does.
func (t *trainer) sample(z *tensor.Dense) ([]float32, error) {
	out, err := t.gen.Run(z)
	if err != nil {
		return nil, err
	}
	return out[0].Data().([]float32), nil
}

// write saves the epoch's sample grid, the loss plot, the metrics and both
// networks (D without its training output).
func (t *trainer) write(dir string, res *Result) error {
	pixels := make([]float32, len(res.Samples))
	for i, v := range res.Samples {
		pixels[i] = (v + 1) / 2
	}
	grid, err := pics.Grid(pixels, 28, 28, gridSide)
	if err != nil {
		return err
	}
	samples, err := pics.PNG(grid)
	if err != nil {
		return err
	}
	plot, err := lossPlot(res.Steps)
	if err != nil {
		return err
	}
	metrics, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	epoch := res.Epochs[len(res.Epochs)-1].Epoch
	for _, f := range []struct {
		name string
		data []byte
	}{{fmt.Sprintf(SamplesFile, epoch), samples}, {LossPlotFile, plot}, {MetricsFile, append(metrics, '\n')}} {
		if err := fileio.WriteFile(filepath.Join(dir, f.name), f.data); err != nil {
			return err
		}
	}
	if err := t.gen.WriteBack(); err != nil {
		return err
	}
	if err := onnx.Save(t.genModel, filepath.Join(dir, GeneratorFile)); err != nil {
		return err
	}
	if err := t.disc.WriteBack(); err != nil {
		return err
	}
	d, err := t.discModel.Clone()
	if err != nil {
		return err
	}
	if err := surgery.Apply(d, surgery.Cut(realOutput)); err != nil {
		return err
	}
	return onnx.Save(d, filepath.Join(dir, DiscriminatorFile))
}

// noise draws n standard normal vectors [n, z, 1, 1].
func noise(rng *rand.Rand, n, z int) *tensor.Dense {
	v := make([]float32, n*z)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return tensor.New(tensor.WithShape(n, z, 1, 1), tensor.WithBacking(v))
}

// toTanhRange maps pixels in [0, 1] to [-1, 1], the range of G's Tanh.
func toTanhRange(x *tensor.Dense) *tensor.Dense {
	v := slices.Clone(x.Data().([]float32))
	for i := range v {
		v[i] = 2*v[i] - 1
	}
	return tensor.New(tensor.WithShape(x.Shape().Clone()...), tensor.WithBacking(v))
}

func add(dst, src *tensor.Dense) {
	d, s := dst.Data().([]float32), src.Data().([]float32)
	for i := range d {
		d[i] += s[i]
	}
}

func mean(x *tensor.Dense) float64 {
	s := 0.0
	for _, v := range x.Data().([]float32) {
		s += float64(v)
	}
	return s / float64(x.Shape().TotalSize())
}
