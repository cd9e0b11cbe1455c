package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/data"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/surgery"
)

func init() {
	register(&command{
		name: "finetune",
		args: "--model M.onnx --data DIR|IDX [--val DIR|IDX] [--freeze backbone] --epochs N --lr X -o OUT.onnx",
		summary: "Fine-tune a classifier on an image folder (a sub-folder per class) or IDX files: the head is replaced when the class count " +
			"differs, frozen layers keep inference-mode BatchNorm, and with a frozen backbone and no augmentation its features are computed once. " +
			"Writes OUT.onnx (the best validation epoch), metrics.json, training.png and a resumable checkpoint folder.",
		run: runFinetune,
	})
}

func runFinetune(args []string, stdout io.Writer) error {
	c := lookup("finetune")
	fs := newFlags(c, stdout)
	modelPath := fs.String("model", "", "the pretrained `MODEL`.onnx (required)")
	dataPath := fs.String("data", "", "training data: an image `DIR` with a sub-folder per class, or an IDX images file (required)")
	valPath := fs.String("val", "", "validation data (`DIR` or IDX file); default: --val-split of --data")
	valSplit := fs.Float64("val-split", 0.2, "`FRACTION` of --data held out for validation when --val is not given (stratified)")
	labelsPath := fs.String("labels", "", "IDX labels `FILE` for an IDX --data (default: the standard name beside it)")
	classList := fs.String("classes", "", "IDX data only: keep these label values, relabelled 0..k-1 in this order (e.g. 5,6,7,8,9)")
	perClass := fs.Int("per-class", 0, "IDX data only: keep the first `N` examples of each class (seeded order)")
	var freeze, unfreeze listFlag
	fs.Var(&freeze, "freeze", "freeze parameters matching `SEL` (backbone, head, op:TYPE, prefix:P, glob; repeatable)")
	fs.Var(&unfreeze, "unfreeze", "unfreeze parameters matching `SEL` (repeatable)")
	replace := fs.Int("replace-head", 0, "replace the head with Linear(in, `K`) even if it already has K outputs")
	head := fs.String("head", "", "the head's node `NAME`, when it cannot be found automatically")
	epochs := fs.Int("epochs", 10, "training `EPOCHS`")
	lr := fs.Float64("lr", 0.001, "learning `RATE`")
	momentum := fs.Float64("momentum", 0.9, "SGD `MOMENTUM`")
	wd := fs.Float64("weight-decay", 0, "weight `DECAY` (L2)")
	optimizer := fs.String("optimizer", "sgd", "`NAME`: sgd, adam or adamw")
	schedule := fs.String("schedule", "none", "learning-rate `SCHEDULE`: none, cosine or step:SIZE,GAMMA")
	batch := fs.Int("batch", 32, "`BATCH` size")
	seed := fs.Int64("seed", 0, "random `SEED` (head initialisation, shuffles, augmentation, split)")
	augment := fs.Bool("augment", false, "random resized crops and horizontal flips on the training images")
	noCache := fs.Bool("no-cache", false, "recompute the frozen backbone's features every epoch")
	skipBad := fs.Bool("skip-bad", false, "skip (and count) images that do not decode, instead of stopping")
	resume := fs.Bool("resume", false, "continue an interrupted run from the checkpoint folder")
	mean := fs.String("mean", "", "input normalisation `MEANS` (comma list; default ImageNet's for 3-channel models, none for 1)")
	std := fs.String("std", "", "input normalisation `STDS` (comma list)")
	var hard hardening
	fs.StringVar(&hard.adv, "adv", "", "adversarial training: `ATTACK` (fgsm) examples replace part of each batch")
	fs.Float64Var(&hard.advEps, "adv-eps", 0.1, "adversarial step `EPS` in pixel units ([0,1] inputs)")
	fs.Float64Var(&hard.advRatio, "adv-ratio", 0.5, "`SHARE` of each batch made adversarial")
	fs.StringVar(&hard.noise, "noise", "", "noise injection: `KIND` (gaussian) added to every training input")
	fs.Float64Var(&hard.noiseStd, "noise-std", 0.1, "noise standard `DEVIATION` in pixel units")
	out := fs.String("o", "", "output model `PATH` (required)")
	metricsDir := fs.String("metrics", "", "`DIR` for metrics.json, training.png and checkpoint/ (default: the output's folder)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 0:
		return usage("unexpected arguments %v (the model is --model)", pos)
	case *modelPath == "":
		return usage("--model is required")
	case *dataPath == "":
		return usage("--data is required")
	case *out == "":
		return usage("-o OUT.onnx is required")
	case *epochs < 1:
		return usage("--epochs %d: want at least 1", *epochs)
	case *batch < 1:
		return usage("--batch %d: want at least 1", *batch)
	case *lr <= 0:
		return usage("--lr %g: want a positive learning rate", *lr)
	case *replace < 0:
		return usage("--replace-head %d: want at least 1 class", *replace)
	case *valPath == "" && (*valSplit <= 0 || *valSplit >= 1):
		return usage("--val-split %g: want a fraction between 0 and 1", *valSplit)
	}
	if err := hard.check(); err != nil {
		return err
	}
	if hard.active() && (*mean != "" || *std != "") {
		return usage("--adv and --noise perturb pixels in [0, 1]: put the normalisation inside the model (graft surgery --normalize) instead of --mean/--std")
	}
	if *metricsDir == "" {
		*metricsDir = filepath.Dir(*out)
	}
	// Fail on an unwritable output before any work.
	if err := checkWritable(*out); err != nil {
		return err
	}
	if err := os.MkdirAll(*metricsDir, 0o755); err != nil {
		return fmt.Errorf("metrics folder: %w", err)
	}
	m, err := onnx.Load(*modelPath)
	if err != nil {
		return err
	}
	pre, err := preprocessingFor(m, *mean, *std)
	if err != nil {
		return err
	}
	pre.Augment = *augment
	if hard.active() && pre.Mean != nil {
		return fmt.Errorf("--adv and --noise perturb pixels in [0, 1], but %s takes normalised inputs: put the normalisation inside it first (graft surgery --normalize MEAN/STD)", *modelPath)
	}

	open := func(path string) (*dataset.Dataset, error) {
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			var opts []dataset.Option
			if *skipBad {
				opts = append(opts, dataset.SkipBad())
			}
			return dataset.ImageFolder(path, opts...)
		}
		labels := *labelsPath
		if labels == "" || path != *dataPath {
			l, err := data.IDXLabelsPath(path)
			if err != nil {
				return nil, err
			}
			labels = l
		}
		ds, err := dataset.IDX(path, labels)
		if err != nil {
			return nil, err
		}
		if *classList != "" {
			var keep []int
			for _, s := range strings.Split(*classList, ",") {
				k, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil {
					return nil, usage("--classes: %q is not a label", s)
				}
				keep = append(keep, k)
			}
			if ds, err = ds.Select(keep...); err != nil {
				return nil, err
			}
		}
		if *perClass > 0 && path == *dataPath {
			return ds.PerClass(*perClass, *seed)
		}
		return ds, nil
	}
	trainDS, err := open(*dataPath)
	if err != nil {
		return err
	}
	if n := trainDS.Skipped(); n > 0 {
		fmt.Fprintf(stdout, "skipped %d images that do not decode (first: %v)\n", n, trainDS.SkippedErrors()[0])
	}
	var valDS *dataset.Dataset
	if *valPath != "" {
		if valDS, err = open(*valPath); err != nil {
			return err
		}
		if err := dataset.SameClasses(trainDS, valDS); err != nil {
			return err
		}
	} else if trainDS, valDS, err = dataset.Split(trainDS, *valSplit, *seed); err != nil {
		return err
	}
	tcfg, err := pre.Config(trainDS, *batch, true, *seed)
	if err != nil {
		return err
	}
	trainSrc, err := dataset.NewLoader(trainDS, tcfg)
	if err != nil {
		return err
	}
	evalPre := pre
	evalPre.Augment = false
	vcfg, err := evalPre.Config(valDS, *batch, false, *seed)
	if err != nil {
		return err
	}
	valSrc, err := dataset.NewLoader(valDS, vcfg)
	if err != nil {
		return err
	}
	job := &finetuneJob{
		model: m, classes: trainDS.Classes(), train: trainSrc, val: valSrc,
		augmented: *augment, noCache: *noCache, harden: hard,
		replaceHead: *replace, headNode: *head, freeze: freeze, unfreeze: unfreeze,
		epochs: *epochs, optimizer: *optimizer, lr: *lr, momentum: *momentum, weightDecay: *wd,
		schedule: *schedule, seed: *seed,
		out: *out, metricsDir: *metricsDir, resume: *resume,
		progress: stdout, terminal: stdout == io.Writer(os.Stdout) && isTerminal(os.Stdout),
	}
	fmt.Fprintf(stdout, "fine-tuning %s on %d training and %d validation images of %d classes (%s)\n",
		*modelPath, trainDS.Len(), valDS.Len(), len(job.classes), strings.Join(job.classes, ", "))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := job.run(ctx)
	if err != nil {
		return err
	}
	h := res.history
	if h == nil || h.BestEpoch < 0 {
		return fmt.Errorf("interrupted before the first epoch finished: nothing was written")
	}
	if res.stopped {
		fmt.Fprintf(stdout, "interrupted after %d epochs; ", len(h.Epochs))
	}
	fmt.Fprintf(stdout, "best validation accuracy %.2f%% (epoch %d) in %.1f s; wrote %s, metrics.json and training.png in %s\n",
		100*h.BestAccuracy, h.BestEpoch+1, res.seconds, *out, *metricsDir)
	return nil
}

