package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/finetune"
)

func init() {
	register(&command{
		name:  "features",
		short: "compute a frozen backbone's features (or one shard's) for graft finetune --features",
		args: "--model M.onnx --data DIR|IDX [--labels F] [--classes L] [--per-class N --seed S] [--skip-bad]\n" +
			"       [--batch N] [--mean M --std S] [--resize N] [--shard I/N] -o DIR",
		summary: "Run the frozen part of a classifier (everything before its head) over a data set, fed as the model's contract\n" +
			"says, and write the features to DIR/" + finetune.FeaturesFile + " (safetensors: index, labels and features,\n" +
			"with the model's SHA-256, the split point, the preprocessing, the data's fingerprint and the class names).\n" +
			"graft finetune --model M --features DIR... trains the head on them as graft finetune --data trains it on its own\n" +
			"cache: give both the same data options, --batch and --mean/--std/--resize, and the model written is the same.\n\n" +
			"With --shard I/N (0 <= I < N) only shard I is computed: the examples, in the data set's order, cut into\n" +
			"blocks of --batch and dealt round robin (block b to shard b mod N). The shards' features, merged, are the\n" +
			"single run's bit for bit.",
		run: runFeatures,
	})
}

func runFeatures(args []string, stdout io.Writer) error {
	c := lookup("features")
	fs := newFlags(c, stdout)
	opts := finetune.FeatureOptions{}
	modelPath := fs.String("model", "", "the classifier `MODEL`.onnx (required)")
	dataPath := fs.String("data", "", "an image `DIR` with a sub-folder per class, or an IDX images file (required)")
	var open dataset.OpenOptions
	fs.StringVar(&open.Labels, "labels", "", "IDX labels `FILE` (default: the standard name beside the images)")
	classList := fs.String("classes", "", "IDX data only: keep these label values, relabelled 0..k-1 in this order (as finetune --classes)")
	fs.IntVar(&open.PerClass, "per-class", 0, "keep at most `N` examples of each class (chosen by --seed, as finetune --per-class)")
	fs.Int64Var(&open.Seed, "seed", 0, "`SEED` of --per-class (finetune's --seed)")
	fs.BoolVar(&open.SkipBad, "skip-bad", false, "image folders: skip images that do not decode")
	fs.IntVar(&opts.Batch, "batch", finetune.DefaultOptions().Batch, "images at once, and the shards' block size (finetune's --batch)")
	mean := fs.String("mean", "", "input normalisation `MEANS` (comma list; default: the model's contract)")
	std := fs.String("std", "", "input normalisation `STDS` (comma list)")
	fs.IntVar(&opts.Overrides.Resize, "resize", 0, "resize images' shorter side to `N` before the center crop (default: the model's contract)")
	shard := fs.String("shard", "", "compute only shard `I/N` (0-based) of the examples")
	out := fs.String("o", "", "output `DIR` for "+finetune.FeaturesFile+" (required; created if missing)")
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
		return usage("-o DIR is required")
	case opts.Batch < 1:
		return usage("--batch must be at least 1")
	case opts.Overrides.Resize < 0:
		return usage("--resize %d: want a side of at least 1 pixel", opts.Overrides.Resize)
	}
	if *shard != "" {
		if opts.Shard, err = dataset.ParseShard(*shard); err != nil {
			return usage("--shard: %v", err)
		}
	}
	if opts.Overrides.Mean, opts.Overrides.Std, err = parseMeanStdFlags(*mean, *std); err != nil {
		return err
	}
	if *classList != "" {
		if open.Classes, err = parseIntList("--classes", *classList); err != nil {
			return err
		}
	}
	ds, err := dataset.Open(*dataPath, open)
	if err != nil {
		return dataUsage(err)
	}
	m, err := onnx.Load(*modelPath)
	if err != nil {
		return err
	}
	plan := modelPlan(*modelPath, m)
	for _, f := range ds.Inputs() {
		plan.Input(f, "--data")
	}
	plan.OutputDir(*out, "-o")
	file := filepath.Join(*out, finetune.FeaturesFile)
	plan.Output(file, "")
	if err := plan.Check(); err != nil {
		return err
	}
	lock, err := fileio.LockDir(*out)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	opts.Data = *dataPath
	ctx, stop := interruptible()
	defer stop()
	f, err := finetune.ComputeFeatures(ctx, m, ds, opts)
	if err != nil {
		return err
	}
	if err := f.WriteFile(file); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "features of %d of %d examples (shard %v, %v each) of %s at %q; wrote %s\n",
		len(f.Index), f.Examples, f.Shard, []int(f.Values.Shape()[1:]), *dataPath, f.SplitAt, file)
	return nil
}

// readFeatures reads and merges the features folders or files paths.
func readFeatures(paths []string) (*finetune.Features, error) {
	var parts []*finetune.Features
	for _, p := range paths {
		f, err := finetune.ReadFeatures(p)
		if err != nil {
			return nil, err
		}
		parts = append(parts, f)
	}
	return finetune.MergeFeatures(parts...)
}
