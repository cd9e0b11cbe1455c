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
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/data"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/surgery"
)

func init() {
	register(&command{
		name: "robustness",
		args: "--model M.onnx --data DIR|IMAGES-idx3-ubyte[.gz] [--labels FILE] -o REPORT_DIR\n" +
			"       [--attack fgsm|bim|pgd] [--eps 0,0.05,...] [--steps N] [--alpha A] [--seed S]\n" +
			"       [--target CLASS|next] [--mean M --std S] [--limit N] [--batch N]",
		summary: "Attack a classifier at a range of L-inf radii and report accuracy against eps.\n\n" +
			"Data is an image folder (a sub-folder per class; images resized and center-cropped to the\n" +
			"model's input) or an IDX image file (MNIST/Fashion-MNIST format, gzipped or not) with its\n" +
			"labels file (found by the standard name, train-images-idx3-ubyte -> train-labels-idx1-ubyte,\n" +
			"or given with --labels). Pixels are fed in [0,1] and eps is in those units; a model\n" +
			"that expects normalised inputs gets (x-mean)/std inserted in front with --mean/--std.\n" +
			"Writes report.json, report.md, accuracy_vs_eps.png and examples.png to REPORT_DIR.",
		run: runRobustness,
	})
}

// robustStderr receives the progress line; tests replace it.
var robustStderr io.Writer = os.Stderr

type robustFlags struct {
	model, data, labels, out, attack, eps, mean, std, target string
	steps, limit, batch                                      int
	alpha                                                    float64
	seed                                                     int64
}

