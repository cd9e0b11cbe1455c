package finetune

import (
	"fmt"
	"math"
	"strings"

	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime/train"
	"github.com/graft-dev/graft/surgery"
)

// Options configure a fine-tuning run. Start from DefaultOptions: some
// zero values (momentum 0, seed 0) are settings of their own.
type Options struct {
	// ReplaceHead, when above 0, replaces the classifier head with a new
	// Linear(in_features, ReplaceHead) even if the head already has that
	// many outputs; it must equal the data's class count. With 0 the head
	// is replaced only when its output count differs from the data's
	// classes.
	ReplaceHead int
	// HeadNode names the head's node when surgery.FindHead cannot find it.
	HeadNode string
	// Freeze and Unfreeze are selectors (surgery.ParseSelector: backbone,
	// head, all, op:TYPE, prefix:P or a name glob) applied in order, after
	// the head replacement, to the model's trainable set: Freeze removes
	// the parameters they match, Unfreeze adds them.
	Freeze, Unfreeze []string

	Epochs int
	Batch  int
	// Optimizer is "sgd", "adam" or "adamw", with PyTorch's update rules.
	Optimizer   string
	LR          float64
	Momentum    float64 // SGD only
	WeightDecay float64
	// Schedule is the learning-rate schedule: "none", "cosine" (cosine
	// annealing over Epochs) or "step:SIZE,GAMMA" (the rate times GAMMA
	// every SIZE epochs).
	Schedule string
	// Seed seeds the new head, the split, the shuffles, the augmentation
	// and hardening's noise: the same seed reproduces the run bit for bit.
	Seed int64
	// Workers, when above 1, runs each training step data-parallel over
	// that many shards of the batch at once (train.Config.Workers).
	Workers int
	// ValSplit is the fraction of the training data held out (per class)
	// for validation when Run is given no validation data.
	ValSplit float64

	// Augment trains on random resized crops and horizontal flips.
	Augment bool
	// NoCache recomputes a frozen backbone's features every epoch instead
	// of once (see Run).
	NoCache bool
	// Adversarial, when Eps is above 0, hardens the model: a share Ratio of
	// every training batch is replaced by FGSM examples of radius Eps
	// (pixels in [0, 1]) against the model as it is at that step.
	Adversarial Adversarial
	// NoiseStd, when above 0, adds Gaussian noise of that standard
	// deviation (pixels in [0, 1]) to every training input, clamped to
	// [0, 1].
	NoiseStd float64

	// Overrides change the model's contract (contract.Derive): the
	// normalisation, resize and class names the data is fed with.
	Overrides contract.Overrides

	// Out is the file the best epoch's model is written to (required).
	Out string
	// Dir is the folder of metrics.json, training.png, report.md and the
	// checkpoint folder; empty means Out's folder.
	Dir string
	// ModelPath is the file the model was read from, if any: Out may not
	// replace it (unless Force), and --resume checks the checkpoint was
	// made from it.
	ModelPath string
	// Resume continues an interrupted run from Dir's checkpoint, which
	// must come from the same model, data and settings.
	Resume bool
	// Force lets Out replace an existing read-only file or the model file.
	Force bool

	// OnPhase, OnBatch and OnEpoch, when set, report progress: a phase
	// that starts ("computing the frozen backbone's features for 800
	// examples"), every training step, every epoch.
	OnPhase func(string)
	OnBatch func(train.BatchStats)
	OnEpoch func(train.EpochStats)
}

// Adversarial configures adversarial training (see Options.Adversarial).
type Adversarial struct {
	Eps   float64
	Ratio float64
}

// DefaultOptions returns the defaults: 10 epochs of SGD with learning rate
// 0.001 and momentum 0.9, batches of 32, a constant rate, seed 0, 20% of
// the data held out when no validation data is given.
func DefaultOptions() Options {
	return Options{Epochs: 10, Batch: 32, Optimizer: "sgd", LR: 0.001, Momentum: 0.9, Schedule: "none", ValSplit: 0.2,
		Adversarial: Adversarial{Ratio: 0.5}}
}

// An OptionError reports an option value that cannot work. Option is the
// Options field, in Go's spelling ("LR", "Adversarial.Ratio").
type OptionError struct {
	Option string
	Value  any
	Reason string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("finetune: option %s %v: %s", e.Option, e.Value, e.Reason)
}

