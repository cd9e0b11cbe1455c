package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/graft-dev/graft/attacks"
	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/dataset"
)

func init() {
	register(&command{
		name:  "robustness",
		short: "attack a classifier at a range of radii and report accuracy against eps",
		args: "--model M.onnx --data DIR|IMAGES-idx3-ubyte[.gz] [--labels FILE] -o REPORT_DIR\n" +
			"       [--attack fgsm|bim|pgd] [--eps 0,0.05,...] [--steps N] [--alpha A] [--seed S]\n" +
			"       [--target CLASS|next] [--mean M --std S] [--limit N] [--batch N] [--shard I/N]",
		summary: "Attack a classifier at a range of L-inf radii and report accuracy against eps.\n\n" +
			"Data is an image folder (a sub-folder per class) or an IDX image file (MNIST/Fashion-MNIST\n" +
			"format, gzipped or not) with its labels file (found by the standard name,\n" +
			"train-images-idx3-ubyte -> train-labels-idx1-ubyte, or given with --labels). Images are\n" +
			"fed as the model's contract says (see graft inspect: size, resize, channels), as pixels\n" +
			"in [0,1]; eps is in those units. The contract's normalisation (or --mean/--std) is put\n" +
			"inside a copy of the model, unless the model normalises its input itself.\n" +
			"Writes report.json, report.md, accuracy_vs_eps.png and examples.png to REPORT_DIR.\n\n" +
			"With --shard I/N (0 <= I < N) it attacks only shard I of N: the examples, in the data set's order\n" +
			"after --limit, cut into blocks of --batch and dealt round robin (block b to shard b mod N), and\n" +
			"writes that shard's report.json alone; graft merge-reports combines the N shards' folders into the\n" +
			"report a single run writes, bit for bit.",
		run: runRobustness,
	})
}

// robustStderr receives the progress line; tests replace it.
var robustStderr io.Writer = os.Stderr

func runRobustness(args []string, stdout io.Writer) error {
	c := lookup("robustness")
	fs := newFlags(c, stdout)
	var model, dataPath, labels, out, attack, eps, mean, std, target string
	var steps int
	var alpha float64
	var seed int64
	var opts attacks.RobustnessOptions
	fs.StringVar(&model, "model", "", "the classifier, an ONNX `file` (required)")
	fs.StringVar(&dataPath, "data", "", "an image folder (a sub-folder per class, sorted names are the labels) or an IDX image `file`, e.g. t10k-images-idx3-ubyte.gz (required)")
	fs.StringVar(&labels, "labels", "", "IDX labels `file` (default: derived from the image file's name)")
	fs.StringVar(&out, "o", "", "report `folder` (required; created if missing)")
	fs.StringVar(&out, "out", "", "report `folder`, same as -o")
	fs.StringVar(&attack, "attack", "fgsm", "`attack`: fgsm, bim or pgd")
	fs.StringVar(&eps, "eps", "0,0.05,0.1,0.15,0.2,0.25,0.3", "comma-separated L-inf `radii`, pixels in [0,1]")
	fs.IntVar(&steps, "steps", 10, "bim/pgd: `iterations`")
	fs.Float64Var(&alpha, "alpha", 0, "bim/pgd: step `size` (default 2.5*eps/steps)")
	fs.Int64Var(&seed, "seed", 0, "pgd: `seed` of the random starts")
	fs.StringVar(&target, "target", "", "targeted attack towards `class` (a number, or next: label+1)")
	fs.StringVar(&mean, "mean", "", "per-channel `values` of the normalisation (x-mean)/std put inside the model, with --std (default: the model's contract)")
	fs.StringVar(&std, "std", "", "per-channel `values` (with --mean)")
	fs.IntVar(&opts.Limit, "limit", 0, "attack only `n` examples: the first n of IDX data, n spread over the classes of a folder (0: all)")
	fs.IntVar(&opts.Batch, "batch", attacks.DefaultBatch, "examples per `batch`")
	shard := fs.String("shard", "", "attack only shard `I/N` (0-based) of the examples, for graft merge-reports")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usage("unexpected argument %q (the model is given with --model)", pos[0])
	}
	switch {
	case model == "":
		return usage("--model is required")
	case dataPath == "":
		return usage("--data is required")
	case out == "":
		return usage("-o REPORT_DIR is required")
	case steps < 1:
		return usage("--steps must be at least 1")
	case alpha < 0:
		return usage("--alpha must not be negative")
	case opts.Limit < 0:
		return usage("--limit must not be negative")
	case opts.Batch < 1:
		return usage("--batch must be at least 1")
	}
	switch strings.ToLower(attack) {
	case "fgsm":
		opts.Attack = attacks.FGSM{}
	case "bim":
		opts.Attack = attacks.BIM{Steps: steps, Alpha: alpha}
	case "pgd":
		opts.Attack = &attacks.PGD{Steps: steps, Alpha: alpha, Seed: seed}
	default:
		return usage("unknown attack %q: want fgsm, bim or pgd", attack)
	}
	if *shard != "" {
		if opts.Shard, err = dataset.ParseShard(*shard); err != nil {
			return usage("--shard: %v", err)
		}
	}
	if opts.Eps, err = robustParseEps(eps); err != nil {
		return err
	}
	if opts.Overrides.Mean, opts.Overrides.Std, err = parseMeanStdFlags(mean, std); err != nil {
		return err
	}
	switch target {
	case "":
	case "next":
		opts.Target = attacks.NextClass
	default:
		t, err := strconv.Atoi(target)
		if err != nil || t < 0 {
			return usage("--target: %q is not a class number or next", target)
		}
		opts.Target = attacks.TargetClass(t)
	}

	// Data first: it is the cheap part to get wrong.
	ds, err := dataset.Open(dataPath, dataset.OpenOptions{Labels: labels})
	if err != nil {
		return dataUsage(err)
	}
	desc := strings.Join(ds.Inputs(), ", ")
	m, err := onnx.Load(model)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(model)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	plan := modelPlan(model, m)
	for _, f := range ds.Inputs() {
		plan.Input(f, "--data")
	}
	plan.OutputDir(out, "-o")
	for _, f := range reportFiles(*shard != "") {
		plan.Output(filepath.Join(out, f), "")
	}
	if err := plan.Check(); err != nil {
		return err
	}
	lock, err := fileio.LockDir(out)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	opts.Model, opts.ModelSHA256, opts.Data = model, hex.EncodeToString(sum[:]), desc
	start := time.Now()
	progress, endLine := robustProgress(robustStderr, start)
	opts.Progress = progress
	ctx, stop := interruptible()
	defer stop()
	r, err := attacks.Robustness(ctx, m, ds, opts)
	endLine()
	if err != nil {
		return err
	}
	if err := r.WriteDir(out); err != nil {
		return err
	}
	if r.Shard != nil {
		fmt.Fprintf(stdout, "shard %v: %s on %d of %d examples (clean accuracy %.4f on these); wrote %s: combine the %d shards' folders with graft merge-reports\n",
			*r.Shard, opts.Attack.Info(), r.Examples, r.Detail.Total, r.CleanAccuracy, filepath.Join(out, attacks.ReportJSON), r.Shard.Count)
		return nil
	}
	printSweep(stdout, r)
	fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(out, attacks.ReportMarkdown))
	return nil
}

