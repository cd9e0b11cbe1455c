package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

// ErrStopped is wrapped by the error Fit returns when its context is
// cancelled (Ctrl-C): the epochs completed so far are in the History, and
// the parameters hold the last completed step.
var ErrStopped = errors.New("training stopped")

// ErrNonFinite is wrapped by the *NonFiniteError Fit returns when a loss is
// NaN or infinite.
var ErrNonFinite = errors.New("the loss is not finite")

// A NonFiniteError reports a NaN or infinite loss: of a training step, or
// of the validation after an epoch (Validation set, Batch -1). Epoch and
// Batch count from 0; the message counts from 1. A training step's update
// is not applied, but the BatchNormalization running statistics its
// forward pass updated keep what it computed.
type NonFiniteError struct {
	Epoch, Batch int
	Validation   bool
	Loss         float64
	// Updated is true when this run had updated the parameters before the
	// loss went bad: only then can a lower learning rate help.
	Updated bool
	// BadInput is true when the batch's input holds a NaN or infinity,
	// first in example Example of the batch (counting from 0); Perturbed
	// says the batch was Config.Perturb's.
	BadInput  bool
	Example   int
	Perturbed bool
}

func (e *NonFiniteError) Error() string {
	where := fmt.Sprintf("epoch %d, batch %d", e.Epoch+1, e.Batch+1)
	if e.Validation {
		where = fmt.Sprintf("validation after epoch %d", e.Epoch+1)
	}
	var why string
	switch {
	case e.BadInput && e.Perturbed:
		why = fmt.Sprintf("the perturbed input of example %d of the batch is not finite", e.Example+1)
	case e.BadInput:
		why = fmt.Sprintf("the input of example %d of the batch is not finite", e.Example+1)
	case !e.Updated:
		why = "before any update, so the model or its input is to blame, not the learning rate"
	default:
		why = "lower the learning rate?"
	}
	return fmt.Sprintf("%s: the loss is %v (%s); training stopped, checkpoints already saved are kept", where, e.Loss, why)
}

func (e *NonFiniteError) Unwrap() error { return ErrNonFinite }

// Config configures Fit.
type Config struct {
	// Epochs is the number of epochs to have trained when Fit returns:
	// it runs epochs StartEpoch .. Epochs-1 (counting from 0).
	Epochs int
	// StartEpoch is the first epoch to run, when resuming: the schedule and
	// the sources' shuffles continue from there.
	StartEpoch int
	Optimizer  Optimizer
	// Schedule sets each epoch's learning rate; nil keeps it constant.
	Schedule Schedule
	// Params names the trainable parameters.
	Params []string
	// Loss is the loss to minimise and LossOn the value it reads (empty:
	// the first output); runtime.NoLoss picks both by the model's contract
	// (contract.Derive, runtime.LossFor).
	Loss   runtime.Loss
	LossOn string
	// Classes is the number of classes; 0 takes it from the model's output
	// shape.
	Classes int
	// OnBatch, if set, is called after every training step.
	OnBatch func(BatchStats)
	// OnEpoch, if set, is called after every epoch, validation included.
	OnEpoch func(EpochStats)
	// Checkpoint, if set, is called after every epoch, after OnEpoch, to
	// save what the caller wants saved (Program.WriteBack then onnx.Save;
	// SaveState; History.Save). best is true when the epoch has the best
	// validation accuracy so far (the best training accuracy if there is no
	// validation source). An error stops training and is returned.
	Checkpoint func(epoch int, stats EpochStats, best bool) error
	// Perturb, if set, replaces each training batch before its step:
	// adversarial examples or noise for hardening a model. It sees the
	// parameters as they are at that step.
	Perturb func(epoch int, b dataset.Batch) (dataset.Batch, error)
	// Prior holds the epochs of an earlier run being resumed: the returned
	// History continues it, and "best" compares against its best epoch.
	Prior *History
	// Workers, when above 1, runs each training step data-parallel, as
	// PyTorch's nn.DataParallel does: the batch is split into Workers
	// shards (torch.chunk's sizes: ceil(n/Workers), the last smaller), each
	// runs forward and backward at once on a replica of the program
	// (runtime.Program.Replica, sharing the parameters), and their
	// gradients are summed in shard order, weighted by shard size, before
	// one update. The loss and gradients are those of the whole batch up
	// to float rounding, except that training BatchNormalization uses each
	// shard's own statistics, and only the first shard updates the running
	// statistics. For a given Workers, reruns are bit-identical.
	Workers int
}

