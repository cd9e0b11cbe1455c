package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/data"
	"gorgonia.org/tensor"
)

func init() {
	register(&command{
		name: "run",
		args: "MODEL.onnx --input FILE|DIR [--topk 5] [--labels FILE] [--json] [--save-output OUT.pb]\n" +
			"       [--resize N] [--crop N] [--mean M,M,M] [--std S,S,S] [--batch 16]",
		summary: "Run a model on images (PNG, JPEG, GIF) or a tensor (.pb) and print the top classes.\n\n" +
			"Images are preprocessed as torchvision's Resize(resize), CenterCrop(crop), ToTensor,\n" +
			"Normalize(mean, std) do on PIL images, with the same pixels. The crop defaults to the\n" +
			"model's input size (224 if not fixed), the resize to round(crop*256/224) (small inputs\n" +
			"under 64 pixels: the crop size itself, as graft finetune does), mean/std to\n" +
			"ImageNet's for 3-channel models and none for 1-channel ones (gray models get images\n" +
			"converted to gray). A folder runs every image in it, sorted by name, in batches.\n" +
			"A .pb TensorProto is fed as is. Probabilities are the softmax of the first output, or\n" +
			"the output itself (or its exp) when the model ends in Softmax (LogSoftmax).",
		run: runRun,
	})
}

// RunReport is what graft run --json prints.
type RunReport struct {
	Model       string         `json:"model"`
	Input       TensorInfo     `json:"input"`
	Output      TensorInfo     `json:"output"`
	OutputShape []int          `json:"output_shape"`
	Scores      string         `json:"scores"` // how probabilities were computed
	Preprocess  *RunPreprocess `json:"preprocess,omitempty"`
	SavedOutput string         `json:"saved_output,omitempty"`
	Results     []RunResult    `json:"results"`
}

// RunPreprocess is the image preprocessing graft run applied.
type RunPreprocess struct {
	Channels int       `json:"channels"`
	Resize   int       `json:"resize"`
	CropW    int       `json:"crop_width"`
	CropH    int       `json:"crop_height"`
	Mean     []float32 `json:"mean,omitempty"`
	Std      []float32 `json:"std,omitempty"`
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

type runFlags struct {
	input, labels, save, mean, std string
	topk, resize, crop, batch      int
	json                           bool
}

func runRun(args []string, stdout io.Writer) error {
	c := lookup("run")
	fs := newFlags(c, stdout)
	var f runFlags
	fs.StringVar(&f.input, "input", "", "an image, a folder of images, or a TensorProto .pb `file` (required)")
	fs.IntVar(&f.topk, "topk", 5, "print the `k` most probable classes")
	fs.StringVar(&f.labels, "labels", "", "class labels, one per line, in class order, in `file`")
	fs.BoolVar(&f.json, "json", false, "print the results as JSON")
	fs.StringVar(&f.save, "save-output", "", "write the first output, raw, as a TensorProto `file`")
	fs.IntVar(&f.resize, "resize", 0, "resize images' shorter side to `n` pixels (default round(crop*256/224), or the crop for inputs under 64)")
	fs.IntVar(&f.crop, "crop", 0, "center-crop images to `n`×n (default: the model's input size, else 224)")
	fs.StringVar(&f.mean, "mean", "", "per-channel `values` subtracted after scaling to [0,1] (default ImageNet's for 3 channels)")
	fs.StringVar(&f.std, "std", "", "per-channel `values` to divide by (default ImageNet's for 3 channels)")
	fs.IntVar(&f.batch, "batch", 16, "images per run, when the model's batch size is not fixed")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usage("want exactly one model file, got %d arguments", len(pos))
	}
	switch {
	case f.input == "":
		return usage("--input is required")
	case f.topk < 1:
		return usage("--topk must be at least 1")
	case f.batch < 1:
		return usage("--batch must be at least 1")
	case f.resize < 0 || f.crop < 0:
		return usage("--resize and --crop must be positive (0 picks the default)")
	}
	mean, err := runParseFloats("--mean", f.mean)
	if err != nil {
		return err
	}
	std, err := runParseFloats("--std", f.std)
	if err != nil {
		return err
	}
	for _, s := range std {
		if s == 0 {
			return usage("--std values must not be 0")
		}
	}
	var labels []string
	if f.labels != "" {
		if labels, err = runReadLabels(f.labels); err != nil {
			return err
		}
	}

	m, err := onnx.Load(pos[0])
	if err != nil {
		return err
	}
	prog, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	var in *onnx.Value
	var names []string
	for _, v := range m.Graph.Inputs {
		if !v.IsConst() {
			in = v
			names = append(names, strconv.Quote(v.Name))
		}
	}
	if len(names) != 1 {
		return fmt.Errorf("%s has %d inputs (%s); graft run feeds models with one input", pos[0], len(names), strings.Join(names, ", "))
	}
	if len(m.Graph.Outputs) == 0 {
		return fmt.Errorf("%s has no outputs", pos[0])
	}
	if in.Type != nil && in.Type.Elem != onnx.Float && in.Type.Elem != onnx.Undefined {
		return fmt.Errorf("input %q of %s is %s; graft run feeds float32 inputs", in.Name, pos[0], in.Type.Elem)
	}
	rep := &RunReport{Model: pos[0], Input: tensorInfo(in), Output: tensorInfo(m.Graph.Outputs[0])}

	st, err := os.Stat(f.input)
	if err != nil {
		return fmt.Errorf("input %s: %v", f.input, runPathErr(err))
	}
	var out *tensor.Dense
	var sources []string
	if !st.IsDir() && strings.EqualFold(filepath.Ext(f.input), ".pb") {
		out, sources, err = runTensorFile(prog, in, f.input)
	} else {
		paths := []string{f.input}
		if st.IsDir() {
			if paths, err = runListImages(f.input); err != nil {
				return err
			}
		}
		rep.Preprocess, err = runPreprocessing(in, f, mean, std)
		if err != nil {
			return err
		}
		out, err = runImageBatches(prog, in, paths, rep.Preprocess, f.batch)
		sources = paths
	}
	if err != nil {
		return err
	}
	rep.OutputShape = out.Shape().Clone()
	if err := runTopK(rep, m, out, sources, labels, f.topk); err != nil {
		return err
	}
	if f.save != "" {
		if err := runSaveOutput(out, m.Graph.Outputs[0].Name, f.save); err != nil {
			return err
		}
		rep.SavedOutput = f.save
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	runPrint(stdout, rep)
	return nil
}

// runPathErr drops the *fs.PathError wrapper, whose message repeats the path.
func runPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// runParseFloats parses "0.485,0.456,0.406"; empty means nil.
func runParseFloats(flag, s string) ([]float32, error) {
	if s == "" {
		return nil, nil
	}
	var out []float32
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 32)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, usage("%s %q: want comma-separated numbers", flag, s)
		}
		out = append(out, float32(v))
	}
	return out, nil
}

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

