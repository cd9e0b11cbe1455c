package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/graft-dev/graft/cmd/examples/internal/pics"
	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/finetune"
	"github.com/graft-dev/graft/runtime/train"
	"github.com/graft-dev/graft/surgery"
)

// Options configure a comparison.
type Options struct {
	// Model is the classifier: its architecture is trained from scratch
	// (its weights are redrawn), with and without a spatial transformer.
	Model string
	// Train and Val are the data (IDX images files or image folders);
	// PerClass, when above 0, keeps that many training examples a class.
	Train, Val string
	PerClass   int
	// Out is the folder of the two runs (plain/, stn/), the picture and
	// the report.
	Out string
	// Epochs, Batch, LR, Schedule (finetune.Options.Schedule) and Seed
	// are both runs' (Adam). Seed also draws the classifier's weights, the
	// same for both, and the localisation net's.
	Epochs, Batch int
	LR            float64
	Schedule      string
	Seed          int64
	// Log, when set, gets a line per epoch of each run.
	Log func(string)
}

// DefaultOptions returns the settings of the README's run: those
// testdata/gen/mnist_lenet.py trained the LeNet with (Adam, lr 1e-3, batch
// 64, 12 epochs), the rate annealed by a cosine so that the last epoch's
// accuracy is a converged one rather than one step's luck.
func DefaultOptions() Options {
	return Options{Epochs: 12, Batch: 64, LR: 1e-3, Schedule: "cosine", Seed: 1}
}

// Files Run writes into Options.Out, besides the runs' folders (each with
// model.onnx and finetune's metrics.json, training.png, report.md).
const (
	PictureFile = "transformed.png"
	ReportFile  = "report.json"
)

// Summary is one run's outcome on the validation data.
type Summary struct {
	// FinalAccuracy is after the last epoch; BestAccuracy after the best
	// one (BestEpoch, from 1), whose model the run wrote.
	FinalAccuracy float64 `json:"final_accuracy"`
	BestAccuracy  float64 `json:"best_accuracy"`
	BestEpoch     int     `json:"best_epoch"`
	Seconds       float64 `json:"seconds"`
	Model         string  `json:"model"`
}

// Result compares the classifier alone with the classifier behind a
// spatial transformer.
type Result struct {
	Train    string  `json:"train"`
	Val      string  `json:"val"`
	Examples int     `json:"train_examples"`
	ValSize  int     `json:"val_examples"`
	Epochs   int     `json:"epochs"`
	Batch    int     `json:"batch"`
	LR       float64 `json:"lr"`
	Schedule string  `json:"schedule"`
	Seed     int64   `json:"seed"`
	Plain    Summary `json:"plain"`
	STN      Summary `json:"stn"`
}

// pictureDigits is how many validation digits the picture shows, each
// beside its transformed version, pairsPerRow pairs a row.
const (
	pictureDigits = 32
	pairsPerRow   = 8
)

