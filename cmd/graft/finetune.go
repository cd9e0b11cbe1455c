package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/finetune"
)

func init() {
	register(&command{
		name:  "finetune",
		short: "fine-tune a classifier on an image folder or IDX files",
		args: "--model M.onnx --data DIR|IDX [--val DIR|IDX] [--freeze backbone] --epochs N --lr X -o OUT.onnx\n" +
			"       graft finetune --model M.onnx --features DIR... [--val-features DIR...] --freeze backbone ... -o OUT.onnx",
		summary: "Fine-tune a classifier on an image folder (a sub-folder per class) or IDX files: the head is replaced when the class count " +
			"differs, frozen layers keep inference-mode BatchNorm, and with a frozen backbone and no augmentation its features are computed once. " +
			"Images are fed as the model's contract says (see graft inspect); the written model records it, with the class names. " +
			"Writes OUT.onnx (the best validation epoch), metrics.json, training.png, report.md and a resumable checkpoint folder. " +
			"With --features (the folders graft features wrote, every shard of one data set; more folders may follow as arguments) " +
			"the head trains on those features instead of images, as it trains on its own cache: the same model, byte for byte.",
		run: runFinetune,
	})
}

// finetuneFlags names the flag of each finetune.Options field, for errors.
var finetuneFlags = map[string]string{
	"Out": "-o", "Epochs": "--epochs", "Batch": "--batch", "ReplaceHead": "--replace-head", "LR": "--lr",
	"Momentum": "--momentum", "WeightDecay": "--weight-decay", "ValSplit": "--val-split", "Optimizer": "--optimizer",
	"Schedule": "--schedule", "Freeze": "--freeze", "Unfreeze": "--unfreeze", "Adversarial.Eps": "--adv-eps",
	"Adversarial.Ratio": "--adv-ratio", "NoiseStd": "--noise-std", "Overrides": "--mean/--std", "Workers": "--workers",
}