// runListImages returns the image files of dir, sorted by name.
func runListImages(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("input %s: %v", dir, runPathErr(err))
	}
	var paths []string
	for _, e := range entries {
		if !e.IsDir() && data.IsImageFile(e.Name()) {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("input %s: no images (.png, .jpg, .jpeg, .gif) in the folder", dir)
	}
	sort.Strings(paths)
	return paths, nil
}

// runTensorFile feeds a TensorProto file as is (a missing batch dimension of 1
// is added).
func runTensorFile(prog *runtime.Program, in *onnx.Value, path string) (*tensor.Dense, []string, error) {
	t, err := onnx.LoadTensor(path)
	if err != nil {
		return nil, nil, err
	}
	if t.DType != onnx.Float {
		return nil, nil, fmt.Errorf("%s is a %s tensor; input %q expects float32", path, t.DType, in.Name)
	}
	vals, err := t.Float32s()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	dims := append([]int64(nil), t.Dims...)
	if in.Type != nil && in.Type.Shape != nil {
		want := in.Type.Shape
		if len(dims) == len(want)-1 && runFits(dims, want[1:]) {
			dims = append([]int64{1}, dims...)
		}
		if len(dims) != len(want) || !runFits(dims, want) {
			return nil, nil, fmt.Errorf("%s has shape %s; input %q expects %s", path, runDims(dims), in.Name, want)
		}
	}
	if len(dims) == 0 || len(vals) == 0 {
		return nil, nil, fmt.Errorf("%s has shape %s; input %q needs a non-empty tensor", path, runDims(dims), in.Name)
	}
	shape := make([]int, len(dims))
	for i, d := range dims {
		shape[i] = int(d)
	}
	outs, err := prog.Run(tensor.New(tensor.WithShape(shape...), tensor.WithBacking(vals)))
	if err != nil {
		return nil, nil, fmt.Errorf("run on %s: %w", path, err)
	}
	sources := []string{path}
	if len(shape) > 1 && shape[0] > 1 {
		sources = nil
		for i := 0; i < shape[0]; i++ {
			sources = append(sources, fmt.Sprintf("%s[%d]", path, i))
		}
	}
	return outs[0], sources, nil
}

