package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/train"
	"github.com/graft-dev/graft/surgery"
)

// A finetuneJob is one fine-tuning run, shared by graft finetune and graft
// demo.
type finetuneJob struct {
	model   *onnx.Model
	classes []string
	train   dataset.Source
	val     dataset.Source // may be nil
	// augmented says the training data is randomly augmented, which rules
	// out computing the frozen backbone's features once.
	augmented bool
	noCache   bool
	harden    hardening

	replaceHead int    // 0: replace only if the class count differs
	headNode    string // --head
	freeze      []string
	unfreeze    []string

	epochs      int
	optimizer   string // sgd or adam
	lr          float64
	momentum    float64
	weightDecay float64
	schedule    string // none, step:SIZE,GAMMA or cosine
	seed        int64

	out        string // the best model's path
	metricsDir string
	resume     bool

	progress io.Writer
	terminal bool
}

// finetuneResult is what a run produced.
type finetuneResult struct {
	history   *train.History
	trainable []string
	cached    bool
	head      *surgery.Head
	stopped   bool // interrupted (Ctrl-C): the best checkpoint is kept
	seconds   float64
}

func (j *finetuneJob) checkpointDir() string { return filepath.Join(j.metricsDir, "checkpoint") }

// prepare edits the model: a new head when the class count differs (or
// asked), then freezing and unfreezing.
func (j *finetuneJob) prepare() error {
	k := len(j.classes)
	if k < 2 {
		return fmt.Errorf("fine-tuning needs at least 2 classes, the data has %d", k)
	}
	var h *surgery.Head
	var err error
	if j.headNode != "" {
		h, err = surgery.HeadAt(j.model.Graph, j.headNode)
	} else {
		h, err = surgery.FindHead(j.model.Graph)
	}
	if err != nil {
		return err
	}
	var edits []surgery.Edit
	if j.replaceHead > 0 || int(h.OutFeatures) != k {
		if j.replaceHead > 0 && j.replaceHead != k {
			return fmt.Errorf("--replace-head %d but the data has %d classes", j.replaceHead, k)
		}
		edits = append(edits, surgery.ReplaceHead(k, surgery.HeadOptions{Node: j.headNode, Seed: j.seed}))
	}
	for _, s := range j.freeze {
		sel, err := surgery.ParseSelector(s)
		if err != nil {
			return usage("--freeze: %v", err)
		}
		edits = append(edits, named("--freeze "+s, surgery.Freeze(sel)))
	}
	for _, s := range j.unfreeze {
		sel, err := surgery.ParseSelector(s)
		if err != nil {
			return usage("--unfreeze: %v", err)
		}
		edits = append(edits, named("--unfreeze "+s, surgery.Unfreeze(sel)))
	}
	if len(edits) == 0 {
		return nil
	}
	return surgery.Apply(j.model, edits...)
}