func runFinetune(args []string, stdout io.Writer) error {
	c := lookup("finetune")
	fs := newFlags(c, stdout)
	opts := finetune.DefaultOptions()
	modelPath := fs.String("model", "", "the pretrained `MODEL`.onnx (required)")
	dataPath := fs.String("data", "", "training data: an image `DIR` with a sub-folder per class, or an IDX images file (required)")
	valPath := fs.String("val", "", "validation data (`DIR` or IDX file); default: --val-split of --data")
	fs.Float64Var(&opts.ValSplit, "val-split", opts.ValSplit, "`FRACTION` of --data held out for validation when --val is not given (stratified)")
	var open dataset.OpenOptions
	fs.StringVar(&open.Labels, "labels", "", "IDX labels `FILE` for an IDX --data (default: the standard name beside it)")
	classList := fs.String("classes", "", "IDX data only: keep these label values, relabelled 0..k-1 in this order (e.g. 5,6,7,8,9)")
	fs.IntVar(&open.PerClass, "per-class", 0, "keep at most `N` examples of each class of --data (chosen by --seed)")
	fs.BoolVar(&open.SkipBad, "skip-bad", false, "image folders: skip (and count) images that do not decode, instead of stopping")
	fs.Var((*listFlag)(&opts.Freeze), "freeze", "freeze parameters matching `SEL` (backbone, head, all, op:TYPE, prefix:P, glob; repeatable)")
	fs.Var((*listFlag)(&opts.Unfreeze), "unfreeze", "unfreeze parameters matching `SEL` (repeatable)")
	fs.IntVar(&opts.ReplaceHead, "replace-head", 0, "replace the head with Linear(in, `K`) even if it already has K outputs")
	fs.StringVar(&opts.HeadNode, "head", "", "the head's node `NAME`, when it cannot be found automatically")
	fs.IntVar(&opts.Epochs, "epochs", opts.Epochs, "training `EPOCHS`")
	fs.Float64Var(&opts.LR, "lr", opts.LR, "learning `RATE`")
	fs.Float64Var(&opts.Momentum, "momentum", opts.Momentum, "SGD `MOMENTUM`")
	fs.Float64Var(&opts.WeightDecay, "weight-decay", 0, "weight `DECAY` (L2; decoupled for adamw)")
	fs.StringVar(&opts.Optimizer, "optimizer", opts.Optimizer, "`NAME`: sgd, adam or adamw")
	fs.StringVar(&opts.Schedule, "schedule", opts.Schedule, "learning-rate `SCHEDULE`: none, cosine or step:SIZE,GAMMA")
	fs.IntVar(&opts.Batch, "batch", opts.Batch, "`BATCH` size")
	fs.IntVar(&opts.Workers, "workers", 1, "split each batch over `N` replicas trained at once (data parallel, as nn.DataParallel)")
	fs.Int64Var(&opts.Seed, "seed", 0, "random `SEED` (head initialisation, split, shuffles, augmentation, noise)")
	fs.BoolVar(&opts.Augment, "augment", false, "random resized crops and horizontal flips on the training images")
	fs.BoolVar(&opts.NoCache, "no-cache", false, "recompute the frozen backbone's features every epoch")
	fs.BoolVar(&opts.Resume, "resume", false, "continue an interrupted run from the checkpoint folder (same model, data and settings)")
	mean := fs.String("mean", "", "input normalisation `MEANS` (comma list; default: the model's contract)")
	std := fs.String("std", "", "input normalisation `STDS` (comma list)")
	fs.IntVar(&opts.Overrides.Resize, "resize", 0, "resize images' shorter side to `N` before the center crop (default: the model's contract)")
	adv := fs.String("adv", "", "adversarial training: `ATTACK` (fgsm) examples replace part of each batch")
	advEps := fs.Float64("adv-eps", 0.1, "adversarial step `EPS` in pixel units ([0,1] inputs)")
	fs.Float64Var(&opts.Adversarial.Ratio, "adv-ratio", opts.Adversarial.Ratio, "`SHARE` of each batch made adversarial")
	noise := fs.String("noise", "", "noise injection: `KIND` (gaussian) added to every training input")
	noiseStd := fs.Float64("noise-std", 0.1, "noise standard `DEVIATION` in pixel units")
	fs.StringVar(&opts.Out, "o", "", "output model `PATH` (required)")
	fs.StringVar(&opts.Dir, "metrics", "", "`DIR` for metrics.json, training.png, report.md and checkpoint/ (default: the output's folder)")
	fs.BoolVar(&opts.Force, "force", false, "let -o replace a read-only file or the model itself")
	var featurePaths, valFeaturePaths listFlag
	fs.Var(&featurePaths, "features", "train the head on the features in `DIR` (graft features; repeatable, every shard of one data set) instead of --data")
	fs.Var(&valFeaturePaths, "val-features", "validate on the features in `DIR` (repeatable); default: --val-split of --features")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	onFeatures := len(featurePaths) > 0
	if onFeatures {
		featurePaths = append(featurePaths, pos...) // a shell glob's other folders
		pos = nil
	}
	switch {
	case len(pos) != 0:
		return usage("unexpected arguments %v (the model is --model)", pos)
	case *modelPath == "":
		return usage("--model is required")
	case onFeatures && (*dataPath != "" || *valPath != ""):
		return usage("--features and --data (or --val) both say what to train on: give one")
	case len(valFeaturePaths) > 0 && !onFeatures:
		return usage("--val-features needs --features")
	case onFeatures && set["val-split"] && len(valFeaturePaths) > 0:
		return usage("--val-split and --val-features both say what to validate on: give one")
	case !onFeatures && *dataPath == "":
		return usage("--data (or --features) is required")
	case set["replace-head"] && opts.ReplaceHead < 1:
		return usage("--replace-head %d: want at least 2 classes (leave it out to replace the head only when the class count differs)", opts.ReplaceHead)
	case set["val-split"] && *valPath != "":
		return usage("--val-split and --val both say what to validate on: give one")
	}
	switch *adv {
	case "":
		if set["adv-eps"] || set["adv-ratio"] {
			return usage("--adv-eps and --adv-ratio need --adv fgsm")
		}
	case "fgsm":
		opts.Adversarial.Eps = *advEps
		if *advEps == 0 {
			return usage("--adv-eps 0: want a radius above 0")
		}
	default:
		return usage("--adv %q: want fgsm", *adv)
	}
	switch *noise {
	case "":
		if set["noise-std"] {
			return usage("--noise-std needs --noise gaussian")
		}
	case "gaussian":
		opts.NoiseStd = *noiseStd
		if *noiseStd == 0 {
			return usage("--noise-std 0: want a standard deviation above 0")
		}
	default:
		return usage("--noise %q: want gaussian", *noise)
	}
	if opts.Overrides.Mean, err = parseFloatList("--mean", *mean); err != nil {
		return err
	}
	if opts.Overrides.Std, err = parseFloatList("--std", *std); err != nil {
		return err
	}
	if *classList != "" {
		if open.Classes, err = parseIntList("--classes", *classList); err != nil {
			return err
		}
	}
	if set["resize"] && opts.Overrides.Resize < 1 {
		return usage("--resize %d: want a side of at least 1 pixel", opts.Overrides.Resize)
	}
	if err := opts.Validate(); err != nil {
		return optionUsage(err, finetuneFlags)
	}

	if onFeatures {
		return finetuneOnFeatures(stdout, *modelPath, featurePaths, valFeaturePaths, opts)
	}
	open.Seed = opts.Seed
	trainData, err := dataset.Open(*dataPath, open)
	if err != nil {
		return dataUsage(err)
	}
	if n := trainData.Skipped(); n > 0 {
		fmt.Fprintf(stdout, "skipped %d images that do not decode (first: %v)\n", n, trainData.SkippedErrors()[0])
	}
	var valData *dataset.Dataset
	if *valPath != "" {
		valOpen := dataset.OpenOptions{Classes: open.Classes, SkipBad: open.SkipBad}
		if valData, err = dataset.Open(*valPath, valOpen); err != nil {
			return dataUsage(err)
		}
	}
	m, err := onnx.Load(*modelPath)
	if err != nil {
		return err
	}
	opts.ModelPath = *modelPath
	p := newProgress(stdout, opts.Epochs)
	opts.OnPhase, opts.OnBatch, opts.OnEpoch = p.phase, p.batch, p.epoch
	ctx, stop := interruptible()
	defer stop()
	fmt.Fprintf(stdout, "fine-tuning %s on %s (%s)\n", *modelPath, *dataPath, strings.Join(trainData.Classes(), ", "))
	res, err := finetune.Run(ctx, m, trainData, valData, opts)
	if err != nil {
		return optionUsage(err, finetuneFlags)
	}
	return finetuneDone(stdout, res, opts)
}