// runFits reports whether dims match shape's fixed dimensions.
func runFits(dims []int64, shape onnx.Shape) bool {
	if len(dims) != len(shape) {
		return false
	}
	for i, d := range shape {
		if d.Known() && d.Value != dims[i] {
			return false
		}
	}
	return true
}

func runDims(dims []int64) string {
	var s []string
	for _, d := range dims {
		s = append(s, strconv.FormatInt(d, 10))
	}
	return "[" + strings.Join(s, ",") + "]"
}

// runPreprocessing works out the preprocessing from the model's input
// shape and the flags.
func runPreprocessing(in *onnx.Value, f runFlags, mean, std []float32) (*RunPreprocess, error) {
	var shape onnx.Shape
	if in.Type != nil {
		shape = in.Type.Shape
	}
	if shape != nil && len(shape) != 4 {
		return nil, fmt.Errorf("input %q has shape %s; images need a [batch,channels,height,width] input", in.Name, shape)
	}
	p := &RunPreprocess{Channels: 3, CropW: 224, CropH: 224}
	if shape != nil {
		if d := shape[1]; d.Known() {
			if d.Value != 1 && d.Value != 3 {
				return nil, fmt.Errorf("input %q has shape %s: images have 1 or 3 channels", in.Name, shape)
			}
			p.Channels = int(d.Value)
		}
		if h, w := shape[2], shape[3]; h.Known() && w.Known() {
			p.CropH, p.CropW = int(h.Value), int(w.Value)
			if f.crop != 0 && (f.crop != p.CropH || f.crop != p.CropW) {
				return nil, fmt.Errorf("--crop %d makes %dx%d images; input %q expects %s", f.crop, f.crop, f.crop, in.Name, shape)
			}
		} else if h.Known() || w.Known() {
			return nil, fmt.Errorf("input %q has shape %s: graft run needs both image sides fixed or both free", in.Name, shape)
		}
	}
	if f.crop != 0 {
		p.CropW, p.CropH = f.crop, f.crop
	}
	p.Resize = f.resize
	if p.Resize == 0 {
		// The same rule fine-tuning uses, so a model is run as it was trained.
		p.Resize = contract.DefaultResize(p.CropH, p.CropW)
	}
	p.Mean, p.Std = mean, std
	if p.Channels == 3 {
		if p.Mean == nil {
			p.Mean = contract.ImageNetMean
		}
		if p.Std == nil {
			p.Std = contract.ImageNetStd
		}
	}
	for _, v := range [][]float32{p.Mean, p.Std} {
		if len(v) > 1 && len(v) != p.Channels {
			return nil, usage("--mean and --std need 1 or %d values for %d-channel input %q", p.Channels, p.Channels, in.Name)
		}
	}
	return p, nil
}

// runImageBatches preprocesses and runs the images in batches, returning the
// first output of all of them joined along the batch dimension.
func runImageBatches(prog *runtime.Program, in *onnx.Value, paths []string, pp *RunPreprocess, batch int) (*tensor.Dense, error) {
	fixed := 0
	if in.Type != nil && in.Type.Shape != nil && in.Type.Shape[0].Known() {
		fixed = int(in.Type.Shape[0].Value)
		batch = fixed
	}
	pipe := &data.Pipeline{
		Channels:  pp.Channels,
		Transform: data.Compose(data.Resize(pp.Resize), data.CenterCropTo(pp.CropW, pp.CropH)),
		Mean:      pp.Mean,
		Std:       pp.Std,
	}
	var rows []float32
	var rowShape []int
	for start := 0; start < len(paths); start += batch {
		chunk := paths[start:min(start+batch, len(paths))]
		var ts []*data.Tensor
		for _, p := range chunk {
			t, err := pipe.Load(p)
			if err != nil {
				return nil, err
			}
			ts = append(ts, t)
		}
		for len(ts) < fixed { // the model takes exactly `fixed` images: pad
			ts = append(ts, ts[len(ts)-1])
		}
		x, err := data.Stack(ts)
		if err != nil {
			return nil, err
		}
		outs, err := prog.Run(x)
		if err != nil {
			return nil, fmt.Errorf("run on %s: %w", chunk[0], err)
		}
		y := outs[0]
		s := y.Shape()
		vals, ok := y.Data().([]float32)
		if !ok || len(s) == 0 || s[0] != len(ts) {
			if len(paths) == 1 {
				return y, nil // a single run: keep the output as it is
			}
			return nil, fmt.Errorf("output %v of shape %v has no batch dimension: run images one by one", y.Dtype(), s)
		}
		per := len(vals) / s[0]
		rows = append(rows, vals[:len(chunk)*per]...)
		rowShape = s[1:].Clone()
	}
	shape := append([]int{len(paths)}, rowShape...)
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(rows)), nil
}