// run fine-tunes the model, saving the best model to j.out after every
// epoch that improves validation accuracy, and the resumable state to the
// checkpoint folder.
func (j *finetuneJob) run(ctx context.Context) (*finetuneResult, error) {
	start := time.Now()
	if err := j.prepare(); err != nil {
		return nil, err
	}
	trainable, err := surgery.Trainable(j.model)
	if err != nil {
		return nil, err
	}
	if len(trainable) == 0 {
		return nil, fmt.Errorf("no trainable parameters: everything is frozen")
	}
	res := &finetuneResult{trainable: trainable}
	res.head, _ = surgery.FindHead(j.model.Graph)
	p, err := runtime.Compile(j.model, runtime.Options{Seed: j.seed})
	if err != nil {
		return nil, err
	}
	opt, err := j.newOptimizer()
	if err != nil {
		return nil, err
	}
	sched, err := j.newSchedule()
	if err != nil {
		return nil, err
	}
	var prior *train.History
	startEpoch := 0
	if j.resume {
		prior, startEpoch, err = j.loadCheckpoint(p, opt)
		if err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(j.checkpointDir(), 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint folder: %w", err)
	}
	var history *train.History
	if err := j.harden.check(); err != nil {
		return nil, err
	}
	cfg := train.Config{
		Epochs: j.epochs, StartEpoch: startEpoch, Optimizer: opt, Schedule: sched,
		Params: trainable, Classes: len(j.classes), Prior: prior,
		OnBatch: j.onBatch, OnEpoch: j.onEpoch,
		Checkpoint: func(epoch int, stats train.EpochStats, best bool) error {
			return j.saveCheckpoint(p, opt, history, epoch, stats, best)
		},
	}
	if j.harden.active() {
		cfg.Perturb = j.harden.perturb(p, j.seed)
	}
	// history is filled as epochs end; the checkpoint callback records it.
	history = &train.History{BestEpoch: -1}
	if prior != nil {
		history = prior
	}
	trainSrc, valSrc := j.train, j.val
	headOnly := res.head != nil && onlyHead(trainable, res.head)
	// Perturbed inputs change the backbone's features: no cache then.
	if headOnly && !j.augmented && !j.noCache && !j.harden.active() {
		extractor, headModel, err := train.SplitAtHead(j.model, trainable)
		if err != nil {
			return nil, err
		}
		ep, err := runtime.Compile(extractor, runtime.Options{})
		if err != nil {
			return nil, err
		}
		hp, err := runtime.Compile(headModel, runtime.Options{Seed: j.seed})
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(j.progress, "computing the frozen backbone's features once (%d training", trainSrc.Len())
		if valSrc != nil {
			fmt.Fprintf(j.progress, ", %d validation", valSrc.Len())
		}
		fmt.Fprintln(j.progress, " examples)")
		if trainSrc, err = train.CacheFeatures(ctx, ep, trainSrc, nil); err != nil {
			return nil, j.finish(res, err, start)
		}
		if valSrc != nil {
			if valSrc, err = train.CacheFeatures(ctx, ep, valSrc, nil); err != nil {
				return nil, j.finish(res, err, start)
			}
		}
		res.cached = true
		res.history, err = train.FitHeadOnFeatures(ctx, p, hp, trainSrc, valSrc, cfg)
		return res, j.finish(res, err, start)
	}
	res.history, err = train.Fit(ctx, p, trainSrc, valSrc, cfg)
	return res, j.finish(res, err, start)
}

// finish turns an interruption into a clean stop and writes the plot.
func (j *finetuneJob) finish(res *finetuneResult, err error, start time.Time) error {
	res.seconds = time.Since(start).Seconds()
	if errors.Is(err, train.ErrStopped) {
		res.stopped = true
		err = nil
	}
	if res.history != nil && len(res.history.Epochs) > 0 {
		if perr := writeTrainingPlot(filepath.Join(j.metricsDir, "training.png"), res.history); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

func onlyHead(trainable []string, h *surgery.Head) bool {
	head := map[string]bool{h.Weight.Name: true}
	for _, n := range []*onnx.Node{h.Node, h.BiasAdd} {
		if n != nil {
			for _, v := range n.Inputs {
				if v != nil && v.IsConst() {
					head[v.Name] = true
				}
			}
		}
	}
	for _, t := range trainable {
		if !head[t] {
			return false
		}
	}
	return true
}

func (j *finetuneJob) newOptimizer() (train.Optimizer, error) {
	switch j.optimizer {
	case "sgd", "":
		return train.NewSGD(train.SGDOptions{LR: j.lr, Momentum: j.momentum, WeightDecay: j.weightDecay})
	case "adam":
		return train.NewAdam(train.AdamOptions{LR: j.lr, WeightDecay: j.weightDecay})
	case "adamw":
		return train.NewAdamW(train.AdamOptions{LR: j.lr, WeightDecay: j.weightDecay})
	}
	return nil, usage("--optimizer %q: want sgd, adam or adamw", j.optimizer)
}

func (j *finetuneJob) newSchedule() (train.Schedule, error) {
	s := j.schedule
	switch {
	case s == "" || s == "none":
		return train.Constant{}, nil
	case s == "cosine":
		return train.CosineAnnealingLR{TMax: j.epochs}, nil
	case strings.HasPrefix(s, "step:"):
		var size int
		var gamma float64
		if _, err := fmt.Sscanf(strings.TrimPrefix(s, "step:"), "%d,%g", &size, &gamma); err != nil || size < 1 {
			return nil, usage("--schedule %q: want step:SIZE,GAMMA (e.g. step:7,0.1)", s)
		}
		return train.StepLR{StepSize: size, Gamma: gamma}, nil
	}
	return nil, usage("--schedule %q: want none, cosine or step:SIZE,GAMMA", s)
}

// saveCheckpoint writes, after every epoch, the resumable state (the
// current model, the optimizer's state and the history so far) and, when
// the epoch is the best yet, the output model.
func (j *finetuneJob) saveCheckpoint(p *runtime.Program, opt train.Optimizer, h *train.History, epoch int, stats train.EpochStats, best bool) error {
	h.Epochs = append(h.Epochs, stats)
	if best {
		h.BestEpoch = stats.Epoch
		if stats.Val != nil {
			h.BestAccuracy = stats.Val.Accuracy
		} else {
			h.BestAccuracy = stats.Accuracy
		}
	}
	if err := p.WriteBack(); err != nil {
		return err
	}
	dir := j.checkpointDir()
	if err := onnx.Save(j.model, filepath.Join(dir, "last.onnx")); err != nil {
		return err
	}
	if err := train.SaveState(filepath.Join(dir, "optimizer.state"), opt); err != nil {
		return err
	}
	if err := h.Save(filepath.Join(j.metricsDir, "metrics.json")); err != nil {
		return err
	}
	if best {
		return onnx.Save(j.model, j.out)
	}
	return nil
}

// loadCheckpoint restores the last epoch's parameters, optimizer state and
// history for --resume.
func (j *finetuneJob) loadCheckpoint(p *runtime.Program, opt train.Optimizer) (*train.History, int, error) {
	dir := j.checkpointDir()
	h, err := train.LoadHistory(filepath.Join(j.metricsDir, "metrics.json"))
	if err != nil {
		return nil, 0, fmt.Errorf("--resume: %w", err)
	}
	last, err := onnx.Load(filepath.Join(dir, "last.onnx"))
	if err != nil {
		return nil, 0, fmt.Errorf("--resume: %w", err)
	}
	lp, err := runtime.Compile(last, runtime.Options{})
	if err != nil {
		return nil, 0, fmt.Errorf("--resume: %w", err)
	}
	for _, prm := range p.Params() {
		src := lp.Param(prm.Name)
		if src == nil || !src.Value.Shape().Eq(prm.Value.Shape()) {
			return nil, 0, fmt.Errorf("--resume: the checkpoint in %s does not match this model (parameter %q)", dir, prm.Name)
		}
		copy(prm.Value.Data().([]float32), src.Value.Data().([]float32))
	}
	if err := train.LoadState(filepath.Join(dir, "optimizer.state"), opt); err != nil {
		return nil, 0, fmt.Errorf("--resume: %w", err)
	}
	return h, len(h.Epochs), nil
}
