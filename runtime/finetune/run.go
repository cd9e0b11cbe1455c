package finetune

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/train"
	"github.com/graft-dev/graft/surgery"
)

// The files Run writes into Options.Dir, besides the model at Options.Out.
const (
	MetricsFile   = "metrics.json"
	PlotFile      = "training.png"
	ReportFile    = "report.md"
	CheckpointDir = "checkpoint"
)

// ErrNothingSaved is returned (wrapped) when the run is stopped before its
// first epoch ends: no model was written.
var ErrNothingSaved = errors.New("stopped before the first epoch ended: nothing was written")

// A Result is what a run produced.
type Result struct {
	// History holds the completed epochs, a resumed run's earlier ones
	// included; BestEpoch is the epoch whose model Out holds.
	History *train.History
	// Contract is the contract stored in the model written: the
	// preprocessing the data was fed with and the class names.
	Contract *contract.Contract
	// Head is the classifier head after any replacement.
	Head *surgery.Head
	// Trainable names the parameters trained.
	Trainable []string
	// Train and Val are the training and validation data sets used (after
	// a split); nil for RunOnFeatures.
	Train, Val *dataset.Dataset
	// TrainFeatures and ValFeatures are the features the head trained on
	// when Cached: Run's cache, or RunOnFeatures' (after a split).
	TrainFeatures, ValFeatures *Features
	// Cached says the head trained on the frozen backbone's features,
	// computed once.
	Cached bool
	// Stopped says the context was cancelled after at least one epoch:
	// Out holds the best epoch so far and the checkpoint allows Resume.
	Stopped bool
	Seconds float64
	// Files lists the files written.
	Files []string
}

// Run fine-tunes the classifier m on trainData, validating on valData (or,
// when valData is nil, on a stratified Options.ValSplit of trainData), and
// writes the best epoch's model to Options.Out, with metrics.json,
// training.png, report.md and a checkpoint folder in Options.Dir. m is
// edited and trained in place.
//
// The steps, in order:
//  1. Check the options, and that every output can be written without
//     replacing an input (the model file, a data folder); lock Dir.
//  2. Edit the model (surgery.Apply, all or nothing): a new head when the
//     class count differs or ReplaceHead asks, then Freeze and Unfreeze.
//  3. Derive the model's contract (contract.Derive) with the Overrides:
//     the data is fed as the model expects; hardening works on pixels in
//     [0, 1], so a model that normalises outside gets its normalisation put
//     inside. The contract, with the data's class names, is stored in the
//     model.
//  4. Train: a head-only run on data that stays the same every epoch (no
//     augmentation, no hardening) computes the frozen backbone's features
//     once, over the whole training data set in its order, Batch images
//     at a time, before the split (ComputeFeatures does the same), and
//     trains the head on them (train.FitHeadOnFeatures). A head-only run
//     with augmentation or NoCache computes the features batch by batch
//     instead (train.StreamFeatures): no training step of the whole model.
//     Everything else runs train.Fit on the whole model, with
//     batch-statistics BatchNormalization where its parameters train.
//  5. After every epoch, commit the checkpoint (model, optimizer state,
//     history, settings) as one unit, rewrite metrics.json, and write Out
//     when validation accuracy improved (strictly: ties keep the earlier
//     epoch).
//
// Cancelling ctx stops at the next batch: the result has Stopped set and
// the epochs done are kept (ErrNothingSaved if there were none).
func Run(ctx context.Context, m *onnx.Model, trainData, valData *dataset.Dataset, opts Options) (*Result, error) {
	if trainData == nil {
		return nil, errors.New("finetune: no training data")
	}
	return runJob(ctx, m, inputs{train: trainData, val: valData}, opts)
}

