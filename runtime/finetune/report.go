package finetune

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/graft-dev/graft/runtime/train"
)

// report returns report.md: what was trained on what, and how it went.
func report(r *Result, opts Options) string {
	h := r.History
	var b strings.Builder
	fmt.Fprintf(&b, "# Fine-tuning report\n\n")
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	row := func(k, format string, args ...any) { fmt.Fprintf(&b, "| %s | %s |\n", k, fmt.Sprintf(format, args...)) }
	if opts.ModelPath != "" {
		row("model", "`%s`", opts.ModelPath)
	}
	row("output", "`%s` (the best epoch's model)", opts.Out)
	row("classes", "%s", strings.Join(r.Contract.Output.Classes, ", "))
	row("training / validation images", "%d / %d", r.trainExamples(), r.valExamples())
	if r.Head != nil {
		row("head", "%s (%s) %d -> %d", r.Head.Node.Name, r.Head.Node.OpType, r.Head.InFeatures, r.Head.OutFeatures)
	}
	trainable := r.Trainable
	more := ""
	if len(trainable) > 8 {
		trainable, more = trainable[:8], fmt.Sprintf(" and %d more", len(r.Trainable)-8)
	}
	row("trained parameters", "%d: %s%s", len(r.Trainable), strings.Join(trainable, ", "), more)
	in := r.Contract.Input
	norm := "none"
	switch {
	case in.NormalizedInside:
		norm = fmt.Sprintf("inside the model (mean %v, std %v)", in.Mean, in.Std)
	case len(in.Mean) > 0:
		norm = fmt.Sprintf("mean %v, std %v", in.Mean, in.Std)
	}
	row("input", "%d channels, resize %d, crop %dx%d, normalisation %s", in.Channels, in.Resize, in.Width, in.Height, norm)
	opt := fmt.Sprintf("%s, lr %g", opts.Optimizer, opts.LR)
	if opts.Optimizer == "sgd" {
		opt += fmt.Sprintf(", momentum %g", opts.Momentum)
	}
	if opts.WeightDecay != 0 {
		opt += fmt.Sprintf(", weight decay %g", opts.WeightDecay)
	}
	row("optimizer", "%s, schedule %s, batch %d, seed %d", opt, opts.Schedule, opts.Batch, opts.Seed)
	var extras []string
	if opts.Augment {
		extras = append(extras, "random resized crops and flips")
	}
	if opts.Adversarial.Eps > 0 {
		extras = append(extras, fmt.Sprintf("FGSM examples at eps %g for %g of each batch", opts.Adversarial.Eps, opts.Adversarial.Ratio))
	}
	if opts.NoiseStd > 0 {
		extras = append(extras, fmt.Sprintf("Gaussian noise of std %g", opts.NoiseStd))
	}
	if len(extras) > 0 {
		row("training inputs", "%s", strings.Join(extras, "; "))
	}
	row("backbone features", "%s", map[bool]string{true: "computed once and cached", false: "computed every step"}[r.Cached])
	if best := bestEpoch(h); best != nil {
		acc := best.Accuracy
		if best.Val != nil {
			acc = best.Val.Accuracy
		}
		row("best validation accuracy", "%.2f%% (epoch %d of %d)", 100*acc, best.Epoch+1, len(h.Epochs))
	}
	row("time", "%.1f s", r.Seconds)
	if r.Stopped {
		row("stopped", "interrupted; the best epoch so far is kept, and the run can be resumed")
	}
	fmt.Fprintf(&b, "\n| epoch | lr | loss | accuracy | val loss | val accuracy | seconds |\n|---|---|---|---|---|---|---|\n")
	for _, e := range h.Epochs {
		vl, va := "", ""
		if e.Val != nil {
			vl, va = fmt.Sprintf("%.4f", e.Val.Loss), fmt.Sprintf("%.2f%%", 100*e.Val.Accuracy)
		}
		fmt.Fprintf(&b, "| %d | %.3g | %.4f | %.2f%% | %s | %s | %.1f |\n", e.Epoch+1, e.LR, e.Loss, 100*e.Accuracy, vl, va, e.Seconds)
	}
	fmt.Fprintf(&b, "\nFiles: `%s`, `%s`, `%s` (loss and accuracy per epoch), `%s/` (resumable state).\n",
		filepath.Base(opts.Out), MetricsFile, PlotFile, CheckpointDir)
	return b.String()
}

// bestEpoch returns the history's best epoch, nil if none.
func bestEpoch(h *train.History) *train.EpochStats {
	for i := range h.Epochs {
		if h.Epochs[i].Epoch == h.BestEpoch {
			return &h.Epochs[i]
		}
	}
	return nil
}

// trainExamples and valExamples count the examples trained and validated
// on, images or features.
func (r *Result) trainExamples() int {
	if r.Train != nil {
		return r.Train.Len()
	}
	return len(r.TrainFeatures.Index)
}

func (r *Result) valExamples() int {
	if r.Val != nil {
		return r.Val.Len()
	}
	return len(r.ValFeatures.Index)
}
