package attacks

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/surgery"
)

// DefaultBatch is the batch size of Robustness when none is given.
const DefaultBatch = 100

// RobustnessOptions configure Robustness. Attack is required; the zero
// value of every other field is a default.
type RobustnessOptions struct {
	// Attack is FGSM{}, BIM{...} or &PGD{...}.
	Attack Attack
	// Eps are the radii, in pixel units (pixels in [0, 1]); nil means
	// DefaultEps.
	Eps []float64
	// Target, when set, makes the attack targeted: each example aims for
	// the class Target gives for its label (TargetClass, NextClass).
	Target Target
	// Limit, when above 0, attacks only that many examples: the first ones
	// of in-memory (IDX) data, which come in no particular order, and
	// examples spread evenly over an image folder, whose examples come
	// class by class.
	Limit int
	// Batch is the number of examples per batch; 0 means DefaultBatch. A
	// model whose input fixes the batch size gets batches of that size.
	Batch int
	// Overrides change the model's contract (contract.Derive): Mean and
	// Std the normalisation put inside the model, Resize and Crop how
	// images are resized and cropped, Classes the class names in the
	// report.
	Overrides contract.Overrides
	// Samples is how many of the first examples examples.png shows: 0
	// means 8, negative none.
	Samples int
	// Progress, when set, is called after each batch with the number of
	// examples done and the number to do.
	Progress func(done, total int)
	// Model and ModelSHA256 name the model in Report.Settings (the file it
	// was read from, and the SHA-256 of its bytes; onnx.SHA256 when
	// empty); Data names the data, data.Source() when empty.
	Model, ModelSHA256, Data string
	// Shard, when set (Count at least 1), attacks only that shard of the
	// examples (after Limit), split in blocks of the batch size (see
	// dataset.Shard), and returns a shard's report: its Detail holds every
	// example's outcome, and Merge combines the shards' reports into the
	// whole sweep's report, equal to the one a single run makes. Shard
	// 0/1 is the whole data set as the one shard of a merge.
	Shard dataset.Shard
}

// A Target gives the class a targeted attack aims for, from an example's
// label and the model's number of classes.
type Target func(label, classes int) int

// TargetClass aims every example at class c.
func TargetClass(c int) Target { return func(int, int) int { return c } }

// NextClass aims each example at the class after its label, (label+1) mod
// classes.
func NextClass(label, classes int) int { return (label + 1) % classes }

// Validate checks the options on their own, before any model or data is
// read.
func (o *RobustnessOptions) Validate() error {
	if o.Attack == nil {
		return errors.New("attacks: no attack")
	}
	if o.Eps != nil && len(o.Eps) == 0 {
		return errors.New("attacks: no eps")
	}
	for _, e := range o.Eps {
		if !(e >= 0 && e <= 1) {
			return fmt.Errorf("attacks: eps %g is outside [0, 1] (pixels are in [0, 1]: 8/255 is 0.0314)", e)
		}
	}
	if o.Limit < 0 {
		return fmt.Errorf("attacks: limit %d", o.Limit)
	}
	if o.Batch < 0 {
		return fmt.Errorf("attacks: batch size %d", o.Batch)
	}
	if err := o.Shard.Check(); err != nil {
		return fmt.Errorf("attacks: %w", err)
	}
	return nil
}

