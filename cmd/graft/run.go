package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/predict"
)

func init() {
	register(&command{
		name:  "run",
		short: "classify images or a tensor file with a model",
		args: "MODEL.onnx --input FILE|DIR [--topk 5] [--labels FILE] [--json] [--save-output OUT.pb]\n" +
			"       [--resize N] [--crop N] [--mean M,M,M --std S,S,S] [--batch 16]",
		summary: "Run a model on images (PNG, JPEG, GIF) or a tensor (.pb) and print the top classes.\n\n" +
			"Images are fed as the model's contract says (see graft inspect): torchvision's Resize,\n" +
			"CenterCrop, ToTensor and Normalize, with PIL's pixels; the size, resize and normalisation\n" +
			"come from what graft stored in the model, else its graph (a model that normalises its\n" +
			"input itself gets pixels in [0,1]), else ImageNet's defaults. The flags override them.\n" +
			"A folder runs every image in it, sorted by name, in batches. A .pb TensorProto is fed\n" +
			"as is. Probabilities follow the model's output: the softmax of logits, the exp of\n" +
			"log-probabilities (a final LogSoftmax), the output itself after a Softmax or Sigmoid.",
		run: runRun,
	})
}

// RunReport is what graft run --json prints.
type RunReport struct {
	Model       string     `json:"model"`
	Input       TensorInfo `json:"input"`
	Output      TensorInfo `json:"output"`
	OutputShape []int      `json:"output_shape"`
	Scores      string     `json:"scores"` // how probabilities were computed
	// Preprocess is the image preprocessing applied; absent for tensors.
	Preprocess  *dataset.Preprocessing `json:"preprocess,omitempty"`
	Notes       []string               `json:"notes,omitempty"`
	Warnings    []string               `json:"warnings,omitempty"`
	SavedOutput string                 `json:"saved_output,omitempty"`
	Results     []RunResult            `json:"results"`
}

// RunResult is the top-k of one example.
type RunResult struct {
	Source string     `json:"source"`
	Top    []RunClass `json:"top"`
}

// RunClass is one class of a top-k list.
type RunClass struct {
	Class       int     `json:"class"`
	Label       string  `json:"label,omitempty"`
	Probability float64 `json:"probability"`
	Output      float64 `json:"output"` // the raw output value
}

func runRun(args []string, stdout io.Writer) error {
	c := lookup("run")
	fs := newFlags(c, stdout)
	var input, labels, save, mean, std string
	var asJSON bool
	opts := predict.Options{}
	fs.StringVar(&input, "input", "", "an image, a folder of images, or a TensorProto .pb `file` (required)")
	fs.IntVar(&opts.TopK, "topk", predict.DefaultTopK, "print the `k` most probable classes")
	fs.StringVar(&labels, "labels", "", "class labels, one per line, in class order, in `file` (default: the names stored in the model)")
	fs.BoolVar(&asJSON, "json", false, "print the results as JSON")
	fs.StringVar(&save, "save-output", "", "write the first output, raw, as a TensorProto `file`")
	fs.IntVar(&opts.Overrides.Resize, "resize", 0, "resize images' shorter side to `n` pixels (default: the model's contract)")
	fs.IntVar(&opts.Overrides.Crop, "crop", 0, "center-crop images to `n`×n, for models whose input size is free (default: the model's contract, else 224)")
	fs.StringVar(&mean, "mean", "", "per-channel `values` subtracted after scaling to [0,1], with --std (default: the model's contract)")
	fs.StringVar(&std, "std", "", "per-channel `values` to divide by, with --mean")
	fs.IntVar(&opts.Batch, "batch", predict.DefaultBatch, "examples per run, when the model's batch size is not fixed")
	force := fs.Bool("force", false, "let --save-output replace a read-only file or an input")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usage("want exactly one model file, got %d arguments", len(pos))
	}
	switch {
	case input == "":
		return usage("--input is required")
	case opts.TopK < 1:
		return usage("--topk must be at least 1")
	case opts.Batch < 1:
		return usage("--batch must be at least 1")
	case opts.Overrides.Resize < 0 || opts.Overrides.Crop < 0:
		return usage("--resize and --crop must be positive (0 picks the default)")
	}
	if opts.Overrides.Mean, opts.Overrides.Std, err = parseMeanStdFlags(mean, std); err != nil {
		return err
	}
	if labels != "" {
		if opts.Overrides.Classes, err = runReadLabels(labels); err != nil {
			return err
		}
	}
	m, err := onnx.Load(pos[0])
	if err != nil {
		return err
	}
	plan := modelPlan(pos[0], m)
	plan.Input(input, "--input")
	if labels != "" {
		plan.Input(labels, "--labels")
	}
	var forced []fileio.Option
	if *force {
		forced = append(forced, fileio.Force())
	}
	if save != "" {
		plan.Output(save, "--save-output", forced...)
	}
	if err := plan.Check(); err != nil {
		return err
	}
	p, err := predict.New(m, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	ctx, stop := interruptible()
	defer stop()
	res, err := p.Path(ctx, input)
	if err != nil {
		return err
	}
	if save != "" {
		if err := (onnx.SaveOptions{Force: *force}).SaveTensor(res.Scores, save); err != nil {
			return err
		}
	}
	rep := runReport(pos[0], m, res)
	rep.SavedOutput = save
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	runPrint(stdout, rep)
	return nil
}

