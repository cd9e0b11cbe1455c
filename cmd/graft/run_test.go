package main

import (
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"github.com/graft-dev/graft/surgery"
)

const tinyResNet = "../../testdata/models/resnet_tiny_op13_folded"

func loadTensor(t *testing.T, path string) *onnx.Tensor {
	t.Helper()
	x, err := onnx.LoadTensor(path)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// runJSON runs graft run with --json and decodes the report.
func runJSON(t *testing.T, args ...string) *RunReport {
	t.Helper()
	code, out, errs := graft(append([]string{"run", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("graft run %v: code %d: %s", args, code, errs)
	}
	var r RunReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("graft run --json output does not parse: %v\n%s", err, out)
	}
	return &r
}

// checkSavedOutput runs the model on its test input and compares the saved
// output with PyTorch's.
func checkSavedOutput(t *testing.T, dir string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.pb")
	code, stdout, errs := graft("run", filepath.Join(dir, "model.onnx"), "--input", filepath.Join(dir, "test_data_set_0/input_0.pb"), "--save-output", out)
	if code != 0 {
		t.Fatalf("%s: code %d: %s", dir, code, errs)
	}
	if !strings.Contains(stdout, "1. class") {
		t.Errorf("%s: no top-k in\n%s", dir, stdout)
	}
	want := loadTensor(t, filepath.Join(dir, "test_data_set_0/output_0.pb"))
	d, err := onnxtest.MaxAbsDiff(loadTensor(t, out), want)
	if err != nil || d > 1e-4 {
		t.Errorf("%s: saved output differs from PyTorch's by %g (%v)", dir, d, err)
	}
	t.Logf("%s: max |graft - PyTorch| = %.3g", filepath.Base(dir), d)
}

func TestRunTensorMatchesPyTorch(t *testing.T) {
	for _, name := range []string{"resnet_tiny_op13_folded", "resnet_tiny_op17_folded", "resnet_tiny_op13_bn", "resnet_tiny_op17_bn", "cnn", "stn"} {
		t.Run(name, func(t *testing.T) { checkSavedOutput(t, filepath.Join("../../testdata/models", name)) })
	}
}

// The full-size torchvision ResNet-18 exports (3x224x224, batch 2).
func TestRunFullSizeResNet18(t *testing.T) {
	if testing.Short() {
		t.Skip("full-size models are slow")
	}
	for _, model := range testenv.Big.Glob(t, "resnet18_*/model.onnx", 4) {
		dir := filepath.Dir(model)
		testenv.Big.Files(t, filepath.Join(filepath.Base(dir), "test_data_set_0", "input_0.pb"), filepath.Join(filepath.Base(dir), "test_data_set_0", "output_0.pb"))
		t.Run(filepath.Base(dir), func(t *testing.T) { checkSavedOutput(t, dir) })
	}
}

// writePNG writes example k of an NCHW [0,1] tensor as an 8-bit PNG and
// returns the tensor of what the PNG holds, [1,C,H,W].
func writePNG(t *testing.T, x *onnx.Tensor, k int, path string) *onnx.Tensor {
	t.Helper()
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	c, h, w := int(x.Dims[1]), int(x.Dims[2]), int(x.Dims[3])
	v = v[k*c*h*w : (k+1)*c*h*w]
	q := make([]float32, len(v))
	im := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for xx := 0; xx < w; xx++ {
			var px [3]uint8
			for ch := 0; ch < c; ch++ {
				i := (ch*h+y)*w + xx
				px[ch] = uint8(math.Round(float64(v[i]) * 255))
				q[i] = float32(px[ch]) / 255
			}
			if c == 1 {
				px[1], px[2] = px[0], px[0]
			}
			im.SetNRGBA(xx, y, color.NRGBA{px[0], px[1], px[2], 255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, im); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	qt, err := onnx.FromFloat32("input", []int64{1, int64(c), int64(h), int64(w)}, q)
	if err != nil {
		t.Fatal(err)
	}
	return qt
}

// An image of exactly the model's size with resize = crop = size and no
// normalisation gives what the tensor of its pixels gives.
func TestRunImageTopK(t *testing.T) {
	dir := t.TempDir()
	x := loadTensor(t, filepath.Join(tinyResNet, "test_data_set_0/input_0.pb"))
	img := filepath.Join(dir, "example.png")
	q := writePNG(t, x, 1, img)
	qpb := filepath.Join(dir, "example.pb")
	if err := onnx.SaveTensor(q, qpb); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(tinyResNet, "model.onnx")
	fromImage := runJSON(t, model, "--input", img, "--resize", "64", "--crop", "64", "--mean", "0", "--std", "1")
	fromTensor := runJSON(t, model, "--input", qpb)
	if len(fromImage.Results) != 1 || len(fromTensor.Results) != 1 || len(fromImage.Results[0].Top) != 5 {
		t.Fatalf("results: %+v vs %+v", fromImage.Results, fromTensor.Results)
	}
	for i, c := range fromImage.Results[0].Top {
		w := fromTensor.Results[0].Top[i]
		if c.Class != w.Class || math.Abs(c.Probability-w.Probability) > 1e-6 {
			t.Errorf("top %d: image %+v, tensor %+v", i+1, c, w)
		}
	}
	if p := fromImage.Preprocess; p == nil || p.Resize != 64 || p.Width != 64 || p.Channels != 3 {
		t.Errorf("preprocess = %+v", p)
	}
	// Defaults: crop to the model's 64, resize round(64*256/224) = 73,
	// ImageNet normalisation; the text output lists the top 5.
	code, out, errs := graft("run", model, "--input", img)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	if strings.Count(out, ". class ") != 5 || !strings.Contains(out, "resize 73, center crop 64x64") || !strings.Contains(out, "example.png") {
		t.Errorf("text output:\n%s", out)
	}
	top3 := runJSON(t, model, "--input", img, "--topk", "3")
	if len(top3.Results[0].Top) != 3 || top3.Scores != "softmax of the output" {
		t.Errorf("--topk 3: %+v", top3)
	}
	// A gray model gets a color image converted to gray.
	cnn := runJSON(t, "../../testdata/models/cnn/model.onnx", "--input", img)
	if p := cnn.Preprocess; p == nil || p.Channels != 1 || p.Width != 28 || p.Resize != 28 || len(p.Mean) != 0 { // small inputs: no larger resize, as in fine-tuning
		t.Errorf("cnn preprocess = %+v", p)
	}
}

// graft's default preprocessing of an image equals torchvision's
// Resize(73), CenterCrop(64), ToTensor, Normalize(ImageNet) on PIL: running
// the model on torchvision's tensor gives the same output.
func TestRunImageMatchesTorchvision(t *testing.T) {
	onnxtest.NeedPython(t, "torchvision", "PIL", "onnx")
	dir := t.TempDir()
	model := filepath.Join(tinyResNet, "model.onnx")
	for _, img := range []string{"../../runtime/data/testdata/shapes_317x211.jpg", "../../runtime/data/testdata/rings_211x149_gray.png"} {
		refs := filepath.Join(dir, filepath.Base(img))
		cmd := exec.Command(onnxtest.Python, filepath.Join(onnxtest.Root(), "testdata/gen/preprocess_refs.py"), "--out", refs, "--resize", "73", "--crop", "64", img)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("preprocess_refs.py: %v\n%s", err, out)
		}
		ref, _ := filepath.Glob(filepath.Join(refs, "*.c3.r73.c64.norm.pb"))
		if len(ref) != 1 {
			t.Fatalf("references: %v", ref)
		}
		a, b := filepath.Join(dir, "a.pb"), filepath.Join(dir, "b.pb")
		runJSON(t, model, "--input", img, "--save-output", a)
		runJSON(t, model, "--input", ref[0], "--save-output", b) // [3,64,64]: batch 1 added
		d, err := onnxtest.MaxAbsDiff(loadTensor(t, a), loadTensor(t, b))
		if err != nil || d > 1e-5 {
			t.Errorf("%s: graft's preprocessing vs torchvision's: outputs differ by %g (%v)", img, d, err)
		}
	}
}

func TestRunFolderLabelsAndBatches(t *testing.T) {
	dir := t.TempDir()
	x := loadTensor(t, filepath.Join(tinyResNet, "test_data_set_0/input_0.pb"))
	writePNG(t, x, 0, filepath.Join(dir, "b.png"))
	writePNG(t, x, 1, filepath.Join(dir, "a.png"))
	writePNG(t, x, 0, filepath.Join(dir, "c.png"))
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644)
	labels := filepath.Join(t.TempDir(), "labels.txt")
	os.WriteFile(labels, []byte("zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n"), 0o644)
	out := filepath.Join(t.TempDir(), "out.pb")
	model := filepath.Join(tinyResNet, "model.onnx")
	r := runJSON(t, model, "--input", dir, "--batch", "2", "--labels", labels, "--save-output", out)
	if len(r.Results) != 3 {
		t.Fatalf("results: %+v", r.Results)
	}
	for i, name := range []string{"a.png", "b.png", "c.png"} {
		if filepath.Base(r.Results[i].Source) != name {
			t.Errorf("result %d is %s, want %s", i, r.Results[i].Source, name)
		}
		top := r.Results[i].Top[0]
		if want := []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}[top.Class]; top.Label != want {
			t.Errorf("class %d labelled %q", top.Class, top.Label)
		}
	}
	// The same image in a batch of 2 and a batch of 1: the matrix products
	// block differently by size, so equal up to float32 rounding.
	if a, b := r.Results[1].Top[0], r.Results[2].Top[0]; a.Class != b.Class || math.Abs(a.Probability-b.Probability) > 1e-6 || math.Abs(a.Output-b.Output) > 1e-5 {
		t.Errorf("the same image gave %+v and %+v", a, b)
	}
	if saved := loadTensor(t, out); len(saved.Dims) != 2 || saved.Dims[0] != 3 || saved.Dims[1] != 10 {
		t.Errorf("saved output dims %v", saved.Dims)
	}
	// One batch of 3 gives the same as batches of 2 and 1, and so does a
	// model whose batch size is fixed to 2 (the last batch is padded).
	m, err := onnx.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Inputs[0].Type.Shape[0] = onnx.Fixed(2)
	fixed := filepath.Join(t.TempDir(), "fixed.onnx")
	if err := onnx.Save(m, fixed); err != nil {
		t.Fatal(err)
	}
	for _, other := range []*RunReport{runJSON(t, model, "--input", dir, "--batch", "3"), runJSON(t, fixed, "--input", dir)} {
		if len(other.Results) != 3 {
			t.Fatalf("results: %+v", other.Results)
		}
		for i := range other.Results {
			if a, b := other.Results[i].Top[0], r.Results[i].Top[0]; a.Class != b.Class || math.Abs(a.Probability-b.Probability) > 1e-6 {
				t.Errorf("result %d: %+v, batches of 2: %+v", i, a, b)
			}
		}
	}
}

// Models ending in Softmax or LogSoftmax: their output is used as (log)
// probabilities instead of being softmaxed again.
func TestRunProbabilityOutputs(t *testing.T) {
	input := filepath.Join(tinyResNet, "test_data_set_0/input_0.pb")
	plain := runJSON(t, filepath.Join(tinyResNet, "model.onnx"), "--input", input)
	for _, op := range []string{"Softmax", "LogSoftmax"} {
		m, err := onnx.Load(filepath.Join(tinyResNet, "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		old := m.Graph.Outputs[0]
		n := m.Graph.AddNode(op, "final_"+op, []*onnx.Value{old}, []string{"probs"}, &onnx.Attribute{Name: "axis", Type: onnx.AttrInt, Int: 1})
		n.Outputs[0].Type = old.Type
		m.Graph.Outputs[0] = n.Outputs[0]
		path := filepath.Join(t.TempDir(), "model.onnx")
		if err := onnx.Save(m, path); err != nil {
			t.Fatal(err)
		}
		r := runJSON(t, path, "--input", input)
		if !strings.Contains(r.Scores, op) {
			t.Errorf("%s: scores %q", op, r.Scores)
		}
		for i := range r.Results {
			for j, c := range r.Results[i].Top {
				w := plain.Results[i].Top[j]
				if c.Class != w.Class || math.Abs(c.Probability-w.Probability) > 1e-5 {
					t.Errorf("%s: example %d top %d: %+v, want %+v", op, i, j+1, c, w)
				}
			}
		}
	}
}

func TestRunBadInputs(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(tinyResNet, "model.onnx")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	corrupt := write("corrupt.png", []byte("\x89PNG\r\n\x1a\nthis is not really a png"))
	good, _ := os.ReadFile("../../runtime/data/testdata/shapes_317x211.png")
	truncated := write("truncated.png", good[:len(good)/3])
	wrongShape := filepath.Join(dir, "wrong.pb")
	small, _ := onnx.FromFloat32("x", []int64{1, 3, 32, 32}, make([]float32, 3*32*32))
	onnx.SaveTensor(small, wrongShape)
	ints := filepath.Join(dir, "ints.pb")
	it, _ := onnx.FromInt64("x", []int64{1, 3, 64, 64}, make([]int64, 3*64*64))
	onnx.SaveTensor(it, ints)
	notTensor := write("garbage.pb", []byte("\xff\xff\xff garbage"))
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	labels := write("labels.txt", []byte("a\nb\nc\n"))

	m, err := onnx.Load("../../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Nodes[1].OpType = "Mystery"
	unsupported := filepath.Join(dir, "unsupported.onnx")
	if err := onnx.Save(m, unsupported); err != nil {
		t.Fatal(err)
	}
	img := "../../runtime/data/testdata/shapes_317x211.png"
	cases := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{model, "--input", corrupt}, 1, []string{corrupt}},
		{[]string{model, "--input", truncated}, 1, []string{truncated, "truncated"}},
		{[]string{model, "--input", wrongShape}, 1, []string{wrongShape, "[1,3,32,32]", `input "input" expects [batch,3,64,64]`}},
		{[]string{model, "--input", ints}, 1, []string{ints, "int64", "float32"}},
		{[]string{model, "--input", notTensor}, 1, []string{notTensor, "not a TensorProto"}},
		{[]string{model, "--input", filepath.Join(dir, "missing.png")}, 1, []string{"missing.png", "no such file"}},
		{[]string{filepath.Join(dir, "missing.onnx"), "--input", img}, 1, []string{"missing.onnx"}},
		{[]string{unsupported, "--input", img}, 1, []string{"unsupported operator", "Mystery", m.Graph.Nodes[1].Name}},
		{[]string{model, "--input", empty}, 1, []string{empty, "no images"}},
		{[]string{model, "--input", img, "--labels", labels}, 1, []string{"3 class names for the 10 classes"}},
		{[]string{model, "--input", img, "--labels", filepath.Join(dir, "nolabels.txt")}, 1, []string{"nolabels.txt"}},
		{[]string{model, "--input", img, "--crop", "32"}, 1, []string{"32x32 crop", "[batch,3,64,64]"}},
		{[]string{model, "--input", img, "--mean", "0.5,0.5", "--std", "0.2,0.2"}, 1, []string{"2 mean values for 3 channels"}},
		{[]string{model, "--input", img, "--mean", "0.5"}, 2, []string{"--mean and --std go together"}},
		{[]string{model, "--input", img, "--mean", "a,b,c"}, 2, []string{"--mean"}},
		{[]string{model, "--input", img, "--mean", "0", "--std", "0"}, 2, []string{"--std"}},
		{[]string{model, "--input", img, "--topk", "0"}, 2, []string{"--topk"}},
		{[]string{model}, 2, []string{"--input is required"}},
		{[]string{"--input", img}, 2, []string{"want exactly one model file"}},
		{[]string{model, "--input", img, "--save-output", filepath.Join(dir, "nodir", "out.pb")}, 1, []string{"out.pb"}},
		{[]string{model, "--input", img, "--save-output", model}, 1, []string{"--save-output", "is the same file as the model", "--force"}},
		{[]string{model, "--input", img, "--save-output", img}, 1, []string{"is the same file as --input"}},
		{[]string{model, "--input", img, "--save-output", "/dev/null"}, 1, []string{"/dev/null is a character device"}},
	}
	for _, c := range cases {
		code, out, errs := graft(append([]string{"run"}, c.args...)...)
		if code != c.code {
			t.Errorf("graft run %v: code %d, want %d (stderr %q)", c.args, code, c.code, errs)
			continue
		}
		if c.code == 1 && (strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "graft run: ")) {
			t.Errorf("graft run %v: stderr is not one line: %q", c.args, errs)
		}
		for _, w := range c.want {
			if !strings.Contains(errs, w) {
				t.Errorf("graft run %v: stderr %q does not contain %q", c.args, errs, w)
			}
		}
		if out != "" {
			t.Errorf("graft run %v: printed %q on failure", c.args, out)
		}
	}
}

// The flags map to contract overrides; the contract's notes are part of
// the report; a model that normalises itself gets pixels; non-finite
// scores fail before any file is written.
func TestRunContractFlags(t *testing.T) {
	img := "../../runtime/data/testdata/shapes_317x211.jpg"
	model := filepath.Join(tinyResNet, "model.onnx")
	r := runJSON(t, model, "--input", img, "--mean", "0.5", "--std", "0.25", "--resize", "80")
	if p := r.Preprocess; p == nil || !slices.Equal(p.Mean, []float32{0.5, 0.5, 0.5}) || !slices.Equal(p.Std, []float32{0.25, 0.25, 0.25}) || p.Resize != 80 || p.Width != 64 {
		t.Errorf("--mean 0.5 --std 0.25 --resize 80: preprocess %+v", p)
	}
	if len(r.Notes) == 0 || !strings.Contains(strings.Join(r.Notes, "\n"), "taken to hold logits") {
		t.Errorf("notes %q", r.Notes)
	}
	code, out, errs := graft("run", model, "--input", img)
	if code != 0 || !strings.Contains(out, "\nnote:    output \"output\" is taken to hold logits") {
		t.Errorf("code %d, stderr %q, text:\n%s", code, errs, out)
	}

	m, err := onnx.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	if err := surgery.Apply(m, surgery.Normalize("input", contract.ImageNetMean, contract.ImageNetStd)); err != nil {
		t.Fatal(err)
	}
	normalised := filepath.Join(t.TempDir(), "normalised.onnx")
	if err := onnx.Save(m, normalised); err != nil {
		t.Fatal(err)
	}
	if r := runJSON(t, normalised, "--input", img); r.Preprocess == nil || r.Preprocess.Mean != nil {
		t.Errorf("a model normalising itself: preprocess %+v", r.Preprocess)
	}
	if code, _, errs := graft("run", normalised, "--input", img, "--mean", "0", "--std", "1"); code != 0 {
		t.Errorf("--mean/--std on a model normalising itself: code %d: %s", code, errs)
	}

	// A model whose scores are NaN for an all-zero input.
	m, err = onnx.Load("../../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	log := g.AddNode("Log", "log_of_input", []*onnx.Value{g.Inputs[0]}, []string{"log_input"})
	red := g.AddNode("ReduceMax", "max_log", []*onnx.Value{log.Outputs[0]}, []string{"max_log"},
		&onnx.Attribute{Name: "axes", Type: onnx.AttrInts, Ints: []int64{2, 3}}, &onnx.Attribute{Name: "keepdims", Type: onnx.AttrInt, Int: 0})
	add := g.AddNode("Add", "scores_plus", []*onnx.Value{g.Outputs[0], red.Outputs[0]}, []string{"scores"})
	add.Outputs[0].Type = g.Outputs[0].Type
	g.Outputs[0] = add.Outputs[0]
	dir := t.TempDir()
	nan := filepath.Join(dir, "nan.onnx")
	if err := onnx.Save(m, nan); err != nil {
		t.Fatal(err)
	}
	x, _ := onnx.FromFloat32("x", []int64{2, 1, 28, 28}, append(slices.Repeat([]float32{0.5}, 784), make([]float32, 784)...))
	xpb := filepath.Join(dir, "x.pb")
	onnx.SaveTensor(x, xpb)
	saved := filepath.Join(dir, "out.pb")
	code, out, errs = graft("run", nan, "--input", xpb, "--save-output", saved)
	if code != 1 || out != "" || !strings.Contains(errs, xpb+"[1]: output \"scores\" is -Inf for class 0") || strings.Count(errs, "\n") != 1 {
		t.Errorf("non-finite scores: code %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, err := os.Stat(saved); err == nil {
		t.Error("non-finite scores: --save-output was written")
	}
}