// RunOnFeatures is Run on precomputed features (ComputeFeatures; the
// shards' features joined by MergeFeatures) instead of images: the head
// trains as Run's feature cache trains it, by the same code, so with the
// same model, data, options and seed the model written is the same, byte
// for byte. val, when nil, is a stratified Options.ValSplit of train, as
// Run splits its data.
//
// The features must hold every example of their data set, come from m as
// it is given (onnx.SHA256) and from the preprocessing m's contract with
// the Overrides gives, and the run must train the head alone on unchanged
// inputs (the backbone frozen, no augmentation, no hardening); otherwise
// it is refused, saying which.
func RunOnFeatures(ctx context.Context, m *onnx.Model, train, val *Features, opts Options) (*Result, error) {
	if train == nil {
		return nil, errors.New("finetune: no training features")
	}
	return runJob(ctx, m, inputs{trainF: train, valF: val}, opts)
}

// inputs are what a run trains on: data sets, or features.
type inputs struct {
	train, val   *dataset.Dataset
	trainF, valF *Features
}

func runJob(ctx context.Context, m *onnx.Model, in inputs, opts Options) (*Result, error) {
	start := time.Now()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if m == nil || m.Graph == nil {
		return nil, errors.New("finetune: no model")
	}
	if err := m.CheckFinite(); err != nil {
		return nil, fmt.Errorf("finetune: %w", err)
	}
	features := in.trainF != nil
	dir := opts.Dir
	if dir == "" {
		dir = filepath.Dir(opts.Out)
	}
	if err := checkOutputs(m, in.train, in.val, dir, opts); err != nil {
		return nil, err
	}
	lock, err := fileio.LockDir(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()

	modelSum, err := onnx.SHA256(m)
	if err != nil {
		return nil, fmt.Errorf("finetune: %w", err)
	}

	// The training and validation examples: a split when no validation
	// data is given. Run's cache computes the features of whole, before
	// the split, as ComputeFeatures does.
	whole := in.train
	var trainIdx, valIdx []int
	var classes []string
	var source string
	if features {
		if err := checkFeatures(in.trainF, in.valF, modelSum); err != nil {
			return nil, err
		}
		classes, source = in.trainF.Classes, in.trainF.Data
		if in.valF == nil {
			if trainIdx, valIdx, err = dataset.StratifiedSplit(in.trainF.Labels, len(classes), opts.ValSplit, opts.Seed); err != nil {
				return nil, fmt.Errorf("finetune: features of %s: %w", source, err)
			}
			in.trainF, in.valF = in.trainF.subset(trainIdx), in.trainF.subset(valIdx)
		}
	} else {
		classes, source = in.train.Classes(), in.train.Source()
		if in.val == nil {
			if trainIdx, valIdx, err = dataset.StratifiedSplit(whole.Labels(), len(classes), opts.ValSplit, opts.Seed); err != nil {
				return nil, fmt.Errorf("dataset %s: %w", source, err)
			}
			in.train, in.val = whole.Subset(trainIdx), whole.Subset(valIdx)
		} else if err := dataset.SameClasses(in.train, in.val); err != nil {
			return nil, err
		}
	}
	if len(classes) < 2 {
		return nil, fmt.Errorf("finetune: %s has %d class: fine-tuning a classifier needs at least 2", source, len(classes))
	}

	res := &Result{Train: in.train, Val: in.val}
	if res.Head, err = prepare(m, len(classes), opts); err != nil {
		return nil, err
	}
	if res.Trainable, err = surgery.Trainable(m); err != nil {
		return nil, err
	}
	if len(res.Trainable) == 0 {
		return nil, errors.New("finetune: no trainable parameters: everything is frozen")
	}
	c, err := modelContract(m, classes, opts)
	if err != nil {
		return nil, err
	}
	res.Contract = c
	pre, err := dataset.PreprocessingFor(c.Input)
	if err != nil {
		return nil, fmt.Errorf("finetune: %w", err)
	}
	// The feature cache: a head-only run whose inputs are the same every
	// epoch runs the frozen backbone once. Augmentation and hardening
	// change the inputs, and NoCache asks for the plain loop.
	headOnly := res.Head != nil && onlyHead(res.Trainable, res.Head)
	res.Cached = headOnly && !opts.Augment && !opts.hardened() && !opts.NoCache
	if features {
		if err := featuresApply(res, headOnly, pre, in.trainF, opts); err != nil {
			return nil, err
		}
	}

	p, err := runtime.Compile(m, runtime.Options{Seed: opts.Seed})
	if err != nil {
		return nil, err
	}
	// A head-only run that does not cache features (augmentation, NoCache)
	// runs the frozen backbone as inference batch by batch and trains the
	// head alone; hardening needs the whole model's input gradients.
	var stream *headStream
	if headOnly && !res.Cached && !features && !opts.hardened() {
		if stream, err = newHeadStream(m, res.Trainable, pre, opts); err != nil {
			return nil, err
		}
	}
	if !features && !res.Cached && stream == nil {
		// Training from features, given or cached, runs the head alone: no
		// training step of the whole model is ever held (the cache's
		// inference runs are checked when they are built).
		if err := checkMemory(p, c, res.Trainable, opts.Batch); err != nil {
			return nil, fmt.Errorf("finetune: %w", err)
		}
	}
	opt, err := opts.optimizer()
	if err != nil {
		return nil, err
	}
	sched, err := opts.schedule()
	if err != nil {
		return nil, err
	}
	record := runRecord{Model: modelSum, Classes: classes, Settings: opts.settings()}
	if features {
		record.Train, record.Val = in.trainF.fingerprint(), in.valF.fingerprint()
	} else {
		record.Train, record.Val = in.train.Fingerprint(), in.val.Fingerprint()
	}
	ck := &checkpoint{dir: filepath.Join(dir, CheckpointDir), model: m, program: p, optimizer: opt, run: record}
	var prior *train.History
	startEpoch := 0
	if opts.Resume {
		if prior, err = ck.resume(); err != nil {
			return nil, err
		}
		startEpoch = len(prior.Epochs)
	}

	w := &writer{opts: opts, dir: dir, model: m, program: p, checkpoint: ck, history: prior.Clone(), result: res}
	cfg := train.Config{
		Epochs: opts.Epochs, StartEpoch: startEpoch, Optimizer: opt, Schedule: sched,
		Params: res.Trainable, Classes: len(classes), Prior: prior,
		OnBatch: opts.OnBatch, OnEpoch: opts.OnEpoch, Checkpoint: w.epochDone, Workers: opts.Workers,
	}
	if opts.hardened() {
		cfg.Perturb = perturber(p, opts)
	}

	switch {
	case features:
		res.TrainFeatures, res.ValFeatures = in.trainF, in.valF
		err = fitOnFeatures(ctx, m, p, in.trainF, in.valF, cfg, opts)
	case res.Cached:
		if opts.OnPhase != nil {
			opts.OnPhase(fmt.Sprintf("computing the frozen backbone's features once (%d training, %d validation examples)", in.train.Len(), in.val.Len()))
		}
		fo := FeatureOptions{Batch: opts.Batch}
		if valIdx != nil {
			var all *Features
			if all, err = computeFeatures(ctx, m, res.Trainable, whole, pre, modelSum, fo); err == nil {
				res.TrainFeatures, res.ValFeatures = all.subset(trainIdx), all.subset(valIdx)
			}
		} else if res.TrainFeatures, err = computeFeatures(ctx, m, res.Trainable, in.train, pre, modelSum, fo); err == nil {
			res.ValFeatures, err = computeFeatures(ctx, m, res.Trainable, in.val, pre, modelSum, fo)
		}
		if err == nil {
			err = fitOnFeatures(ctx, m, p, res.TrainFeatures, res.ValFeatures, cfg, opts)
		}
	default:
		var trainSrc, valSrc *dataset.Loader
		if trainSrc, valSrc, err = loaders(in.train, in.val, pre, opts); err != nil {
			return nil, err
		}
		if stream != nil {
			_, err = train.FitHeadOnFeatures(ctx, p, stream.head,
				train.StreamFeatures(trainSrc, stream.extractor), train.StreamFeatures(valSrc, stream.extractor), cfg)
			break
		}
		_, err = train.Fit(ctx, p, trainSrc, valSrc, cfg)
	}
	res.History = w.history
	res.Seconds = time.Since(start).Seconds()
	if errors.Is(err, train.ErrStopped) {
		if len(w.history.Epochs) == 0 || w.history.BestEpoch < 0 {
			return res, fmt.Errorf("finetune: %w", ErrNothingSaved)
		}
		res.Stopped = true
		err = nil
	}
	if err != nil {
		return res, err
	}
	return res, w.finish()
}

// checkFeatures refuses training features that are not a whole data set's
// or not m's (by its SHA-256 modelSum), and validation features that do
// not go with them.
func checkFeatures(tr, va *Features, modelSum string) error {
	for _, f := range []*Features{tr, va} {
		if f == nil {
			continue
		}
		if err := f.check(); err != nil {
			return fmt.Errorf("finetune: features of %s: %w", f.Data, err)
		}
		if !f.whole() {
			return fmt.Errorf("finetune: the features of %s hold shard %v only (%d of %d examples): merge every shard's features (MergeFeatures)", f.Data, f.Shard, len(f.Index), f.Examples)
		}
		if f.ModelSHA256 != modelSum {
			return fmt.Errorf("finetune: the features of %s come from another model (SHA-256 %s; this model's is %s)", f.Data, f.ModelSHA256, modelSum)
		}
	}
	if va != nil {
		switch {
		case va.SplitAt != tr.SplitAt:
			return fmt.Errorf("finetune: the training features end at %q, the validation features at %q", tr.SplitAt, va.SplitAt)
		case fmt.Sprint(va.Preprocessing) != fmt.Sprint(tr.Preprocessing):
			return fmt.Errorf("finetune: the training features were fed as %s, the validation features as %s", describePre(tr.Preprocessing), describePre(va.Preprocessing))
		case !slices.Equal(va.Classes, tr.Classes):
			return fmt.Errorf("finetune: the validation classes (%s) differ from the training classes (%s)", strings.Join(va.Classes, ", "), strings.Join(tr.Classes, ", "))
		}
	}
	return nil
}

// featuresApply refuses a run that cannot train on features: one that
// trains more than the head or changes the inputs, a model whose head
// takes another value than the features are of, or preprocessing other
// than the features were computed with.
func featuresApply(res *Result, headOnly bool, pre dataset.Preprocessing, f *Features, opts Options) error {
	switch {
	case !headOnly:
		return errors.New("finetune: training on features trains the head alone, and this run trains more (freeze the backbone)")
	case opts.Augment:
		return errors.New("finetune: training on features cannot augment the images: the features were computed from the images as they are")
	case opts.hardened():
		return errors.New("finetune: training on features cannot harden (adversarial examples and noise change the images)")
	case opts.NoCache:
		return errors.New("finetune: training on features and NoCache exclude each other")
	case res.Head.Node.Input(0) == nil || res.Head.Node.Input(0).Name != f.SplitAt:
		return fmt.Errorf("finetune: the features are of %q, and the head %s takes another value", f.SplitAt, res.Head.Node)
	case fmt.Sprint(pre) != fmt.Sprint(f.Preprocessing):
		return fmt.Errorf("finetune: the features were computed from images fed as %s; this model's contract (with the overrides) feeds %s", describePre(f.Preprocessing), describePre(pre))
	}
	return nil
}

// checkOutputs refuses, before any work, outputs that cannot be written
// or would replace an input.
func checkOutputs(m *onnx.Model, trainData, valData *dataset.Dataset, dir string, opts Options) error {
	var plan fileio.Plan
	if opts.ModelPath != "" {
		plan.Input(opts.ModelPath, "model")
	}
	for _, f := range m.ExternalDataFiles() {
		plan.Input(f, "the model's external data")
	}
	for _, d := range []*dataset.Dataset{trainData, valData} {
		if d != nil {
			for _, in := range d.Inputs() {
				plan.Input(in, "data")
			}
		}
	}
	var force []fileio.Option
	if opts.Force {
		force = append(force, fileio.Force())
	}
	plan.Output(opts.Out, "output model", force...)
	plan.OutputDir(dir, "metrics folder")
	for _, f := range []string{MetricsFile, PlotFile, ReportFile} {
		plan.Output(filepath.Join(dir, f), "")
	}
	plan.OutputDir(filepath.Join(dir, CheckpointDir), "checkpoint folder")
	if err := plan.Check(); err != nil {
		return fmt.Errorf("finetune: %w", err)
	}
	return nil
}

// checkMemory refuses, before any work, a training step of batch images
// that would not fit in graft's memory limit (see runtime.Estimate).
func checkMemory(p *runtime.Program, c *contract.Contract, trainable []string, batch int) error {
	loss, on := runtime.LossFor(c.Output)
	est, err := p.Estimate(runtime.Plan{Inputs: [][]int{{batch, c.Input.Channels, c.Input.Height, c.Input.Width}},
		Loss: loss, LossOn: on, Train: true, Params: trainable})
	if err != nil {
		return err
	}
	return est.Check()
}

// prepare edits m for k classes: a new head when its class count differs
// (or opts.ReplaceHead asks), then the trainable set's selectors, in one
// all-or-nothing surgery.Apply. It returns the head after the edits.
func prepare(m *onnx.Model, k int, opts Options) (*surgery.Head, error) {
	var h *surgery.Head
	var err error
	if opts.HeadNode != "" {
		h, err = surgery.HeadAt(m.Graph, opts.HeadNode)
	} else {
		h, err = surgery.FindHead(m.Graph)
	}
	if err != nil {
		return nil, fmt.Errorf("finetune: %w", err)
	}
	if opts.ReplaceHead > 0 && opts.ReplaceHead != k {
		return nil, bad("ReplaceHead", opts.ReplaceHead, "the data has %d classes", k)
	}
	var edits []surgery.Edit
	if opts.ReplaceHead > 0 || int(h.OutFeatures) != k {
		edits = append(edits, surgery.ReplaceHead(k, surgery.HeadOptions{Node: opts.HeadNode, Seed: opts.Seed}))
	}
	for _, s := range opts.Freeze {
		sel, _ := surgery.ParseSelector(s) // Validate parsed it
		edits = append(edits, named("freeze "+s, surgery.Freeze(sel)))
	}
	for _, s := range opts.Unfreeze {
		sel, _ := surgery.ParseSelector(s)
		edits = append(edits, named("unfreeze "+s, surgery.Unfreeze(sel)))
	}
	if len(edits) > 0 {
		if err := surgery.Apply(m, edits...); err != nil {
			return nil, fmt.Errorf("finetune: %w", err)
		}
	}
	if opts.HeadNode != "" {
		return surgery.HeadAt(m.Graph, opts.HeadNode)
	}
	return surgery.FindHead(m.Graph)
}

// named prefixes an edit's error with what asked for it.
func named(what string, e surgery.Edit) surgery.Edit {
	return func(m *onnx.Model) error {
		if err := e(m); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
}

// modelContract derives m's contract with the overrides and the data's
// class names, puts the normalisation inside the model when hardening
// needs pixel inputs, and stores the contract in m.
func modelContract(m *onnx.Model, classes []string, opts Options) (*contract.Contract, error) {
	c, err := contract.Derive(m)
	if err != nil {
		return nil, fmt.Errorf("finetune: %w", err)
	}
	if err := c.Override(opts.Overrides); err != nil {
		return nil, fmt.Errorf("finetune: %w", err)
	}
	if err := c.Input.Check(); err != nil {
		return nil, fmt.Errorf("finetune: %w", err)
	}
	if opts.hardened() {
		// Adversarial steps and noise are in pixel units, clamped to [0, 1]:
		// the model must take pixels.
		if mean, std := c.Input.PixelNormalization(); mean != nil {
			if err := surgery.Apply(m, surgery.Normalize(c.Input.Name, mean, std)); err != nil {
				return nil, fmt.Errorf("finetune: put the normalisation inside the model for hardening: %w", err)
			}
			if opts.OnPhase != nil {
				opts.OnPhase(fmt.Sprintf("hardening works on pixels in [0, 1]: the normalisation (mean %v, std %v) is now inside the model", mean, std))
			}
			scale := c.Input.PixelScale
			c.Input.Mean, c.Input.Std, c.Input.NormalizedInside, c.Input.PixelScale = mean, std, true, 1
			if scale != 1 {
				c.Notes = append(c.Notes, fmt.Sprintf("the model took pixels scaled to %g; it now takes them in [0, 1] and scales them itself", scale))
			}
		}
	}
	if opts.Overrides.Classes == nil {
		c.Output.Classes = classes
	}
	c.Output.NumClasses = len(classes)
	if err := contract.Store(m, c); err != nil {
		return nil, fmt.Errorf("finetune: %w", err)
	}
	return c, nil
}

// loaders returns the training source (shuffled, augmented if asked) and
// the validation source (in order, never augmented).
func loaders(trainData, valData *dataset.Dataset, pre dataset.Preprocessing, opts Options) (trainSrc, valSrc *dataset.Loader, err error) {
	tp := pre
	tp.Augment = opts.Augment
	tcfg, err := tp.Config(trainData, opts.Batch, true, opts.Seed)
	if err != nil {
		return nil, nil, fmt.Errorf("finetune: %w", err)
	}
	if trainSrc, err = dataset.NewLoader(trainData, tcfg); err != nil {
		return nil, nil, fmt.Errorf("finetune: %w", err)
	}
	vp := pre
	vp.Augment = false
	vcfg, err := vp.Config(valData, opts.Batch, false, opts.Seed)
	if err != nil {
		return nil, nil, fmt.Errorf("finetune: %w", err)
	}
	if valSrc, err = dataset.NewLoader(valData, vcfg); err != nil {
		return nil, nil, fmt.Errorf("finetune: %w", err)
	}
	return trainSrc, valSrc, nil
}

// headStream is a head-only run's split when features are computed batch
// by batch: the frozen backbone as inference, and the head.
type headStream struct {
	extractor, head *runtime.Program
}

// newHeadStream splits m at its head, or returns nil when it cannot be
// split there (the run then trains the whole model with the backbone
// frozen). A batch through the backbone is refused before any work if it
// would not fit in graft's memory limit (backboneProgram).
func newHeadStream(m *onnx.Model, params []string, pre dataset.Preprocessing, opts Options) (*headStream, error) {
	extractor, headModel, err := train.SplitAtHead(m, params)
	if err != nil {
		return nil, nil
	}
	ep, err := backboneProgram(extractor, opts.Batch, pre)
	if err != nil {
		return nil, fmt.Errorf("finetune: %w", err)
	}
	hp, err := runtime.Compile(headModel, runtime.Options{Seed: opts.Seed})
	if err != nil {
		return nil, err
	}
	return &headStream{extractor: ep, head: hp}, nil
}

// fitOnFeatures trains the head of m (compiled as p) on features, in
// batches of opts.Batch shuffled by opts.Seed as a Loader over the images
// would be: the one code path of Run's cache and RunOnFeatures.
func fitOnFeatures(ctx context.Context, m *onnx.Model, p *runtime.Program, trainF, valF *Features, cfg train.Config, opts Options) error {
	_, headModel, err := train.SplitAtHead(m, cfg.Params)
	if err != nil {
		return fmt.Errorf("finetune: %w", err)
	}
	hp, err := runtime.Compile(headModel, runtime.Options{Seed: opts.Seed})
	if err != nil {
		return err
	}
	tsrc, err := dataset.NewMemory(trainF.Values, trainF.Labels, opts.Batch, true, opts.Seed)
	if err != nil {
		return fmt.Errorf("finetune: %w", err)
	}
	vsrc, err := dataset.NewMemory(valF.Values, valF.Labels, opts.Batch, false, opts.Seed)
	if err != nil {
		return fmt.Errorf("finetune: %w", err)
	}
	_, err = train.FitHeadOnFeatures(ctx, p, hp, tsrc, vsrc, cfg)
	return err
}

// onlyHead reports whether every trainable parameter belongs to the head.
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