// BatchStats describe one training step, for progress reports.
type BatchStats struct {
	Epoch, Batch int // counting from 0
	// Seen counts the examples of the epoch so far, of Total.
	Seen, Total int
	// Loss is the step's mean loss; RunningLoss and RunningAccuracy are
	// the means over the epoch so far.
	Loss, RunningLoss, RunningAccuracy float64
	ImagesPerSec                       float64
	LR                                 float64
}

// EpochStats describe one epoch.
type EpochStats struct {
	Epoch int     `json:"epoch"` // counting from 0
	LR    float64 `json:"lr"`
	// Loss and Accuracy are the means over the epoch's training steps, in
	// training mode (as the parameters changed).
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
	// Val is the evaluation on the validation source after the epoch, in
	// inference mode; nil without one.
	Val          *EvalStats `json:"val,omitempty"`
	Examples     int        `json:"examples"`
	Seconds      float64    `json:"seconds"` // training and validation
	ImagesPerSec float64    `json:"images_per_sec"`
}

// EvalStats are a validation's mean loss and accuracy.
type EvalStats struct {
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
}

// A History is the record of a training run, written as metrics.json.
type History struct {
	Epochs []EpochStats `json:"epochs"`
	// BestEpoch is the Epoch of the best entry, -1 if none.
	BestEpoch    int     `json:"best_epoch"`
	BestAccuracy float64 `json:"best_accuracy"`
}

// Save writes h as indented JSON, atomically.
func (h *History) Save(path string) error {
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return fmt.Errorf("save history: %w", err)
	}
	return fileio.WriteFile(path, append(b, '\n'))
}

// LoadHistory reads a History written by Save.
func LoadHistory(path string) (*History, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	h := &History{BestEpoch: -1}
	if err := json.Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("load history: %s: %w", path, err)
	}
	return h, nil
}

// Clone returns a copy of h; for a nil h, an empty history (BestEpoch -1).
func (h *History) Clone() *History {
	c := &History{BestEpoch: -1}
	if h != nil && len(h.Epochs) > 0 {
		c.BestEpoch, c.BestAccuracy = h.BestEpoch, h.BestAccuracy
		c.Epochs = append(c.Epochs, h.Epochs...)
	}
	return c
}

// lossFor returns the loss for training p's model and the value it reads,
// by the model's contract (runtime.LossFor).
func lossFor(p *runtime.Program) (runtime.Loss, string, error) {
	c, err := contract.Derive(p.Model())
	if err != nil {
		return runtime.NoLoss, "", err
	}
	loss, on := runtime.LossFor(c.Output)
	return loss, on, nil
}

// classesOf returns the model's class count from its first output's shape.
func classesOf(p *runtime.Program) (int, error) {
	outs := p.Model().Graph.Outputs
	if len(outs) > 0 && outs[0].Type != nil {
		if s := outs[0].Type.Shape; len(s) == 2 && s[1].Known() {
			return int(s[1].Value), nil
		}
	}
	return 0, fmt.Errorf("the number of classes is not known from the model's output shape; set it")
}