func runRobustness(args []string, stdout io.Writer) error {
	c := lookup("robustness")
	fs := newFlags(c, stdout)
	var f robustFlags
	fs.StringVar(&f.model, "model", "", "the classifier, an ONNX `file` (required)")
	fs.StringVar(&f.data, "data", "", "an image folder (a sub-folder per class, sorted names are the labels) or an IDX image `file`, e.g. t10k-images-idx3-ubyte.gz (required)")
	fs.StringVar(&f.labels, "labels", "", "IDX labels `file` (default: derived from the image file's name)")
	fs.StringVar(&f.out, "o", "", "report `folder` (required; created if missing)")
	fs.StringVar(&f.out, "out", "", "report `folder`, same as -o")
	fs.StringVar(&f.attack, "attack", "fgsm", "`attack`: fgsm, bim or pgd")
	fs.StringVar(&f.eps, "eps", "0,0.05,0.1,0.15,0.2,0.25,0.3", "comma-separated L-inf `radii`, pixels in [0,1]")
	fs.IntVar(&f.steps, "steps", 10, "bim/pgd: `iterations`")
	fs.Float64Var(&f.alpha, "alpha", 0, "bim/pgd: step `size` (default 2.5*eps/steps)")
	fs.Int64Var(&f.seed, "seed", 0, "pgd: `seed` of the random starts")
	fs.StringVar(&f.target, "target", "", "targeted attack towards `class` (a number, or next: label+1)")
	fs.StringVar(&f.mean, "mean", "", "per-channel `values`: insert (x-mean)/std in front of the model")
	fs.StringVar(&f.std, "std", "", "per-channel `values` (with --mean)")
	fs.IntVar(&f.limit, "limit", 0, "attack only the first `n` examples (0: all)")
	fs.IntVar(&f.batch, "batch", 100, "examples per `batch`")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usage("unexpected argument %q (the model is given with --model)", pos[0])
	}
	switch {
	case f.model == "":
		return usage("--model is required")
	case f.data == "":
		return usage("--data is required")
	case f.out == "":
		return usage("-o REPORT_DIR is required")
	case f.steps < 1:
		return usage("--steps must be at least 1")
	case f.alpha < 0:
		return usage("--alpha must not be negative")
	case f.limit < 0:
		return usage("--limit must not be negative")
	case f.batch < 1:
		return usage("--batch must be at least 1")
	case (f.mean == "") != (f.std == ""):
		return usage("--mean and --std go together")
	}
	var attack attacks.Attack
	switch strings.ToLower(f.attack) {
	case "fgsm":
		attack = attacks.FGSM{}
	case "bim":
		attack = attacks.BIM{Steps: f.steps, Alpha: f.alpha}
	case "pgd":
		attack = &attacks.PGD{Steps: f.steps, Alpha: f.alpha, Seed: f.seed}
	default:
		return usage("unknown attack %q: want fgsm, bim or pgd", f.attack)
	}
	eps, err := robustParseEps(f.eps)
	if err != nil {
		return err
	}
	var mean, std []float32
	if f.mean != "" {
		if mean, err = parseFloats(f.mean); err != nil {
			return usage("--mean: %v", err)
		}
		if std, err = parseFloats(f.std); err != nil {
			return usage("--std: %v", err)
		}
		if len(mean) != len(std) {
			return usage("%d --mean values and %d --std values", len(mean), len(std))
		}
		for _, s := range std {
			if s == 0 {
				return usage("--std values must not be 0")
			}
		}
	}

	// Data first: it is the cheap part to get wrong.
	st, statErr := os.Stat(f.data)
	folder := statErr == nil && st.IsDir()
	var images *data.IDXImages
	var labels []int
	var labelsPath string
	var n int
	if !folder {
		images, err = data.ReadIDXImages(f.data)
		if err != nil {
			return err
		}
		labelsPath = f.labels
		if labelsPath == "" {
			if labelsPath, err = data.IDXLabelsPath(f.data); err != nil {
				return err
			}
		}
		labels, err = data.ReadIDXLabels(labelsPath)
		if err != nil {
			return err
		}
		if len(labels) != images.Count {
			return fmt.Errorf("%s has %d images but %s has %d labels", f.data, images.Count, labelsPath, len(labels))
		}
		n = images.Count
		if f.limit > 0 && f.limit < n {
			n = f.limit
		}
	}

	m, err := onnx.Load(f.model)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(f.model)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	in := firstInput(m)
	if in == "" {
		return fmt.Errorf("%s: the model has no inputs", f.model)
	}
	if mean != nil {
		if err := surgery.Apply(m, surgery.Normalize(in, mean, std)); err != nil {
			return fmt.Errorf("%s: %w", f.model, err)
		}
	}
	batch := f.batch
	var batches dataset.Source
	var desc string
	if folder {
		if batches, n, desc, err = robustFolder(m, f.data, f.limit, batch); err != nil {
			return err
		}
	} else {
		if err := robustCheckInput(m, in, images, &batch); err != nil {
			return fmt.Errorf("%s: %w", f.model, err)
		}
		if batches, err = robustBatches(images, labels, n, batch); err != nil {
			return err
		}
		desc = fmt.Sprintf("%s: %d of %d images %dx%d, labels %s", f.data, n, images.Count, images.Rows, images.Cols, labelsPath)
	}
	clf, err := attacks.NewClassifier(m, runtime.Options{})
	if err != nil {
		return fmt.Errorf("%s: %w", f.model, err)
	}
	var targets func([]int) []int
	if f.target != "" {
		if targets, err = robustTargets(f.target, m); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}

	start := time.Now()
	prog, endLine := robustProgress(robustStderr, n, start)
	r, err := attacks.Sweep(clf, batches, attacks.Config{
		Attack:   attack,
		Eps:      eps,
		Targets:  targets,
		Progress: prog,
	})
	endLine()
	if err != nil {
		return err
	}
	s := &r.Settings
	s.Model, s.ModelSHA256 = f.model, hex.EncodeToString(sum[:])
	s.Data = desc
	s.Limit = f.limit
	for i := range mean {
		s.Mean = append(s.Mean, float64(mean[i]))
		s.Std = append(s.Std, float64(std[i]))
	}
	if err := r.WriteDir(f.out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s on %d examples (clean accuracy %.4f):\n", attack.Info(), r.Examples, r.CleanAccuracy)
	fmt.Fprintf(stdout, "  %-6s %-9s %-13s %s\n", "eps", "accuracy", "success rate", "mean confidence")
	for _, p := range r.Points {
		fmt.Fprintf(stdout, "  %-6g %-9.4f %-13.4f %.4f\n", p.Eps, p.Accuracy, p.SuccessRate, p.MeanConfidence)
	}
	fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(f.out, attacks.ReportMarkdown))
	return nil
}

func robustParseEps(s string) ([]float64, error) {
	var eps []float64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		e, err := strconv.ParseFloat(part, 64)
		if err != nil || !(e >= 0 && e <= 1) {
			return nil, usage("--eps: %q is not a radius in [0, 1] (pixels are in [0, 1]: 8/255 is 0.0314)", part)
		}
		eps = append(eps, e)
	}
	if len(eps) == 0 {
		return nil, usage("--eps: no radii")
	}
	return eps, nil
}