// Run trains the classifier's architecture twice from the same initial
// weights, on the same data, epochs and seed: as it is, and with
// surgery.InsertSpatialTransformer in front (what graft surgery
// --insert-stn does), each by finetune.Run (what graft finetune does). It
// writes both models, a picture of validation digits beside what the
// trained transformer makes of them, and the report.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Epochs < 1 || o.Batch < 1 || !(o.LR > 0) || o.PerClass < 0 {
		return nil, fmt.Errorf("stn: epochs %d, batch %d, lr %v, per class %d: want at least 1 epoch and 1 example a batch, a positive rate", o.Epochs, o.Batch, o.LR, o.PerClass)
	}
	plan := fileio.Plan{}
	plan.Input(o.Model, "--model")
	plan.OutputDir(o.Out, "-o")
	for _, f := range []string{PictureFile, ReportFile} {
		plan.Output(filepath.Join(o.Out, f), "")
	}
	if err := plan.Check(); err != nil {
		return nil, err
	}
	lock, err := fileio.LockDir(o.Out)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	m, err := onnx.Load(o.Model)
	if err != nil {
		return nil, err
	}
	trainSet, err := dataset.Open(o.Train, dataset.OpenOptions{PerClass: o.PerClass, Seed: o.Seed})
	if err != nil {
		return nil, err
	}
	valSet, err := dataset.Open(o.Val, dataset.OpenOptions{})
	if err != nil {
		return nil, err
	}

	// The same start for both: the classifier's weights redrawn as
	// PyTorch's defaults (graft surgery --init pytorch), then the
	// transformer, at the identity, in front of one copy.
	if err := surgery.Apply(m, surgery.Initialize([]surgery.Rule{{Init: surgery.LinearDefault{}}}, nil, o.Seed)); err != nil {
		return nil, err
	}
	withSTN, err := m.Clone()
	if err != nil {
		return nil, err
	}
	if err := surgery.Apply(withSTN, surgery.InsertSpatialTransformer(surgery.STNOptions{Seed: o.Seed})); err != nil {
		return nil, err
	}

	res := &Result{Train: o.Train, Val: o.Val, Examples: trainSet.Len(), ValSize: valSet.Len(),
		Epochs: o.Epochs, Batch: o.Batch, LR: o.LR, Schedule: o.Schedule, Seed: o.Seed}
	for _, r := range []struct {
		name  string
		model *onnx.Model
		sum   *Summary
	}{{"plain", m, &res.Plain}, {"stn", withSTN, &res.STN}} {
		opts := finetune.DefaultOptions()
		opts.Epochs, opts.Batch, opts.Optimizer, opts.LR, opts.Momentum, opts.Schedule, opts.Seed = o.Epochs, o.Batch, "adam", o.LR, 0, o.Schedule, o.Seed
		opts.Out = filepath.Join(o.Out, r.name, "model.onnx")
		if o.Log != nil {
			name := r.name
			opts.OnEpoch = func(e train.EpochStats) {
				o.Log(fmt.Sprintf("%s epoch %d: loss %.4f, validation accuracy %.4f (%.1f s)", name, e.Epoch+1, e.Loss, e.Val.Accuracy, e.Seconds))
			}
		}
		fr, err := finetune.Run(ctx, r.model, trainSet, valSet, opts)
		if err != nil {
			return nil, fmt.Errorf("stn: %s run: %w", r.name, err)
		}
		h := fr.History
		*r.sum = Summary{FinalAccuracy: h.Epochs[len(h.Epochs)-1].Val.Accuracy, BestAccuracy: h.BestAccuracy,
			BestEpoch: h.BestEpoch + 1, Seconds: fr.Seconds, Model: opts.Out}
		if fr.Stopped {
			return res, ctx.Err()
		}
	}

	picture, err := transformed(res.STN.Model, valSet)
	if err != nil {
		return nil, err
	}
	report, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := fileio.WriteFile(filepath.Join(o.Out, PictureFile), picture); err != nil {
		return nil, err
	}
	if err := fileio.WriteFile(filepath.Join(o.Out, ReportFile), append(report, '\n')); err != nil {
		return nil, err
	}
	return res, nil
}

// transformed draws the first validation digits, each beside what the
// trained transformer of the model at path makes of it.
func transformed(path string, val *dataset.Dataset) ([]byte, error) {
	m, err := onnx.Load(path)
	if err != nil {
		return nil, err
	}
	if err := surgery.Apply(m, surgery.Cut(surgery.STNOutput)); err != nil {
		return nil, err
	}
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		return nil, err
	}
	n := min(pictureDigits, val.Len())
	cfg, err := dataset.ForInput(1, 28, 28).Config(val.Subset(seq(n)), n, false, 0)
	if err != nil {
		return nil, err
	}
	loader, err := dataset.NewLoader(val.Subset(seq(n)), cfg)
	if err != nil {
		return nil, err
	}
	var pixels []float32
	for b, err := range loader.Batches(0) {
		if err != nil {
			return nil, err
		}
		out, err := p.Run(b.X)
		if err != nil {
			return nil, err
		}
		in, tr := b.X.Data().([]float32), out[0].Data().([]float32)
		for k := range b.Labels {
			pixels = append(pixels, in[k*784:(k+1)*784]...)
			pixels = append(pixels, tr[k*784:(k+1)*784]...)
		}
	}
	grid, err := pics.Grid(pixels, 28, 28, 2*pairsPerRow)
	if err != nil {
		return nil, err
	}
	return pics.PNG(grid)
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// String is the report as two lines.
func (r *Result) String() string {
	var b strings.Builder
	for _, s := range []struct {
		name string
		sum  Summary
	}{{"without the transformer", r.Plain}, {"with the transformer   ", r.STN}} {
		fmt.Fprintf(&b, "%s: validation accuracy %.2f%% after %d epochs (best %.2f%%, epoch %d), %.0f s\n",
			s.name, 100*s.sum.FinalAccuracy, r.Epochs, 100*s.sum.BestAccuracy, s.sum.BestEpoch, s.sum.Seconds)
	}
	return b.String()
}