// runReadLabels reads a class-name file, one name a line.
func runReadLabels(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("labels %s: the file is empty", path)
	}
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return lines, nil
}

// runReport turns the library's result into the printed report.
func runReport(model string, m *onnx.Model, res *predict.Result) *RunReport {
	c := res.Contract
	rep := &RunReport{Model: model, Preprocess: res.Preprocessing, Scores: scoresText(c.Output),
		Notes: c.Notes, Warnings: c.Warnings}
	for _, v := range m.Graph.Inputs {
		if v.Name == c.Input.Name {
			rep.Input = tensorInfo(v)
		}
	}
	rep.Output = tensorInfo(m.Graph.Outputs[0])
	for _, d := range res.Scores.Dims {
		rep.OutputShape = append(rep.OutputShape, int(d))
	}
	for _, ex := range res.Examples {
		r := RunResult{Source: ex.Source}
		for _, cl := range ex.Top {
			r.Top = append(r.Top, RunClass{Class: cl.Class, Label: cl.Label, Probability: cl.Probability, Output: cl.Score})
		}
		rep.Results = append(rep.Results, r)
	}
	return rep
}

// scoresText says how the probabilities were computed from the output.
func scoresText(out contract.Output) string {
	switch out.Kind {
	case contract.Probabilities:
		if out.Activation != "" {
			return fmt.Sprintf("the output (the model ends in %s)", out.Activation)
		}
		return "the output (the model's contract says it holds probabilities)"
	case contract.LogProbabilities:
		if out.Activation != "" {
			return fmt.Sprintf("exp of the output (the model ends in %s)", out.Activation)
		}
		return "exp of the output (the model's contract says it holds log-probabilities)"
	}
	return "softmax of the output"
}

func runPrint(w io.Writer, r *RunReport) {
	fmt.Fprintf(w, "model:   %s\n", r.Model)
	fmt.Fprintf(w, "input:   %s %s\n", r.Input.Name, r.Input.typeString())
	if p := r.Preprocess; p != nil {
		norm := "none"
		if p.Mean != nil || p.Std != nil {
			norm = fmt.Sprintf("mean %v std %v", p.Mean, p.Std)
		}
		fmt.Fprintf(w, "images:  %d channels, resize %d, center crop %dx%d, normalize %s\n", p.Channels, p.Resize, p.Width, p.Height, norm)
	}
	fmt.Fprintf(w, "output:  %s %s; probabilities: %s\n", r.Output.Name, strings.ReplaceAll(fmt.Sprint(r.OutputShape), " ", ","), r.Scores)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note:    %s\n", n)
	}
	for _, n := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", n)
	}
	if r.SavedOutput != "" {
		fmt.Fprintf(w, "saved:   %s\n", r.SavedOutput)
	}
	for _, res := range r.Results {
		fmt.Fprintf(w, "%s\n", res.Source)
		for i, c := range res.Top {
			fmt.Fprintf(w, "  %d. class %-4d %.4f", i+1, c.Class, c.Probability)
			if c.Label != "" {
				fmt.Fprintf(w, "  %s", c.Label)
			}
			fmt.Fprintln(w)
		}
	}
}