// runSaveOutput writes the output as a TensorProto, atomically.
func runSaveOutput(out *tensor.Dense, name, path string) error {
	dims := make([]int64, len(out.Shape()))
	for i, d := range out.Shape() {
		dims[i] = int64(d)
	}
	var t *onnx.Tensor
	var err error
	switch v := out.Data().(type) {
	case []float32:
		t, err = onnx.FromFloat32(name, dims, v)
	case []int64:
		t, err = onnx.FromInt64(name, dims, v)
	default:
		return fmt.Errorf("save output: %v outputs are not supported", out.Dtype())
	}
	if err != nil {
		return fmt.Errorf("save output: %w", err)
	}
	return onnx.SaveTensor(t, path)
}

// runTopK fills rep.Results from the first output: one row per source.
func runTopK(rep *RunReport, m *onnx.Model, out *tensor.Dense, sources []string, labels []string, k int) error {
	var vals []float64
	switch v := out.Data().(type) {
	case []float32:
		for _, x := range v {
			vals = append(vals, float64(x))
		}
	case []int64:
		for _, x := range v {
			vals = append(vals, float64(x))
		}
	}
	rows := 1
	if s := out.Shape(); len(s) >= 2 && s[0] == len(sources) {
		rows = s[0]
	} else if len(sources) > 1 {
		sources = []string{strings.Join(sources, ", ")}
	}
	classes := len(vals) / rows
	if labels != nil && len(labels) != classes {
		return fmt.Errorf("labels: %d labels for %d classes (output %q has shape %v)", len(labels), classes, rep.Output.Name, out.Shape())
	}
	rep.Scores = "softmax of the output"
	var last string
	if p := m.Graph.Outputs[0].Producer(); p != nil {
		last = p.OpType
	}
	switch last {
	case "Softmax":
		rep.Scores = "the output (the model ends in Softmax)"
	case "LogSoftmax":
		rep.Scores = "exp of the output (the model ends in LogSoftmax)"
	}
	for r := 0; r < rows; r++ {
		raw := vals[r*classes : (r+1)*classes]
		prob := make([]float64, classes)
		switch last {
		case "Softmax":
			copy(prob, raw)
		case "LogSoftmax":
			for i, x := range raw {
				prob[i] = math.Exp(x)
			}
		default:
			mx := math.Inf(-1)
			for _, x := range raw {
				mx = math.Max(mx, x)
			}
			var sum float64
			for i, x := range raw {
				prob[i] = math.Exp(x - mx)
				sum += prob[i]
			}
			for i := range prob {
				prob[i] /= sum
			}
		}
		idx := make([]int, classes)
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return prob[idx[a]] > prob[idx[b]] })
		res := RunResult{Source: sources[r]}
		for _, i := range idx[:min(k, classes)] {
			cs := RunClass{Class: i, Probability: prob[i], Output: raw[i]}
			if labels != nil {
				cs.Label = labels[i]
			}
			res.Top = append(res.Top, cs)
		}
		rep.Results = append(rep.Results, res)
	}
	return nil
}

func runPrint(w io.Writer, r *RunReport) {
	fmt.Fprintf(w, "model:   %s\n", r.Model)
	fmt.Fprintf(w, "input:   %s %s[%s]\n", r.Input.Name, r.Input.DType, strings.Join(r.Input.Shape, ","))
	if p := r.Preprocess; p != nil {
		norm := "none"
		if p.Mean != nil || p.Std != nil {
			norm = fmt.Sprintf("mean %v std %v", p.Mean, p.Std)
		}
		fmt.Fprintf(w, "images:  %d channels, resize %d, center crop %dx%d, normalize %s\n", p.Channels, p.Resize, p.CropW, p.CropH, norm)
	}
	fmt.Fprintf(w, "output:  %s %s; probabilities: %s\n", r.Output.Name, strings.ReplaceAll(fmt.Sprint(r.OutputShape), " ", ","), r.Scores)
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