func bad(option string, value any, format string, args ...any) error {
	return &OptionError{Option: option, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// finite reports whether x is a number (not NaN, not infinite).
func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Validate checks the options on their own, before any model or data is
// read; the error is an *OptionError.
func (o *Options) Validate() error {
	switch {
	case o.Out == "":
		return bad("Out", `""`, "the output model's path is required")
	case o.Epochs < 1:
		return bad("Epochs", o.Epochs, "want at least 1")
	case o.Batch < 1:
		return bad("Batch", o.Batch, "want at least 1")
	case o.ReplaceHead < 0:
		return bad("ReplaceHead", o.ReplaceHead, "want a class count, or 0 to replace the head only when the class count differs")
	case !finite(o.LR) || o.LR <= 0:
		return bad("LR", o.LR, "want a positive learning rate")
	case !finite(o.Momentum) || o.Momentum < 0 || o.Momentum >= 1:
		return bad("Momentum", o.Momentum, "want a momentum in [0, 1)")
	case !finite(o.WeightDecay) || o.WeightDecay < 0:
		return bad("WeightDecay", o.WeightDecay, "want a weight decay of 0 or more")
	case !finite(o.ValSplit) || o.ValSplit <= 0 || o.ValSplit >= 1:
		return bad("ValSplit", o.ValSplit, "want a fraction between 0 and 1")
	case !finite(o.Adversarial.Eps) || o.Adversarial.Eps < 0 || o.Adversarial.Eps > 1:
		return bad("Adversarial.Eps", o.Adversarial.Eps, "want a radius in [0, 1] (pixels are in [0, 1]; 0 turns adversarial training off)")
	case o.Adversarial.Eps > 0 && (!finite(o.Adversarial.Ratio) || o.Adversarial.Ratio <= 0 || o.Adversarial.Ratio > 1):
		return bad("Adversarial.Ratio", o.Adversarial.Ratio, "want a share of each batch in (0, 1]")
	case o.Workers < 0 || o.Workers > o.Batch:
		return bad("Workers", o.Workers, "want 1 to the batch size (%d) shards of each batch, or 0 for one", o.Batch)
	case !finite(o.NoiseStd) || o.NoiseStd < 0:
		return bad("NoiseStd", o.NoiseStd, "want a standard deviation of 0 (off) or more")
	}
	switch o.Optimizer {
	case "sgd", "adam", "adamw":
	default:
		return bad("Optimizer", fmt.Sprintf("%q", o.Optimizer), "want sgd, adam or adamw")
	}
	if _, err := o.schedule(); err != nil {
		return err
	}
	for _, sel := range o.Freeze {
		if _, err := surgery.ParseSelector(sel); err != nil {
			return bad("Freeze", fmt.Sprintf("%q", sel), "%v", err)
		}
	}
	for _, sel := range o.Unfreeze {
		if _, err := surgery.ParseSelector(sel); err != nil {
			return bad("Unfreeze", fmt.Sprintf("%q", sel), "%v", err)
		}
	}
	if (len(o.Overrides.Mean) == 0) != (len(o.Overrides.Std) == 0) {
		return bad("Overrides", "", "give both a mean and a std")
	}
	return nil
}

// hardened reports whether training perturbs its inputs.
func (o *Options) hardened() bool { return o.Adversarial.Eps > 0 || o.NoiseStd > 0 }

// optimizer returns the configured optimizer, fresh.
func (o *Options) optimizer() (train.Optimizer, error) {
	switch o.Optimizer {
	case "adam":
		return train.NewAdam(train.AdamOptions{LR: o.LR, WeightDecay: o.WeightDecay})
	case "adamw":
		return train.NewAdamW(train.AdamOptions{LR: o.LR, WeightDecay: o.WeightDecay})
	}
	return train.NewSGD(train.SGDOptions{LR: o.LR, Momentum: o.Momentum, WeightDecay: o.WeightDecay})
}

// schedule parses Schedule.
func (o *Options) schedule() (train.Schedule, error) {
	s := o.Schedule
	switch {
	case s == "" || s == "none":
		return train.Constant{}, nil
	case s == "cosine":
		return train.CosineAnnealingLR{TMax: o.Epochs}, nil
	case strings.HasPrefix(s, "step:"):
		var size int
		var gamma float64
		if n, err := fmt.Sscanf(strings.TrimPrefix(s, "step:"), "%d,%g", &size, &gamma); err != nil || n != 2 || size < 1 || !finite(gamma) || gamma <= 0 {
			return nil, bad("Schedule", fmt.Sprintf("%q", s), "want step:SIZE,GAMMA with SIZE at least 1 and GAMMA above 0 (e.g. step:7,0.1)")
		}
		return train.StepLR{StepSize: size, Gamma: gamma}, nil
	}
	return nil, bad("Schedule", fmt.Sprintf("%q", s), "want none, cosine or step:SIZE,GAMMA")
}