// reportFiles lists the files a report folder gets: report.json alone for
// a shard's report.
func reportFiles(shard bool) []string {
	if shard {
		return []string{attacks.ReportJSON}
	}
	return []string{attacks.ReportJSON, attacks.ReportMarkdown, attacks.AccuracyPlot, attacks.ExamplesImage}
}

// printSweep prints a report's table and the contract's warnings.
func printSweep(stdout io.Writer, r *attacks.Report) {
	fmt.Fprintf(stdout, "%s on %d examples (clean accuracy %.4f):\n", r.Settings.Attack, r.Examples, r.CleanAccuracy)
	fmt.Fprintf(stdout, "  %-6s %-9s %-13s %s\n", "eps", "accuracy", "success rate", "mean confidence")
	for _, p := range r.Points {
		fmt.Fprintf(stdout, "  %-6g %-9.4f %-13.4f %.4f\n", p.Eps, p.Accuracy, p.SuccessRate, p.MeanConfidence)
	}
	for _, w := range r.Settings.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
}

// robustData opens --data: an image folder, or IDX images with their
// labels (given, or found by the standard name). desc names it for the
func robustParseEps(s string) ([]float64, error) {
	eps, err := parseNumbers("--eps", s)
	if err != nil {
		return nil, err
	}
	for _, e := range eps {
		if !(e >= 0 && e <= 1) {
			return nil, usage("--eps: %g is not a radius in [0, 1] (pixels are in [0, 1]: 8/255 is 0.0314)", e)
		}
	}
	if len(eps) == 0 {
		return nil, usage("--eps: no radii")
	}
	return eps, nil
}

// robustProgress returns a progress callback, an updating line on a
// terminal and a line per quarter otherwise, and a function that ends an
// unfinished terminal line.
func robustProgress(w io.Writer, start time.Time) (progress func(done, total int), end func()) {
	f, ok := w.(*os.File)
	term := ok && isTerminal(f)
	quarter, open := 0, false
	end = func() {
		if open {
			fmt.Fprintln(w)
			open = false
		}
	}
	return func(done, total int) {
		line := fmt.Sprintf("robustness: %d/%d examples (%d%%), %.1f s", done, total, 100*done/total, time.Since(start).Seconds())
		switch {
		case term:
			fmt.Fprintf(w, "\r%s", line)
			open = true
		case 4*done/total > quarter:
			quarter = 4 * done / total
			fmt.Fprintln(w, line)
		}
	}, end
}