// preprocessingFor reads the model's image input (channels, height,
// width) and the usual preprocessing for it, with --mean/--std overrides.
func preprocessingFor(m *onnx.Model, mean, std string) (dataset.Preprocessing, error) {
	in := firstInputValue(m)
	if in == nil || in.Type == nil || len(in.Type.Shape) != 4 {
		return dataset.Preprocessing{}, fmt.Errorf("the model's input is not an image batch [N, C, H, W]")
	}
	dims := make([]int, 3)
	for i, d := range in.Type.Shape[1:] {
		if !d.Known() {
			return dataset.Preprocessing{}, fmt.Errorf("input %q has shape %v: its channels and size must be fixed", in.Name, in.Type.Shape)
		}
		dims[i] = int(d.Value)
	}
	pre := dataset.ForInput(dims[0], dims[1], dims[2])
	if m.Graph.Node(surgery.NormalizeNode) != nil {
		// graft surgery --normalize put the normalisation inside: feed pixels.
		pre.Mean, pre.Std = nil, nil
	}
	var err error
	if mean != "" {
		if pre.Mean, err = parseFloats(mean); err != nil {
			return pre, usage("--mean: %v", err)
		}
	}
	if std != "" {
		if pre.Std, err = parseFloats(std); err != nil {
			return pre, usage("--std: %v", err)
		}
	}
	if (pre.Mean == nil) != (pre.Std == nil) {
		return pre, usage("give both --mean and --std")
	}
	return pre, pre.Check()
}

func firstInputValue(m *onnx.Model) *onnx.Value {
	for _, v := range m.Graph.Inputs {
		if !v.IsConst() {
			return v
		}
	}
	return nil
}
