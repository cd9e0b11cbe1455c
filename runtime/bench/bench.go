// Package bench times the work graft does with a model, as a user would
// see it: inference, an FGSM step, a full training step and a head-only
// training step, on a batch of the model's own input size. graft bench is
// this package plus flag parsing, in the manner of onnxruntime_perf_test.
//
//	m, _ := onnx.Load("resnet18.onnx")
//	r, err := bench.Run(ctx, m, bench.Options{Mode: bench.Infer, Batch: 8, Iters: 20})
//	fmt.Println(r.Median, r.ImagesPerSec, r.PeakRSS)
//
// Each mode runs Warmup untimed iterations first (the first builds the
// graph), then Iters timed ones; the result has every time and their
// median, minimum and maximum.
package bench

import (
	"context"
	"fmt"
	"math/rand"
	goruntime "runtime"
	"slices"
	"time"

	"github.com/graft-dev/graft/attacks"
	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/train"
	"github.com/graft-dev/graft/surgery"
	"gorgonia.org/tensor"
)

// A Mode is the work timed.
type Mode string

// The modes.
const (
	// Infer runs the model forward.
	Infer Mode = "infer"
	// FGSM runs forward, backward to the input and the signed step
	// (attacks.FGSM at eps 8/255).
	FGSM Mode = "fgsm"
	// Train runs a full training step: forward in training mode (batch
	// statistics), backward to every parameter, an SGD update with momentum.
	Train Mode = "train"
	// TrainHead runs a step that trains only the classifier head, as
	// graft finetune does: the frozen backbone runs as inference on fixed
	// weights, and the head is trained on its features.
	TrainHead Mode = "train-head"
)

// Modes lists the modes, for help texts.
var Modes = []Mode{Infer, FGSM, Train, TrainHead}

// Options configure a run; zero values take the defaults.
type Options struct {
	Mode   Mode // default Infer
	Batch  int  // default 1
	Iters  int  // timed iterations, default 10
	Warmup int  // untimed iterations first, default 3
	// Threads sets GOMAXPROCS for the run (the cores graft's kernels
	// spread over), restored after; 0 keeps it.
	Threads int
	Seed    int64 // the random input and labels
}

// A Result is a run's times.
type Result struct {
	Mode    Mode            `json:"mode"`
	Batch   int             `json:"batch"`
	Threads int             `json:"threads"`
	Times   []time.Duration `json:"times_ns"`
	Median  time.Duration   `json:"median_ns"`
	Min     time.Duration   `json:"min_ns"`
	Max     time.Duration   `json:"max_ns"`
	// ImagesPerSec is Batch over the median time.
	ImagesPerSec float64 `json:"images_per_sec"`
	// PeakRSS is the process's peak resident memory at the end, in bytes
	// (-1 where the system does not tell): the run's, when it is all the
	// process did.
	PeakRSS int64 `json:"peak_rss_bytes"`
}

// Run times opts.Mode on m. The input is uniform noise in [0, 1] shaped as
// m's contract says (the batch size aside), the labels random classes.
func Run(ctx context.Context, m *onnx.Model, opts Options) (*Result, error) {
	if opts.Mode == "" {
		opts.Mode = Infer
	}
	opts.Batch, opts.Iters, opts.Warmup = or(opts.Batch, 1), or(opts.Iters, 10), or(opts.Warmup, 3)
	if opts.Batch < 1 || opts.Iters < 1 || opts.Warmup < 0 || opts.Threads < 0 {
		return nil, fmt.Errorf("bench: batch %d, %d iterations, %d warm-ups, %d threads", opts.Batch, opts.Iters, opts.Warmup, opts.Threads)
	}
	if opts.Threads > 0 {
		defer goruntime.GOMAXPROCS(goruntime.GOMAXPROCS(opts.Threads))
	}
	work, err := prepare(m, opts)
	if err != nil {
		return nil, err
	}
	r := &Result{Mode: opts.Mode, Batch: opts.Batch, Threads: goruntime.GOMAXPROCS(0)}
	for i := range opts.Warmup + opts.Iters {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := work(); err != nil {
			return nil, fmt.Errorf("bench: %s: %w", opts.Mode, err)
		}
		if i >= opts.Warmup {
			r.Times = append(r.Times, time.Since(start))
		}
	}
	sorted := slices.Clone(r.Times)
	slices.Sort(sorted)
	r.Min, r.Max, r.Median = sorted[0], sorted[len(sorted)-1], median(sorted)
	r.ImagesPerSec = float64(opts.Batch) / r.Median.Seconds()
	r.PeakRSS = memlimit.PeakRSS()
	return r, nil
}