// Fit trains p's parameters cfg.Params on train for the configured epochs,
// evaluating on val (if not nil) after each. It returns the History of the
// completed epochs with any error: wrapping ErrStopped when ctx is cancelled
// (checked between batches: the current step finishes, the epoch in
// progress is not recorded), a *NonFiniteError when a loss is NaN or
// infinite, or the error of a source, step or Checkpoint.
func Fit(ctx context.Context, p *runtime.Program, train, val dataset.Source, cfg Config) (*History, error) {
	h := cfg.Prior.Clone()
	if cfg.Optimizer == nil {
		return h, fmt.Errorf("fit: no optimizer")
	}
	if len(cfg.Params) == 0 {
		return h, fmt.Errorf("fit: no parameters to train")
	}
	if train == nil {
		return h, fmt.Errorf("fit: no training data")
	}
	if cfg.StartEpoch < 0 {
		return h, fmt.Errorf("fit: start epoch %d", cfg.StartEpoch)
	}
	var params []*runtime.Param
	listed := map[string]bool{}
	for _, name := range cfg.Params {
		prm := p.Param(name)
		if prm == nil {
			return h, fmt.Errorf("fit: the model has no parameter %q", name)
		}
		if listed[name] {
			return h, fmt.Errorf("fit: parameter %q is listed twice", name)
		}
		listed[name] = true
		params = append(params, prm)
	}
	if cfg.Classes == 0 {
		k, err := classesOf(p)
		if err != nil {
			return h, fmt.Errorf("fit: %w", err)
		}
		cfg.Classes = k
	}
	if cfg.Loss == runtime.NoLoss {
		var err error
		if cfg.Loss, cfg.LossOn, err = lossFor(p); err != nil {
			return h, fmt.Errorf("fit: %w", err)
		}
	}
	sched := cfg.Schedule
	if sched == nil {
		sched = Constant{}
	}
	if err := checkSchedule(sched, cfg.Optimizer.LR(), cfg.StartEpoch, cfg.Epochs); err != nil {
		return h, fmt.Errorf("fit: %w", err)
	}
	if cfg.Workers < 0 {
		return h, fmt.Errorf("fit: %d workers", cfg.Workers)
	}
	var replicas []*runtime.Program // the programs of shards 1.. (shard 0 runs on p)
	for i := 1; i < cfg.Workers; i++ {
		replicas = append(replicas, p.Replica(i))
	}
	updated := false
	dt := dtypeOf(p)
	for epoch := cfg.StartEpoch; epoch < cfg.Epochs; epoch++ {
		lr := sched.LR(cfg.Optimizer.LR(), epoch)
		start := time.Now()
		var sumLoss float64
		var correct, seen, batch int
		for b, err := range train.Batches(epoch) {
			if err != nil {
				return h, fmt.Errorf("fit: epoch %d: %w", epoch+1, err)
			}
			if err := context.Cause(ctx); err != nil {
				return h, fmt.Errorf("%w in epoch %d after %d batches: %w", ErrStopped, epoch+1, batch, err)
			}
			if cfg.Perturb != nil {
				if b, err = cfg.Perturb(epoch, b); err != nil {
					return h, fmt.Errorf("fit: epoch %d, batch %d: %w", epoch+1, batch+1, err)
				}
			}
			res, err := step(p, replicas, b, dt, cfg)
			if err != nil {
				return h, fmt.Errorf("fit: epoch %d, batch %d: %w", epoch+1, batch+1, err)
			}
			if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
				i := firstNonFinite(b.X)
				return h, &NonFiniteError{Epoch: epoch, Batch: batch, Loss: res.Loss, Updated: updated,
					BadInput: i >= 0, Example: i, Perturbed: cfg.Perturb != nil}
			}
			if err := cfg.Optimizer.Update(params, res.ParamGrads, lr); err != nil {
				return h, fmt.Errorf("fit: epoch %d, batch %d: %w", epoch+1, batch+1, err)
			}
			updated = true
			n := len(b.Labels)
			sumLoss += res.Loss * float64(n)
			correct += countCorrect(res.Outputs[0], b.Labels, nil, nil)
			seen += n
			if cfg.OnBatch != nil {
				cfg.OnBatch(BatchStats{
					Epoch: epoch, Batch: batch, Seen: seen, Total: train.Len(),
					Loss: res.Loss, RunningLoss: sumLoss / float64(seen),
					RunningAccuracy: float64(correct) / float64(seen),
					ImagesPerSec:    rate(seen, time.Since(start)),
					LR:              lr,
				})
			}
			batch++
		}
		if seen == 0 {
			return h, fmt.Errorf("fit: epoch %d has no training examples", epoch+1)
		}
		stats := EpochStats{
			Epoch: epoch, LR: lr,
			Loss: sumLoss / float64(seen), Accuracy: float64(correct) / float64(seen),
			Examples: seen, ImagesPerSec: rate(seen, time.Since(start)),
		}
		score := stats.Accuracy
		if val != nil {
			loss, acc, _, err := evaluate(ctx, p, val, cfg.Classes, cfg.Loss, cfg.LossOn)
			if errors.Is(err, ErrStopped) {
				return h, fmt.Errorf("%w in the validation of epoch %d: %w", ErrStopped, epoch+1, context.Cause(ctx))
			}
			if err != nil {
				return h, fmt.Errorf("fit: validation after epoch %d: %w", epoch+1, err)
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return h, &NonFiniteError{Epoch: epoch, Batch: -1, Validation: true, Loss: loss, Updated: updated}
			}
			stats.Val = &EvalStats{Loss: loss, Accuracy: acc}
			score = acc
		}
		stats.Seconds = time.Since(start).Seconds()
		best := h.BestEpoch < 0 || score > h.BestAccuracy
		if best {
			h.BestEpoch, h.BestAccuracy = epoch, score
		}
		h.Epochs = append(h.Epochs, stats)
		if cfg.OnEpoch != nil {
			cfg.OnEpoch(stats)
		}
		if cfg.Checkpoint != nil {
			if err := cfg.Checkpoint(epoch, stats, best); err != nil {
				return h, fmt.Errorf("fit: checkpoint after epoch %d: %w", epoch+1, err)
			}
		}
	}
	return h, nil
}

