package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/attacks"
	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/data"
	"github.com/graft-dev/graft/runtime/dataset"
)

const (
	lenetModel  = "../../testdata/models/lenet_mnist/model.onnx"
	lenetImages = "../../testdata/models/lenet_mnist/heldout-images-idx3-ubyte.gz"
	lenetLabels = "../../testdata/models/lenet_mnist/heldout-labels-idx1-ubyte.gz"
)

// robustness runs graft robustness with the progress line captured.
func robustness(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var prog bytes.Buffer
	old := robustStderr
	robustStderr = &prog
	defer func() { robustStderr = old }()
	code, stdout, stderr = graft(append([]string{"robustness"}, args...)...)
	return code, stdout, prog.String() + stderr
}

func readRobustReport(t *testing.T, dir string) *attacks.Report {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r attacks.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestRobustnessFGSMOnMNIST(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "report")
	code, out, errs := robustness(t, "--model", lenetModel, "--data", lenetImages, "--limit", "250", "--batch", "100", "-o", dir)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	if !strings.Contains(errs, "robustness: 250/250 examples (100%)") || strings.Count(errs, "\n") != 3 {
		t.Errorf("progress on stderr:\n%s", errs)
	}
	if !strings.Contains(out, "fgsm on 250 examples") || !strings.Contains(out, "wrote "+filepath.Join(dir, "report.md")) {
		t.Errorf("stdout:\n%s", out)
	}
	r := readRobustReport(t, dir)
	if r.Examples != 250 || len(r.Points) != 7 || r.Points[0].Eps != 0 || r.Points[6].Eps != 0.3 {
		t.Fatalf("report: %d examples, points %+v", r.Examples, r.Points)
	}
	if r.Points[0].Accuracy != r.CleanAccuracy || r.CleanAccuracy < 0.9 || r.Points[6].Accuracy > 0.3 {
		t.Errorf("clean %v, eps 0 %v, eps 0.3 %v", r.CleanAccuracy, r.Points[0].Accuracy, r.Points[6].Accuracy)
	}
	s := r.Settings
	if len(s.ModelSHA256) != 64 || s.Attack.Name != "fgsm" || s.BatchSize != 100 || s.Limit != 250 ||
		!strings.Contains(s.Data, "250 of 2000 images, 10 classes") || !strings.Contains(s.Data, lenetLabels) ||
		!strings.Contains(s.Data, "fed as 1x28x28 pixels in [0, 1]") {
		t.Errorf("settings %+v", s)
	}
	for _, f := range []string{"accuracy_vs_eps.png", "examples.png"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	if !bytes.Contains(md, []byte(s.ModelSHA256)) || !bytes.Contains(md, []byte("| 0.3 |")) {
		t.Errorf("report.md:\n%s", md)
	}

	// Normalising by mean 0, std 1 inside the model changes nothing.
	dir2 := filepath.Join(t.TempDir(), "report")
	if code, _, errs := robustness(t, "--model", lenetModel, "--data", lenetImages, "--limit", "250", "--batch", "100",
		"--mean", "0", "--std", "1", "-o", dir2); code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	r2 := readRobustReport(t, dir2)
	for i := range r.Points {
		if r2.Points[i].Correct != r.Points[i].Correct {
			t.Errorf("eps %g: %d correct with mean 0 / std 1 inside, %d without", r.Points[i].Eps, r2.Points[i].Correct, r.Points[i].Correct)
		}
	}
	if len(r2.Settings.Mean) != 1 || r2.Settings.Std[0] != 1 {
		t.Errorf("settings mean %v std %v", r2.Settings.Mean, r2.Settings.Std)
	}
}

func TestRobustnessIterativeAndTargeted(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := robustness(t, "--model", lenetModel, "--data", lenetImages, "--labels",
		"../../testdata/models/lenet_mnist/heldout-labels-idx1-ubyte.gz", "--limit", "40",
		"--attack", "pgd", "--steps", "3", "--alpha", "0.05", "--seed", "7", "--eps", "0.1,0.3", "--target", "next", "-o", dir)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	r := readRobustReport(t, dir)
	a := r.Settings.Attack
	if a.Name != "pgd" || a.Steps != 3 || a.Alpha != 0.05 || a.Seed == nil || *a.Seed != 7 || !r.Settings.Targeted {
		t.Errorf("attack settings %+v", a)
	}
	if len(r.Points) != 2 || r.Points[1].SuccessRate < 0.3 || r.Points[1].SuccessRate <= r.Points[0].SuccessRate || r.Points[1].MaxPerturbation > 0.3+1e-6 {
		t.Errorf("points %+v", r.Points)
	}
	if !strings.Contains(out, "pgd, 3 steps, step 0.05, random start, seed 7") {
		t.Errorf("stdout:\n%s", out)
	}
	if code, _, errs := robustness(t, "--model", lenetModel, "--data", lenetImages, "--limit", "20",
		"--attack", "BIM", "--steps", "2", "--eps", "0.2", "--target", "3", "-o", dir); code != 0 {
		t.Fatalf("bim: code %d: %s", code, errs)
	}
	if r := readRobustReport(t, dir); r.Settings.Attack.Name != "bim" || r.Settings.Attack.AlphaRule != "2.5*eps/steps" {
		t.Errorf("bim settings %+v", r.Settings.Attack)
	}
}

func TestRobustnessBadInput(t *testing.T) {
	dir := t.TempDir()
	tiny := filepath.Join(dir, "tiny-images-idx3-ubyte")
	if err := data.WriteIDXImages(tiny, &data.IDXImages{Count: 2, Rows: 28, Cols: 28, Pixels: make([]byte, 2*784)}); err != nil {
		t.Fatal(err)
	}
	if err := data.WriteIDXLabels(filepath.Join(dir, "tiny-labels-idx1-ubyte"), []int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	badLabel := filepath.Join(dir, "bad-images-idx3-ubyte")
	if err := data.WriteIDXImages(badLabel, &data.IDXImages{Count: 2, Rows: 28, Cols: 28, Pixels: make([]byte, 2*784)}); err != nil {
		t.Fatal(err)
	}
	if err := data.WriteIDXLabels(filepath.Join(dir, "bad-labels-idx1-ubyte"), []int{9, 10}); err != nil {
		t.Fatal(err)
	}
	// The LeNet with its input declared channels last: graft feeds NCHW.
	m, err := onnx.Load(lenetModel)
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Inputs[0].Type.Shape = onnx.Shape{{Param: "batch"}, onnx.Fixed(28), onnx.Fixed(28), onnx.Fixed(1)}
	nhwc := filepath.Join(dir, "nhwc.onnx")
	if err := onnx.Save(m, nhwc); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	base := []string{"--model", lenetModel, "--data", lenetImages, "-o", out}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--data", lenetImages, "-o", out}, 2, "--model is required"},
		{[]string{"--model", lenetModel, "-o", out}, 2, "--data is required"},
		{[]string{"--model", lenetModel, "--data", lenetImages}, 2, "-o REPORT_DIR is required"},
		{append(base, "--attack", "cw"), 2, `unknown attack "cw"`},
		{append(base, "--eps", "0.1,2"), 2, `--eps: 2 is not a radius in [0, 1]`},
		{append(base, "--eps", "abc"), 2, `--eps "abc": "abc" is not a number`},
		{append(base, "--steps", "0"), 2, "--steps must be at least 1"},
		{append(base, "--mean", "0.5"), 2, "--mean and --std go together"},
		{append(base, "--mean", "0.5", "--std", "0"), 2, "--std values must not be 0"},
		{append(base, "--target", "12"), 1, `target class 12 (for label 0) is not one of the model's 10 classes (0 to 9)`},
		{append(base, "--target", "three"), 2, `--target: "three" is not a class number or next`},
		{append(base, "extra"), 2, `unexpected argument "extra"`},
		{[]string{"--model", lenetModel, "--data", filepath.Join(dir, "absent-images-idx3-ubyte"), "-o", out}, 1, "absent-images-idx3-ubyte: no such file"},
		{[]string{"--model", lenetModel, "--data", lenetModel, "-o", out}, 1, "model.onnx: not an IDX file"},
		{[]string{"--model", lenetModel, "--data", tiny, "-o", out}, 1, "holds 2 images"},
		{[]string{"--model", lenetModel, "--data", badLabel, "-o", out}, 1, `bad-images-idx3-ubyte[1]: label 10 (class "10") is not one of the model's 10 classes`},
		{[]string{"--model", nhwc, "--data", lenetImages, "-o", out}, 1, "channels last (NHWC)"},
		{append(base[:4:4], "-o", lenetModel), 1, "is a file, not a folder"},
		{[]string{"--model", filepath.Join(dir, "none.onnx"), "--data", lenetImages, "-o", out}, 1, "none.onnx"},
		{[]string{"--model", lenetModel, "--data", filepath.Join(dir, "orphan-images-idx3-ubyte"), "-o", out}, 1, "orphan-images-idx3-ubyte"},
	} {
		if c.want == "orphan-images-idx3-ubyte" {
			os.WriteFile(filepath.Join(dir, c.want), nil, 0o644)
		}
		code, _, errs := robustness(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: code %d, stderr %q; want %d and %q", c.args, code, errs, c.code, c.want)
		}
		if lines := strings.Count(strings.TrimSpace(errs), "\n"); code == 1 && lines != 0 {
			t.Errorf("%v: error is %d lines: %q", c.args, lines+1, errs)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed run created the report folder")
	}
}

// The Fashion-MNIST files Debian ships (installed by testdata/gen/setup.sh)
// are read under their standard names; the MNIST LeNet runs on them.
func TestRobustnessFashionMNISTFiles(t *testing.T) {
	images := testenv.FashionMNIST.Files(t, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")[0]
	dir := t.TempDir()
	code, _, errs := robustness(t, "--model", lenetModel, "--data", images, "--limit", "30", "--eps", "0,0.1", "-o", dir)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	r := readRobustReport(t, dir)
	if r.Examples != 30 || !strings.Contains(r.Settings.Data, "t10k-labels-idx1-ubyte.gz: 30 of 10000 images") {
		t.Errorf("examples %d, data %q", r.Examples, r.Settings.Data)
	}
}

// graft robustness produces what the library call of attacks'
// ExampleRobustness produces for the same settings: the command is flags
// and one call.
func TestRobustnessCLIEqualsLibrary(t *testing.T) {
	dir := t.TempDir()
	code, _, errs := robustness(t, "--model", lenetModel, "--data", lenetImages, "--attack", "pgd", "--steps", "5", "--seed", "1",
		"--eps", "0,0.05,0.1", "--limit", "200", "-o", dir)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	cli := readRobustReport(t, dir)

	m, err := onnx.Load(lenetModel)
	if err != nil {
		t.Fatal(err)
	}
	digits, err := dataset.IDX(lenetImages, lenetLabels)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := attacks.Robustness(context.Background(), m, digits, attacks.RobustnessOptions{
		Attack: &attacks.PGD{Steps: 5, Seed: 1},
		Eps:    []float64{0, 0.05, 0.1},
		Limit:  200,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Through JSON, as report.json holds it (NaN class accuracies are null).
	b, err := lib.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var want attacks.Report
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	metrics := func(r *attacks.Report) string {
		s := r.Settings
		s.Model, s.ModelSHA256, s.Data = "", "", "" // the CLI names the files
		b, err := json.Marshal([]any{r.Examples, r.Classes, r.ClassExamples, r.CleanAccuracy, r.CleanCorrect, r.Points, s})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if a, b := metrics(cli), metrics(&want); a != b {
		t.Errorf("graft robustness:\n%s\nattacks.Robustness:\n%s", a, b)
	}
	if cli.Examples != 200 || len(cli.Points) != 3 || cli.Points[2].Accuracy >= cli.CleanAccuracy {
		t.Errorf("report: %d examples, points %+v", cli.Examples, cli.Points)
	}
}