func or(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// median of sorted times: the mean of the middle two for an even count.
func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// prepare compiles m for the mode and returns one iteration of its work.
func prepare(m *onnx.Model, opts Options) (func() error, error) {
	c, err := contract.Derive(m)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	x, labels, err := input(c, opts)
	if err != nil {
		return nil, err
	}
	switch opts.Mode {
	case Infer:
		p, err := runtime.Compile(m, runtime.Options{FixedWeights: true})
		if err != nil {
			return nil, err
		}
		return func() error { _, err := p.Run(x); return err }, nil
	case FGSM:
		clf, err := attacks.NewClassifier(m, runtime.Options{FixedWeights: true})
		if err != nil {
			return nil, err
		}
		crit := attacks.Misclassification(labels)
		return func() error {
			_, err := attacks.FGSM{}.Perturb(clf, x, crit, []float64{8.0 / 255})
			return err
		}, nil
	case Train, TrainHead:
		params, err := trained(m, opts.Mode)
		if err != nil {
			return nil, err
		}
		// A head-only step runs as graft finetune runs it: the frozen
		// backbone as inference on fixed weights, the head trained on its
		// features (train.SplitAtHead); a model that cannot be split there
		// takes whole-model steps with the backbone frozen.
		var backbone *runtime.Program
		if opts.Mode == TrainHead {
			if extractor, head, err := train.SplitAtHead(m, params); err == nil {
				if backbone, err = runtime.Compile(extractor, runtime.Options{FixedWeights: true}); err != nil {
					return nil, err
				}
				m = head
			}
		}
		p, err := runtime.Compile(m, runtime.Options{Seed: opts.Seed})
		if err != nil {
			return nil, err
		}
		opt, err := train.NewSGD(train.SGDOptions{LR: 1e-3, Momentum: 0.9})
		if err != nil {
			return nil, err
		}
		var ps []*runtime.Param
		for _, name := range params {
			ps = append(ps, p.Param(name))
		}
		targets, err := p.OneHot(labels, classes(c))
		if err != nil {
			return nil, err
		}
		loss, on := runtime.LossFor(c.Output)
		req := &runtime.Request{Inputs: []*tensor.Dense{x}, Targets: targets, Loss: loss, LossOn: on, Train: true, Params: params}
		return func() error {
			if backbone != nil {
				features, err := backbone.Run(x)
				if err != nil {
					return err
				}
				req.Inputs = features
			}
			res, err := p.Step(req)
			if err != nil {
				return err
			}
			return opt.Update(ps, res.ParamGrads, 1e-3)
		}, nil
	}
	return nil, fmt.Errorf("bench: mode %q: want infer, fgsm, train or train-head", opts.Mode)
}

// trained names the parameters a training mode updates: every parameter
// but BatchNormalization statistics, or the head's.
func trained(m *onnx.Model, mode Mode) ([]string, error) {
	var names []string
	if mode == TrainHead {
		h, err := surgery.FindHead(m.Graph)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		for _, p := range surgery.Params(m) {
			if p.InHead {
				names = append(names, p.Name)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("bench: the head %s has no parameters", h.Node)
		}
		return names, nil
	}
	for _, p := range surgery.Params(m) {
		if !p.IsBuffer() {
			names = append(names, p.Name)
		}
	}
	return names, nil
}

// input returns a batch of noise the contract's shape and random labels.
func input(c *contract.Contract, opts Options) (*tensor.Dense, []int, error) {
	in := c.Input
	if in.Layout != contract.NCHW {
		return nil, nil, fmt.Errorf("bench: input %q has shape %s: graft bench feeds image batches [N, C, H, W]", in.Name, in.Shape)
	}
	rng := rand.New(rand.NewSource(opts.Seed))
	x := make([]float32, opts.Batch*in.Channels*in.Height*in.Width)
	for i := range x {
		x[i] = rng.Float32()
	}
	k := classes(c)
	labels := make([]int, opts.Batch)
	for i := range labels {
		labels[i] = rng.Intn(k)
	}
	return tensor.New(tensor.WithShape(opts.Batch, in.Channels, in.Height, in.Width), tensor.WithBacking(x)), labels, nil
}

// classes is the model's class count, 1 when its output shape does not say.
func classes(c *contract.Contract) int { return max(c.Output.NumClasses, 1) }