// robustCheckInput checks that the model takes [batch, 1, rows, cols]
// images and fixes the batch size when the model's is fixed.
func robustCheckInput(m *onnx.Model, name string, im *data.IDXImages, batch *int) error {
	var v *onnx.Value
	for _, in := range m.Graph.Inputs {
		if in.Name == name {
			v = in
		}
	}
	if v == nil || v.Type == nil || v.Type.Shape == nil {
		return nil // unknown: the runtime reports a mismatch
	}
	s := v.Type.Shape
	want := []int{0, 1, im.Rows, im.Cols}
	if len(s) != 4 {
		return fmt.Errorf("input %q has %d dimensions, IDX images are fed as [batch, 1, %d, %d]", name, len(s), im.Rows, im.Cols)
	}
	for i := 1; i < 4; i++ {
		if s[i].Known() && s[i].Value != int64(want[i]) {
			return fmt.Errorf("input %q has shape %v, the IDX images are [batch, 1, %d, %d] (gray)", name, s, im.Rows, im.Cols)
		}
	}
	if s[0].Known() && s[0].Value > 0 {
		*batch = int(s[0].Value)
	}
	return nil
}

// robustTargets parses --target: a class for every example, or "next".
func robustTargets(s string, m *onnx.Model) (func([]int) []int, error) {
	k := 0
	if out := m.Graph.Outputs[0].Type; out != nil && len(out.Shape) == 2 && out.Shape[1].Known() {
		k = int(out.Shape[1].Value)
	}
	if s == "next" {
		if k == 0 {
			return nil, usage("--target next needs a model whose output has a fixed number of classes")
		}
		return func(labels []int) []int {
			t := make([]int, len(labels))
			for i, l := range labels {
				t[i] = (l + 1) % k
			}
			return t
		}, nil
	}
	c, err := strconv.Atoi(s)
	if err != nil || c < 0 || k > 0 && c >= k {
		return nil, usage("--target: %q is not a class (0 to %d) or next", s, k-1)
	}
	return func(labels []int) []int {
		t := make([]int, len(labels))
		for i := range t {
			t[i] = c
		}
		return t
	}, nil
}

// robustFolder serves an image folder (a sub-folder per class) as [0, 1]
// pixels at the model's input size: any normalisation is inside the model.
func robustFolder(m *onnx.Model, dir string, limit, batch int) (dataset.Source, int, string, error) {
	c, err := contract.Derive(m)
	if err != nil {
		return nil, 0, "", fmt.Errorf("%s: %w", dir, err)
	}
	pre, err := dataset.PreprocessingFor(c.Input)
	if err != nil {
		return nil, 0, "", fmt.Errorf("%s: %w", dir, err)
	}
	pre.Mean, pre.Std = nil, nil
	ds, err := dataset.ImageFolder(dir)
	if err != nil {
		return nil, 0, "", err
	}
	if h := m.Graph.Outputs[0].Type; h != nil && len(h.Shape) == 2 && h.Shape[1].Known() && int(h.Shape[1].Value) < len(ds.Classes()) {
		return nil, 0, "", fmt.Errorf("%s has %d classes but the model has %d outputs", dir, len(ds.Classes()), h.Shape[1].Value)
	}
	n := ds.Len()
	if limit > 0 && limit < n {
		idx := make([]int, limit)
		for i := range idx {
			idx[i] = i * n / limit // spread over the classes, which are stored in order
		}
		ds, n = ds.Subset(idx), limit
	}
	if batch <= 0 {
		batch = 32
	}
	cfg, err := pre.Config(ds, batch, false, 0)
	if err != nil {
		return nil, 0, "", err
	}
	l, err := dataset.NewLoader(ds, cfg)
	if err != nil {
		return nil, 0, "", err
	}
	desc := fmt.Sprintf("%s: %d images of %d classes (%s), resized to %d and center-cropped to %dx%d",
		dir, n, len(ds.Classes()), strings.Join(ds.Classes(), ", "), pre.Resize, pre.Width, pre.Height)
	return l, n, desc, nil
}

func robustBatches(im *data.IDXImages, labels []int, n, batch int) (dataset.Source, error) {
	return dataset.NewMemory(im.Tensor(0, n), labels[:n], batch, false, 0)
}

// robustProgress returns a progress callback, an updating line on a
// terminal and a line per quarter otherwise, and a function that ends an
// unfinished terminal line.
func robustProgress(w io.Writer, total int, start time.Time) (progress func(int), end func()) {
	term := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			term = true
		}
	}
	quarter, open := 0, false
	end = func() {
		if open {
			fmt.Fprintln(w)
			open = false
		}
	}
	return func(done int) {
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