// Robustness measures m's robustness on a labelled data set: accuracy,
// attack success and confidence at every eps (see Sweep), following the
// model's contract. The steps:
//
//  1. Derive m's contract (contract.Derive) and apply the Overrides.
//  2. Check every example's label against the model's classes, and the
//     targets.
//  3. Serve the examples as pixels in [0, 1] through a dataset.Loader at
//     the contract's channels, resize and size
//     (dataset.PreprocessingFor, without the normalisation); IDX images
//     that already have the model's size are served as they are.
//  4. Put the contract's normalisation (contract.Input.PixelNormalization)
//     inside a copy of m, in front of its input (surgery.Normalize), unless
//     the model normalises its input itself: the attacks' eps-ball and
//     clamp are in pixel units, and the gradient flows through the
//     normalisation. m itself is not changed.
//  5. Attack (NewClassifier: the loss and the confidences the contract's
//     output kind gives), and fill Report.Settings.
//
// Cancelling ctx stops the sweep at the next batch with ctx's error.
func Robustness(ctx context.Context, m *onnx.Model, data *dataset.Dataset, opts RobustnessOptions) (*Report, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if m == nil || m.Graph == nil {
		return nil, errors.New("attacks: no model")
	}
	if data == nil || data.Len() == 0 {
		return nil, errors.New("attacks: no examples")
	}
	if err := m.CheckFinite(); err != nil {
		return nil, fmt.Errorf("attacks: %w", err)
	}
	// The model's identity, which Merge compares between shards.
	sum := opts.ModelSHA256
	if sum == "" {
		var err error
		if sum, err = onnx.SHA256(m); err != nil {
			return nil, fmt.Errorf("attacks: %w", err)
		}
	}
	c, err := contract.Derive(m)
	if err != nil {
		return nil, err
	}
	if err := c.Override(opts.Overrides); err != nil {
		return nil, err
	}
	pre, err := dataset.PreprocessingFor(c.Input)
	if err != nil {
		return nil, err
	}
	k := c.Output.NumClasses
	total := data.Len()
	data = limit(data, opts.Limit)
	if err := checkLabels(data, k); err != nil {
		return nil, err
	}
	var targets func([]int) []int
	if opts.Target != nil {
		if targets, err = targetsFor(opts.Target, k); err != nil {
			return nil, err
		}
	}

	// The attacked model takes pixels in [0, 1].
	attacked := m
	mean, std := c.Input.PixelNormalization()
	if mean != nil {
		if attacked, err = m.Clone(); err != nil {
			return nil, err
		}
		if err := surgery.Apply(attacked, surgery.Normalize(c.Input.Name, mean, std)); err != nil {
			return nil, fmt.Errorf("attacks: put the normalisation inside the model: %w", err)
		}
	} else if c.Input.NormalizedInside {
		mean, std = c.Input.Mean, c.Input.Std
	}
	clf, err := NewClassifier(attacked, runtime.Options{FixedWeights: true})
	if err != nil {
		return nil, err
	}

	batch := opts.Batch
	if batch == 0 {
		batch = DefaultBatch
	}
	if s := c.Input.Shape; len(s) > 0 && s[0].Known() && s[0].Value > 0 {
		batch = int(s[0].Value)
	}
	// The attack's gradient step, refused before any work if it would not
	// fit in graft's memory limit.
	est, err := clf.Program.Estimate(runtime.Plan{Inputs: [][]int{{batch, c.Input.Channels, c.Input.Height, c.Input.Width}},
		Loss: clf.Loss, LossOn: clf.LossOn, InputGrads: true})
	if err != nil {
		return nil, fmt.Errorf("attacks: %w", err)
	}
	if err := est.Check(); err != nil {
		return nil, fmt.Errorf("attacks: %w", err)
	}
	pre.Mean, pre.Std = nil, nil
	// The shard, in blocks of the batch size: each shard attacks exactly
	// the batches a single run would.
	whole := data
	p := &part{shard: opts.Shard, block: batch, total: whole.Len()}
	if !opts.Shard.Whole() {
		idx := opts.Shard.Examples(whole.Len(), batch)
		if len(idx) == 0 {
			blocks := (whole.Len() + batch - 1) / batch
			return nil, fmt.Errorf("attacks: shard %v holds no examples: %d examples in batches of %d make %d blocks, so at most %d shards", opts.Shard, whole.Len(), batch, blocks, blocks)
		}
		data = whole.Subset(idx)
	}
	cfg, err := pre.Config(data, batch, false, 0)
	if err != nil {
		return nil, err
	}
	loader, err := dataset.NewLoader(data, cfg)
	if err != nil {
		return nil, err
	}
	n := data.Len()
	var progress func(int)
	if opts.Progress != nil {
		progress = func(done int) { opts.Progress(done, n) }
	}
	r, err := sweep(clf, ctxSource{ctx, loader}, Config{
		Attack:   opts.Attack,
		Eps:      opts.Eps,
		Targets:  targets,
		Samples:  opts.Samples,
		Progress: progress,
	}, p)
	if err != nil {
		return nil, err
	}
	s := &r.Settings
	s.Model, s.ModelSHA256, s.Limit = opts.Model, sum, opts.Limit
	// The whole sweep's batch size and data, whichever shard this is.
	s.BatchSize = min(batch, whole.Len())
	s.Data = describeData(whole, opts.Data, total, pre)
	s.DataFingerprint = whole.Fingerprint()
	for i := range mean {
		s.Mean = append(s.Mean, float64(mean[i]))
	}
	for i := range std {
		s.Std = append(s.Std, float64(std[i]))
	}
	s.ClassNames = c.Output.Classes
	if s.ClassNames == nil {
		s.ClassNames = data.Classes()
	}
	s.Notes, s.Warnings = c.Notes, c.Warnings
	return r, nil
}