// firstNonFinite returns the first example of the batch x [n, ...] holding
// a NaN or infinity, or -1.
func firstNonFinite(x *tensor.Dense) int {
	n := x.Shape()[0]
	switch d := x.Data().(type) {
	case []float32:
		for i, v := range d {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return i / (len(d) / n)
			}
		}
	case []float64:
		for i, v := range d {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return i / (len(d) / n)
			}
		}
	}
	return -1
}

// rate returns n per second of d (0 for no time).
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Evaluate runs p in inference mode over src's first-epoch batches and
// returns the mean loss (the loss of the model's contract, see
// runtime.LossFor), the accuracy, and each
// class's accuracy (recall; NaN for classes without examples). classes 0
// takes the count from the model's output shape.
func Evaluate(p *runtime.Program, src dataset.Source, classes int) (loss, acc float64, perClass []float64, err error) {
	if classes == 0 {
		if classes, err = classesOf(p); err != nil {
			return 0, 0, nil, fmt.Errorf("evaluate: %w", err)
		}
	}
	lossKind, on, err := lossFor(p)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("evaluate: %w", err)
	}
	return evaluate(context.Background(), p, src, classes, lossKind, on)
}

func evaluate(ctx context.Context, p *runtime.Program, src dataset.Source, classes int, lossKind runtime.Loss, lossOn string) (loss, acc float64, perClass []float64, err error) {
	dt := dtypeOf(p)
	hits := make([]int, classes)
	counts := make([]int, classes)
	var sum float64
	var correct, seen, batches int
	for b, err := range src.Batches(0) {
		if err != nil {
			return 0, 0, nil, err
		}
		if ctx.Err() != nil {
			return 0, 0, nil, ErrStopped
		}
		targets, err := p.OneHot(b.Labels, classes)
		if err != nil {
			return 0, 0, nil, err
		}
		res, err := p.Step(&runtime.Request{Inputs: []*tensor.Dense{convert(b.X, dt)}, Targets: targets, Loss: lossKind, LossOn: lossOn})
		if err != nil {
			return 0, 0, nil, err
		}
		if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) {
			if i := firstNonFinite(b.X); i >= 0 {
				return 0, 0, nil, fmt.Errorf("the input of example %d of batch %d is not finite", i+1, batches+1)
			}
		}
		batches++
		sum += res.Loss * float64(len(b.Labels))
		correct += countCorrect(res.Outputs[0], b.Labels, hits, counts)
		seen += len(b.Labels)
	}
	if seen == 0 {
		return 0, 0, nil, fmt.Errorf("no examples")
	}
	perClass = make([]float64, classes)
	for c := range perClass {
		perClass[c] = math.NaN()
		if counts[c] > 0 {
			perClass[c] = float64(hits[c]) / float64(counts[c])
		}
	}
	return sum / float64(seen), float64(correct) / float64(seen), perClass, nil
}

// countCorrect counts the rows of out [n, k] whose largest value is at the
// label, tallying per class into hits and counts when they are not nil.
func countCorrect(out *tensor.Dense, labels []int, hits, counts []int) int {
	k := out.Shape()[len(out.Shape())-1]
	var row func(i int) int
	switch d := out.Data().(type) {
	case []float32:
		row = func(i int) int { return contract.Argmax(d[i*k : (i+1)*k]) }
	case []float64:
		row = func(i int) int { return contract.Argmax(d[i*k : (i+1)*k]) }
	}
	n := 0
	for i, l := range labels {
		ok := row(i) == l
		if ok {
			n++
		}
		if counts != nil {
			counts[l]++
			if ok {
				hits[l]++
			}
		}
	}
	return n
}

// dtypeOf returns the element type p computes in.
func dtypeOf(p *runtime.Program) tensor.Dtype {
	if ps := p.Params(); len(ps) > 0 {
		return ps[0].Value.Dtype()
	}
	t, _ := p.OneHot([]int{0}, 1)
	return t.Dtype()
}

