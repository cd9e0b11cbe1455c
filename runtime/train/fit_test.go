package train

import (
	"context"
	"errors"
	"iter"
	"math"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

// mlp builds x [batch, 2] -> Gemm(8) -> Relu -> Gemm(3) -> logits (and
// LogSoftmax if logSoftmax), with seeded weights.
func mlp(t *testing.T, seed int64, logSoftmax bool) *onnx.Model {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	g := &onnx.Graph{Name: "mlp"}
	x := g.AddInput("x", &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("batch"), onnx.Fixed(2)}})
	param := func(name string, dims ...int64) *onnx.Value {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.Float64() - 0.5)
		}
		w, err := onnx.FromFloat32(name, dims, v)
		if err != nil {
			t.Fatal(err)
		}
		return g.AddInitializer(w)
	}
	transB := &onnx.Attribute{Name: "transB", Type: onnx.AttrInt, Int: 1}
	h := g.AddNode("Gemm", "fc1", []*onnx.Value{x, param("fc1.weight", 8, 2), param("fc1.bias", 8)}, []string{"h"}, transB).Outputs[0]
	r := g.AddNode("Relu", "relu", []*onnx.Value{h}, []string{"r"}).Outputs[0]
	out := g.AddNode("Gemm", "fc2", []*onnx.Value{r, param("fc2.weight", 3, 8), param("fc2.bias", 3)}, []string{"logits"}, transB).Outputs[0]
	if logSoftmax {
		out = g.AddNode("LogSoftmax", "lsm", []*onnx.Value{out}, []string{"logp"}, &onnx.Attribute{Name: "axis", Type: onnx.AttrInt, Int: 1}).Outputs[0]
	}
	g.Outputs = []*onnx.Value{out}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, Graph: g}
	if err := m.InferShapes(); err != nil {
		t.Fatal(err)
	}
	return m
}

var mlpParams = []string{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}

// clusters returns n points around three well-separated centres, labelled
// by centre.
func clusters(n int, seed int64) (*tensor.Dense, []int) {
	rng := rand.New(rand.NewSource(seed))
	centres := [][2]float64{{2, 0}, {-1, 1.7}, {-1, -1.7}}
	d := make([]float32, 2*n)
	labels := make([]int, n)
	for i := range n {
		c := i % 3
		labels[i] = c
		d[2*i] = float32(centres[c][0] + 0.3*rng.NormFloat64())
		d[2*i+1] = float32(centres[c][1] + 0.3*rng.NormFloat64())
	}
	return tensor.New(tensor.WithShape(n, 2), tensor.WithBacking(d)), labels
}