// limit returns the examples a sweep limited to n attacks (see
// RobustnessOptions.Limit).
func limit(data *dataset.Dataset, n int) *dataset.Dataset {
	total := data.Len()
	if n == 0 || n >= total {
		return data
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
		if data.Path(0) != "" {
			// Files come class by class: spread over them.
			idx[i] = i * total / n
		}
	}
	return data.Subset(idx)
}

// checkLabels refuses an example whose label is not one of the model's k
// classes (k 0: unknown, checked as the scores come).
func checkLabels(data *dataset.Dataset, k int) error {
	if k == 0 {
		return nil
	}
	classes := data.Classes()
	for i := range data.Len() {
		if l := data.Label(i); l >= k {
			return fmt.Errorf("%s: label %d (class %q) is not one of the model's %d classes", data.Name(i), l, classes[l], k)
		}
	}
	return nil
}

// targetsFor checks t against the model's k classes and returns the
// per-batch targets Sweep takes.
func targetsFor(t Target, k int) (func([]int) []int, error) {
	if k == 0 {
		return nil, errors.New("attacks: a targeted attack needs a model whose output fixes the number of classes")
	}
	for l := range k {
		if c := t(l, k); c < 0 || c >= k {
			return nil, fmt.Errorf("attacks: target class %d (for label %d) is not one of the model's %d classes (0 to %d)", c, l, k, k-1)
		}
	}
	return func(labels []int) []int {
		out := make([]int, len(labels))
		for i, l := range labels {
			out[i] = t(l, k)
		}
		return out
	}, nil
}

// describeData says what a sweep ran on, for Report.Settings.
func describeData(data *dataset.Dataset, name string, total int, pre dataset.Preprocessing) string {
	if name == "" {
		name = data.Source()
	}
	classes := data.Classes()
	list := strings.Join(classes, ", ")
	if len(classes) > 10 {
		list = strings.Join(classes[:10], ", ") + ", ..."
	}
	return fmt.Sprintf("%s: %d of %d images, %d classes (%s), fed as %dx%dx%d pixels in [0, 1] (resize %d, center crop)",
		name, data.Len(), total, len(classes), list, pre.Channels, pre.Height, pre.Width, pre.Resize)
}

// ctxSource ends a source's epoch with the context's error once it is
// cancelled.
type ctxSource struct {
	ctx context.Context
	dataset.Source
}

func (s ctxSource) Batches(epoch int) iter.Seq2[dataset.Batch, error] {
	return func(yield func(dataset.Batch, error) bool) {
		for b, err := range s.Source.Batches(epoch) {
			if err == nil {
				if err = s.ctx.Err(); err != nil {
					yield(dataset.Batch{}, err)
					return
				}
			}
			if !yield(b, err) {
				return
			}
		}
	}
}