// convert returns x in element type dt (x itself if it is already).
func convert(x *tensor.Dense, dt tensor.Dtype) *tensor.Dense {
	if x.Dtype() == dt {
		return x
	}
	switch d := x.Data().(type) {
	case []float32:
		if dt == tensor.Float64 {
			out := make([]float64, len(d))
			for i, v := range d {
				out[i] = float64(v)
			}
			return tensor.New(tensor.WithShape(x.Shape().Clone()...), tensor.WithBacking(out))
		}
	case []float64:
		if dt == tensor.Float32 {
			out := make([]float32, len(d))
			for i, v := range d {
				out[i] = float32(v)
			}
			return tensor.New(tensor.WithShape(x.Shape().Clone()...), tensor.WithBacking(out))
		}
	}
	return x // the program reports the mismatch
}

// step runs one training step's forward and backward pass on batch b: on
// p alone, or split into shards run at once on p and its replicas, their
// gradients summed in shard order, weighted by shard size (see
// Config.Workers). The result's loss is the batch's mean loss and its first
// output the batch's, rows in order.
func step(p *runtime.Program, replicas []*runtime.Program, b dataset.Batch, dt tensor.Dtype, cfg Config) (*runtime.Result, error) {
	request := func(prog *runtime.Program, x *tensor.Dense, labels []int) (*runtime.Request, error) {
		targets, err := prog.OneHot(labels, cfg.Classes)
		if err != nil {
			return nil, err
		}
		return &runtime.Request{Inputs: []*tensor.Dense{convert(x, dt)}, Targets: targets,
			Loss: cfg.Loss, LossOn: cfg.LossOn, Train: true, Params: cfg.Params}, nil
	}
	n := len(b.Labels)
	if len(replicas) == 0 || n < 2 {
		req, err := request(p, b.X, b.Labels)
		if err != nil {
			return nil, err
		}
		return p.Step(req)
	}
	// torch.chunk's split: shards of ceil(n/workers), the last smaller.
	size := (n + len(replicas)) / (len(replicas) + 1)
	var shards []dataset.Batch
	for lo := 0; lo < n; lo += size {
		hi := min(lo+size, n)
		shards = append(shards, dataset.Batch{X: rows(b.X, lo, hi), Labels: b.Labels[lo:hi]})
	}
	progs := append([]*runtime.Program{p}, replicas...)
	results := make([]*runtime.Result, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, sh := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := request(progs[i], sh.X, sh.Labels)
			if err == nil {
				results[i], err = progs[i].Step(req)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("shard %d of %d: %w", i+1, len(shards), err)
		}
	}
	// Reduce in shard order, so a given number of workers always sums the
	// same way.
	out := &runtime.Result{ParamGrads: map[string]*tensor.Dense{}}
	var outputs []*tensor.Dense
	for i, r := range results {
		w := float64(len(shards[i].Labels)) / float64(n)
		out.Loss += w * r.Loss
		outputs = append(outputs, r.Outputs[0])
		for name, g := range r.ParamGrads {
			acc := out.ParamGrads[name]
			if acc == nil {
				acc = tensor.New(tensor.WithShape(g.Shape().Clone()...), tensor.Of(g.Dtype()))
				out.ParamGrads[name] = acc
			}
			addScaled(acc, g, w)
		}
	}
	out.Outputs = []*tensor.Dense{concatRows(outputs)}
	return out, nil
}

// rows returns rows [lo, hi) of x, a view sharing its data.
func rows(x *tensor.Dense, lo, hi int) *tensor.Dense {
	shape := x.Shape().Clone()
	per := shape.TotalSize() / shape[0]
	shape[0] = hi - lo
	switch d := x.Data().(type) {
	case []float32:
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(d[lo*per:hi*per]))
	case []float64:
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(d[lo*per:hi*per]))
	}
	panic(fmt.Sprintf("train: inputs of %v", x.Dtype()))
}

// addScaled adds w*g to acc, in acc's element type.
func addScaled(acc, g *tensor.Dense, w float64) {
	switch a := acc.Data().(type) {
	case []float32:
		for i, x := range g.Data().([]float32) {
			a[i] += float32(w) * x
		}
	case []float64:
		for i, x := range g.Data().([]float64) {
			a[i] += w * x
		}
	}
}

// concatRows joins [n_i, ...] tensors along the first dimension.
func concatRows(parts []*tensor.Dense) *tensor.Dense {
	shape := parts[0].Shape().Clone()
	shape[0] = 0
	for _, t := range parts {
		shape[0] += t.Shape()[0]
	}
	switch parts[0].Data().(type) {
	case []float32:
		var d []float32
		for _, t := range parts {
			d = append(d, t.Data().([]float32)...)
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(d))
	default:
		var d []float64
		for _, t := range parts {
			d = append(d, t.Data().([]float64)...)
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(d))
	}
}