func compile(t *testing.T, m *onnx.Model) *runtime.Program {
	t.Helper()
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func memory(t *testing.T, x *tensor.Dense, labels []int, bs int, shuffle bool, seed int64) *dataset.Memory {
	t.Helper()
	m, err := dataset.NewMemory(x, labels, bs, shuffle, seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFitLearnsSeparableData(t *testing.T) {
	for _, logSoftmax := range []bool{false, true} {
		m := mlp(t, 1, logSoftmax)
		p := compile(t, m)
		if got, _, err := lossFor(p); err != nil || got != map[bool]runtime.Loss{false: runtime.CrossEntropy, true: runtime.NLL}[logSoftmax] {
			t.Errorf("lossFor: %v, %v", got, err)
		}
		x, labels := clusters(60, 2)
		vx, vlabels := clusters(30, 3)
		train, val := memory(t, x, labels, 10, true, 7), memory(t, vx, vlabels, 16, false, 0)
		opt, _ := NewSGD(SGDOptions{LR: 0.1, Momentum: 0.9})
		var batches, epochs, checkpoints int
		var bests []int
		h, err := Fit(context.Background(), p, train, val, Config{
			Epochs: 15, Optimizer: opt, Params: mlpParams, Schedule: StepLR{StepSize: 10, Gamma: 0.5},
			OnBatch: func(s BatchStats) {
				if s.Batch != batches%6 || s.Seen != 10*(s.Batch+1) || s.Total != 60 || s.ImagesPerSec <= 0 {
					t.Errorf("batch stats %+v", s)
				}
				batches++
			},
			OnEpoch: func(EpochStats) { epochs++ },
			Checkpoint: func(epoch int, s EpochStats, best bool) error {
				checkpoints++
				if best {
					bests = append(bests, epoch)
				}
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if batches != 90 || epochs != 15 || checkpoints != 15 || len(h.Epochs) != 15 {
			t.Errorf("%d batches, %d epochs, %d checkpoints, %d history entries", batches, epochs, checkpoints, len(h.Epochs))
		}
		first, last := h.Epochs[0], h.Epochs[len(h.Epochs)-1]
		if !(last.Loss < first.Loss/4) || last.Accuracy != 1 || last.Val == nil || last.Val.Accuracy != 1 {
			t.Errorf("loss %.3g -> %.3g, accuracy %.3g -> %.3g, validation %+v", first.Loss, last.Loss, first.Accuracy, last.Accuracy, last.Val)
		}
		if h.Epochs[9].LR != 0.1 || h.Epochs[10].LR != 0.05 {
			t.Errorf("learning rates %g, %g", h.Epochs[9].LR, h.Epochs[10].LR)
		}
		if len(bests) == 0 || bests[0] != 0 || bests[len(bests)-1] != h.BestEpoch || h.BestAccuracy != 1 {
			t.Errorf("best epochs %v, history best %d (%g)", bests, h.BestEpoch, h.BestAccuracy)
		}
		loss, acc, perClass, err := Evaluate(p, val, 0)
		if err != nil || acc != 1 || !slices.Equal(perClass, []float64{1, 1, 1}) || math.Abs(loss-last.Val.Loss) > 1e-6 {
			t.Errorf("Evaluate: loss %g (epoch said %g), accuracy %g, per class %v, %v", loss, last.Val.Loss, acc, perClass, err)
		}

		// metrics.json
		path := filepath.Join(t.TempDir(), "metrics.json")
		if err := h.Save(path); err != nil {
			t.Fatal(err)
		}
		h2, err := LoadHistory(path)
		if err != nil || len(h2.Epochs) != 15 || *h2.Epochs[3].Val != *h.Epochs[3].Val || h2.BestEpoch != h.BestEpoch {
			t.Errorf("history round trip: %+v, %v", h2, err)
		}
	}
}

func TestEvaluatePerClass(t *testing.T) {
	p := compile(t, mlp(t, 1, false))
	x, labels := clusters(6, 2)
	for i := range labels {
		labels[i] = min(labels[i], 1) // no example of class 2
	}
	_, _, perClass, err := Evaluate(p, memory(t, x, labels, 4, false, 0), 3)
	if err != nil || len(perClass) != 3 || !math.IsNaN(perClass[2]) || math.IsNaN(perClass[0]) {
		t.Errorf("per class %v, %v", perClass, err)
	}
}

// Cancelling stops after the current step; the epochs done are returned.
func TestFitStopsWhenCancelled(t *testing.T) {
	p := compile(t, mlp(t, 1, false))
	x, labels := clusters(60, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var steps int
	opt, _ := NewAdam(AdamOptions{LR: 0.01})
	h, err := Fit(ctx, p, memory(t, x, labels, 10, true, 1), nil, Config{
		Epochs: 5, Optimizer: opt, Params: mlpParams,
		OnBatch: func(s BatchStats) {
			steps++
			if s.Epoch == 1 && s.Batch == 2 {
				cancel()
			}
		},
	})
	if !errors.Is(err, ErrStopped) || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want ErrStopped and context.Canceled", err)
	}
	if !strings.Contains(err.Error(), "epoch 2 after 3 batches") {
		t.Errorf("error %q does not say where it stopped", err)
	}
	if steps != 9 || len(h.Epochs) != 1 || opt.State().Params["fc1.weight"].Step != 9 {
		t.Errorf("%d steps, %d epochs recorded, %d optimizer steps; want 9, 1, 9", steps, len(h.Epochs), opt.State().Params["fc1.weight"].Step)
	}
}

// poisoned yields NaN inputs in one batch of one epoch.
type poisoned struct {
	dataset.Source
	epoch, batch int
}

func (s poisoned) Batches(epoch int) iter.Seq2[dataset.Batch, error] {
	return func(yield func(dataset.Batch, error) bool) {
		i := 0
		for b, err := range s.Source.Batches(epoch) {
			if epoch == s.epoch && i == s.batch {
				x := b.X.Clone().(*tensor.Dense)
				x.Data().([]float32)[0] = float32(math.NaN())
				b.X = x
			}
			if !yield(b, err) {
				return
			}
			i++
		}
	}
}

func TestFitStopsOnNaN(t *testing.T) {
	p := compile(t, mlp(t, 1, false))
	x, labels := clusters(60, 2)
	opt, _ := NewSGD(SGDOptions{LR: 0.1})
	var before []float32
	checkpoints := 0
	h, err := Fit(context.Background(), p, poisoned{memory(t, x, labels, 10, false, 0), 1, 3}, nil, Config{
		Epochs: 3, Optimizer: opt, Params: mlpParams,
		OnBatch: func(s BatchStats) {
			before = append(before[:0], p.Param("fc1.weight").Value.Data().([]float32)...)
		},
		Checkpoint: func(int, EpochStats, bool) error { checkpoints++; return nil },
	})
	var nf *NonFiniteError
	if !errors.As(err, &nf) || !errors.Is(err, ErrNonFinite) || nf.Epoch != 1 || nf.Batch != 3 || !math.IsNaN(nf.Loss) ||
		!nf.BadInput || nf.Example != 0 || nf.Perturbed || !nf.Updated {
		t.Fatalf("error %v (%+v), want a NonFiniteError at epoch 1, batch 3", err, nf)
	}
	if want := "epoch 2, batch 4: the loss is NaN (the input of example 1 of the batch is not finite); training stopped, checkpoints already saved are kept"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if len(h.Epochs) != 1 || checkpoints != 1 {
		t.Errorf("%d epochs, %d checkpoints before the NaN", len(h.Epochs), checkpoints)
	}
	if !slices.Equal(before, p.Param("fc1.weight").Value.Data().([]float32)) {
		t.Error("the NaN step updated the parameters")
	}

	// A NaN validation loss stops too (metrics.json cannot hold NaN).
	vx, vlabels := clusters(6, 3)
	_, err = Fit(context.Background(), p, memory(t, x, labels, 10, false, 0), poisoned{memory(t, vx, vlabels, 4, false, 0), 0, 1}, Config{
		Epochs: 2, Optimizer: opt, Params: mlpParams,
	})
	if want := "fit: validation after epoch 1: the input of example 1 of batch 2 is not finite"; err == nil || err.Error() != want {
		t.Errorf("NaN validation input: %v, want %s", err, want)
	}
}

// The message blames the learning rate only when it could be the cause:
// after updates, with finite inputs.
func TestNonFiniteLossMessages(t *testing.T) {
	x, labels := clusters(60, 2)
	fit := func(m *onnx.Model, lr float64, perturb func(int, dataset.Batch) (dataset.Batch, error)) error {
		opt, err := NewSGD(SGDOptions{LR: lr})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Fit(context.Background(), compile(t, m), memory(t, x, labels, 10, false, 0), nil, Config{
			Epochs: 3, Optimizer: opt, Params: mlpParams, Perturb: perturb})
		return err
	}
	// Weights that overflow at the first step: not the learning rate.
	m := mlp(t, 1, false)
	w := m.Graph.Value("fc1.weight").Const
	v, _ := w.Float32s()
	for i := range v {
		v[i] = 3e38
	}
	m.Graph.Value("fc1.weight").Const, _ = onnx.FromFloat32(w.Name, w.Dims, v)
	want := "epoch 1, batch 1: the loss is NaN (before any update, so the model or its input is to blame, not the learning rate); training stopped, checkpoints already saved are kept"
	if err := fit(m, 0.1, nil); err == nil || err.Error() != want {
		t.Errorf("overflowing weights: %v, want %s", err, want)
	}
	// A huge learning rate: after updates, the learning rate is suspect.
	var nf *NonFiniteError
	err := fit(mlp(t, 1, false), 1e30, nil)
	if !errors.As(err, &nf) || !nf.Updated || !strings.HasSuffix(err.Error(), "(lower the learning rate?); training stopped, checkpoints already saved are kept") {
		t.Errorf("huge learning rate: %v", err)
	}
	// Noise with a NaN standard deviation: the perturbed input.
	noise := func(epoch int, b dataset.Batch) (dataset.Batch, error) {
		x := b.X.Clone().(*tensor.Dense)
		x.Data().([]float32)[9] = float32(math.NaN()) // example 5: 2 values an example
		b.X = x
		return b, nil
	}
	want = "epoch 1, batch 1: the loss is NaN (the perturbed input of example 5 of the batch is not finite); training stopped, checkpoints already saved are kept"
	if err := fit(mlp(t, 1, false), 0.1, noise); err == nil || err.Error() != want {
		t.Errorf("NaN noise: %v, want %s", err, want)
	}
}

// Stopping after two epochs, saving the model, optimizer state and
// history, and resuming from them trains exactly as an uninterrupted run.
func TestFitResume(t *testing.T) {
	x, labels := clusters(45, 4)
	vx, vlabels := clusters(12, 5)
	cfg := func(opt Optimizer) Config {
		return Config{Epochs: 5, Optimizer: opt, Params: mlpParams, Schedule: CosineAnnealingLR{TMax: 5}}
	}
	newOpt := func() Optimizer { o, _ := NewAdamW(AdamOptions{LR: 0.05, WeightDecay: 0.01}); return o }
	src := func() dataset.Source { return memory(t, x, labels, 8, true, 11) }
	val := func() dataset.Source { return memory(t, vx, vlabels, 8, false, 0) }

	// Uninterrupted.
	pa := compile(t, mlp(t, 3, false))
	var lossA []float64
	ca := cfg(newOpt())
	ca.OnBatch = func(s BatchStats) { lossA = append(lossA, s.Loss) }
	ha, err := Fit(context.Background(), pa, src(), val(), ca)
	if err != nil {
		t.Fatal(err)
	}

	// Interrupted after epoch 2 (Ctrl-C), with checkpoints every epoch.
	dir := t.TempDir()
	pb := compile(t, mlp(t, 3, false))
	var lossB []float64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cb := cfg(newOpt())
	cb.OnBatch = func(s BatchStats) { lossB = append(lossB, s.Loss) }
	cb.Checkpoint = func(epoch int, s EpochStats, best bool) error {
		if err := pb.WriteBack(); err != nil {
			return err
		}
		if err := onnx.Save(pb.Model(), filepath.Join(dir, "last.onnx")); err != nil {
			return err
		}
		if err := SaveState(filepath.Join(dir, "optimizer.state"), cb.Optimizer); err != nil {
			return err
		}
		if epoch == 1 {
			cancel()
		}
		return nil
	}
	hb, err := Fit(ctx, pb, src(), val(), cb)
	if !errors.Is(err, ErrStopped) || len(hb.Epochs) != 2 {
		t.Fatalf("interrupted run: %v, %d epochs", err, len(hb.Epochs))
	}
	if err := hb.Save(filepath.Join(dir, "metrics.json")); err != nil {
		t.Fatal(err)
	}

	// Resumed from the files.
	m, err := onnx.Load(filepath.Join(dir, "last.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	pc := compile(t, m)
	cc := cfg(newOpt())
	if err := LoadState(filepath.Join(dir, "optimizer.state"), cc.Optimizer); err != nil {
		t.Fatal(err)
	}
	prior, err := LoadHistory(filepath.Join(dir, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	cc.Prior, cc.StartEpoch = prior, 2
	cc.OnBatch = func(s BatchStats) { lossB = append(lossB, s.Loss) }
	hc, err := Fit(context.Background(), pc, src(), val(), cc)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lossA, lossB) {
		t.Errorf("losses differ:\nuninterrupted %v\nresumed       %v", lossA, lossB)
	}
	for _, name := range mlpParams {
		if !slices.Equal(pa.Param(name).Value.Data().([]float32), pc.Param(name).Value.Data().([]float32)) {
			t.Errorf("%s differs after resuming", name)
		}
	}
	if len(hc.Epochs) != 5 || hc.BestEpoch != ha.BestEpoch || hc.BestAccuracy != ha.BestAccuracy {
		t.Errorf("resumed history: %d epochs, best %d (%g); uninterrupted best %d (%g)", len(hc.Epochs), hc.BestEpoch, hc.BestAccuracy, ha.BestEpoch, ha.BestAccuracy)
	}
	for i := range hc.Epochs {
		a, c := ha.Epochs[i], hc.Epochs[i]
		if a.Epoch != c.Epoch || a.Loss != c.Loss || a.LR != c.LR || *a.Val != *c.Val {
			t.Errorf("epoch %d: uninterrupted %+v, resumed %+v", i, a, c)
		}
	}
}

func TestFitErrors(t *testing.T) {
	p := compile(t, mlp(t, 1, false))
	x, labels := clusters(6, 2)
	src := memory(t, x, labels, 4, false, 0)
	opt, _ := NewSGD(SGDOptions{LR: 0.1})
	for _, c := range []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"optimizer", Config{Epochs: 1, Params: mlpParams}, "no optimizer"},
		{"params", Config{Epochs: 1, Optimizer: opt}, "no parameters"},
		{"unknown", Config{Epochs: 1, Optimizer: opt, Params: []string{"fc9.weight"}}, `no parameter "fc9.weight"`},
		{"labels", Config{Epochs: 1, Optimizer: opt, Params: mlpParams, Classes: 2}, "label 2 of example 2 is outside 0..1"},
		{"checkpoint", Config{Epochs: 1, Optimizer: opt, Params: mlpParams,
			Checkpoint: func(int, EpochStats, bool) error { return errors.New("disk full") }}, "checkpoint after epoch 1: disk full"},
	} {
		_, err := Fit(context.Background(), p, src, nil, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.msg)
		}
	}
}