// finetuneOnFeatures is graft finetune --features: the head trained on
// the merged features of graft features.
func finetuneOnFeatures(stdout io.Writer, modelPath string, trainPaths, valPaths []string, opts finetune.Options) error {
	trainF, err := readFeatures(trainPaths)
	if err != nil {
		return err
	}
	var valF *finetune.Features
	if len(valPaths) > 0 {
		if valF, err = readFeatures(valPaths); err != nil {
			return err
		}
	}
	m, err := onnx.Load(modelPath)
	if err != nil {
		return err
	}
	opts.ModelPath = modelPath
	p := newProgress(stdout, opts.Epochs)
	opts.OnPhase, opts.OnBatch, opts.OnEpoch = p.phase, p.batch, p.epoch
	ctx, stop := interruptible()
	defer stop()
	fmt.Fprintf(stdout, "fine-tuning %s on the features of %s (%d examples, %s)\n", modelPath, trainF.Data, trainF.Examples, strings.Join(trainF.Classes, ", "))
	res, err := finetune.RunOnFeatures(ctx, m, trainF, valF, opts)
	if err != nil {
		return optionUsage(err, finetuneFlags)
	}
	return finetuneDone(stdout, res, opts)
}

// finetuneDone prints how a run ended.
func finetuneDone(stdout io.Writer, res *finetune.Result, opts finetune.Options) error {
	h := res.History
	if res.Stopped {
		fmt.Fprintf(stdout, "interrupted after %d epochs; ", len(h.Epochs))
	}
	dir := opts.Dir
	if dir == "" {
		dir = "the output's folder"
	}
	fmt.Fprintf(stdout, "best validation accuracy %.2f%% (epoch %d) in %.1f s; wrote %s, and metrics.json, training.png, report.md in %s\n",
		100*h.BestAccuracy, h.BestEpoch+1, res.Seconds, opts.Out, dir)
	return nil
}

// optionUsage turns a library's *OptionError into a usage error naming the
// flag; other errors pass through.
func optionUsage(err error, flags map[string]string) error {
	var oe *finetune.OptionError
	if errors.As(err, &oe) {
		name := flags[oe.Option]
		if name == "" {
			name = oe.Option
		}
		return usage("%s %v: %s", name, oe.Value, oe.Reason)
	}
	return err
}

// dataUsage turns a data option that does not apply into a usage error.
func dataUsage(err error) error {
	if errors.Is(err, dataset.ErrNotApplicable) {
		return usage("%s", strings.TrimPrefix(err.Error(), dataset.ErrNotApplicable.Error()+": "))
	}
	return err
}
