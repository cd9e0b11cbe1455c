package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/finetune"
	"github.com/graft-dev/graft/runtime/train"
)

func readHistory(t *testing.T, path string) *train.History {
	t.Helper()
	h, err := train.LoadHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Real transfer learning on real data: the clothes-pretrained demo model
// moved to Fashion-MNIST classes 5-9 through IDX files, backbone frozen.
func TestFinetuneFashionMNISTIDX(t *testing.T) {
	files := testenv.FashionMNIST.Files(t, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
		"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
	trainImages, valImages := files[0], files[2]
	dir := t.TempDir()
	out := filepath.Join(dir, "model.onnx")
	code, stdout, errs := graft("finetune", "--model", "demo/pretrained.onnx",
		"--data", trainImages, "--classes", "5,6,7,8,9", "--per-class", "200",
		"--val", valImages,
		"--freeze", "backbone", "--epochs", "4", "--lr", "0.01", "-o", out)
	if code != 0 {
		t.Fatalf("graft finetune: %s\n%s", errs, stdout)
	}
	if !strings.Contains(stdout, "features once") {
		t.Errorf("a frozen backbone without augmentation did not use the feature cache:\n%s", stdout)
	}
	h := readHistory(t, filepath.Join(dir, "metrics.json"))
	if len(h.Epochs) != 4 || h.BestAccuracy < 0.7 {
		t.Errorf("history: %d epochs, best %.3f", len(h.Epochs), h.BestAccuracy)
	}
	for _, f := range []string{"model.onnx", "training.png", "report.md", "checkpoint/current"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}

	// --resume continues from the checkpoint to 6 epochs.
	code, _, errs = graft("finetune", "--model", "demo/pretrained.onnx",
		"--data", trainImages, "--classes", "5,6,7,8,9", "--per-class", "200",
		"--val", valImages,
		"--freeze", "backbone", "--epochs", "6", "--lr", "0.01", "--resume", "-o", out)
	if code != 0 {
		t.Fatalf("graft finetune --resume: %s", errs)
	}
	h2 := readHistory(t, filepath.Join(dir, "metrics.json"))
	a, _ := json.Marshal(h.Epochs)
	b, _ := json.Marshal(h2.Epochs[:4])
	if len(h2.Epochs) != 6 || string(a) != string(b) {
		t.Errorf("resumed history: %d epochs, the first 4 changed: %s", len(h2.Epochs), b)
	}
}

func TestFinetuneBadInput(t *testing.T) {
	dir := t.TempDir()
	model := "../../testdata/models/resnet_tiny_op13_bn/model.onnx"
	folder := filepath.Join(dir, "imgs")
	for _, c := range []string{"a", "b"} {
		os.MkdirAll(filepath.Join(folder, c), 0o755)
		for i := 0; i < 3; i++ {
			f, _ := os.Create(filepath.Join(folder, c, string(rune('0'+i))+".png"))
			png.Encode(f, image.NewRGBA(image.Rect(0, 0, 20+i, 30)))
			f.Close()
		}
	}
	os.WriteFile(filepath.Join(folder, "b", "broken.png"), []byte("\x89PNG\r\n\x1a\nnot really"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(filepath.Join(empty, "x"), 0o755)
	os.MkdirAll(filepath.Join(empty, "y"), 0o755)
	single := filepath.Join(dir, "single")
	os.MkdirAll(filepath.Join(single, "only"), 0o755)
	f, _ := os.Create(filepath.Join(single, "only", "1.png"))
	png.Encode(f, image.NewRGBA(image.Rect(0, 0, 8, 8)))
	f.Close()
	outp := filepath.Join(dir, "out.onnx")
	os.WriteFile(filepath.Join(dir, "afile"), nil, 0o644)
	base := []string{"finetune", "--model", model, "--epochs", "1", "-o", outp}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{append(base, "--data", folder), 1, "broken.png"},
		{append(base, "--data", empty), 1, "empty/x has no images"},
		{append(base, "--data", single), 1, "class"},
		{append(base, "--data", filepath.Join(dir, "nope")), 1, "nope"},
		{[]string{"finetune", "--model", model, "--data", folder, "-o", filepath.Join(dir, "afile", "out.onnx")}, 1, "afile"},
		{[]string{"finetune", "--data", folder, "-o", outp}, 2, "--model is required"},
		{append(base, "--data", folder, "--replace-head", "3"), 2, "--replace-head 3: the data has 2 classes"},
		{append(base, "--data", folder, "--replace-head", "0"), 2, "--replace-head 0"},
		{append(base, "--data", folder, "--classes", "1,2"), 2, "choosing classes by label applies to IDX data"},
		{append(base, "--data", folder, "--val", folder, "--val-split", "0.3"), 2, "--val-split and --val"},
		{append(base, "--data", folder, "--lr", "NaN"), 2, "--lr NaN"},
		{append(base, "--data", folder, "--weight-decay", "-1"), 2, "--weight-decay -1"},
		{append(base, "--data", folder, "--val-split", "NaN"), 2, "--val-split NaN"},
		{append(base, "--data", folder, "--momentum", "NaN"), 2, "--momentum NaN"},
		{append(base, "--data", folder, "--freeze", "["), 2, `--freeze "[": invalid pattern`},
		{append(base, "--data", folder, "--labels", "x"), 2, "a labels file applies to IDX data"},
		{append(base, "--data", folder, "--freeze", "all"), 1, "no trainable parameters"},
	} {
		code, _, errs := graft(c.args...)
		if code != c.code || !strings.Contains(errs, c.want) || strings.Contains(errs, "goroutine") {
			t.Errorf("%v: code %d, stderr %q; want %d and %q", c.args[len(base)-2:], code, errs, c.code, c.want)
		}
	}
	// --skip-bad trains past the broken image and says so.
	code, stdout, errs := graft(append(base, "--data", folder, "--skip-bad", "--val-split", "0.34")...)
	if code != 0 || !strings.Contains(stdout, "skipped 1 images") {
		t.Errorf("--skip-bad: code %d, %s %s", code, stdout, errs)
	}
}

// The command and the Go API do the same job: the package example's
// settings through both write the same model, byte for byte, and the same
// metrics.
func TestFinetuneCommandEqualsLibrary(t *testing.T) {
	dir := t.TempDir()
	cli := filepath.Join(dir, "cli", "model.onnx")
	photos := "../../testdata/images/fashion"
	if code, out, errs := graft("finetune", "--model", "demo/pretrained.onnx", "--data", photos, "--freeze", "backbone",
		"--epochs", "10", "--lr", "0.01", "--batch", "8", "-o", cli); code != 0 {
		t.Fatalf("graft finetune: %s\n%s", errs, out)
	}
	m, err := onnx.Load("demo/pretrained.onnx")
	if err != nil {
		t.Fatal(err)
	}
	data, err := dataset.ImageFolder(photos)
	if err != nil {
		t.Fatal(err)
	}
	opts := finetune.DefaultOptions()
	opts.Freeze = []string{"backbone"}
	opts.Epochs, opts.LR, opts.Batch = 10, 0.01, 8
	opts.Out = filepath.Join(dir, "lib", "model.onnx")
	if _, err := finetune.Run(context.Background(), m, data, nil, opts); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(cli)
	b, _ := os.ReadFile(opts.Out)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("the command wrote %d bytes, the library %d, not the same", len(a), len(b))
	}
	ha, hb := readHistory(t, filepath.Join(dir, "cli", "metrics.json")), readHistory(t, filepath.Join(dir, "lib", "metrics.json"))
	if len(ha.Epochs) != 10 || len(hb.Epochs) != 10 || ha.BestEpoch != hb.BestEpoch {
		t.Fatalf("epochs %d and %d, best %d and %d", len(ha.Epochs), len(hb.Epochs), ha.BestEpoch, hb.BestEpoch)
	}
	for i := range ha.Epochs {
		x, y := ha.Epochs[i], hb.Epochs[i]
		if x.Loss != y.Loss || x.Accuracy != y.Accuracy || *x.Val != *y.Val || x.LR != y.LR {
			t.Errorf("epoch %d: command %+v, library %+v", i+1, x, y)
		}
	}
}

// Data-parallel fine-tuning, each run its own process: --workers 2 trains
// as --workers 1 does up to float rounding, and two --workers 2 runs write
// the same bytes.
func TestWorkersAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildGraft(t)
	dir := t.TempDir()
	run := func(name string, workers int) (*train.History, []byte) {
		out := filepath.Join(dir, name, "model.onnx")
		cmd := exec.Command(bin, "finetune", "--model", filepath.Join(lenetDir, "model.onnx"),
			"--data", filepath.Join(lenetDir, "heldout-images-idx3-ubyte.gz"), "--unfreeze", "all", "--epochs", "2",
			"--lr", "0.01", "--batch", "32", "--workers", fmt.Sprint(workers), "-o", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		m, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return readHistory(t, filepath.Join(dir, name, "metrics.json")), m
	}
	h1, _ := run("one", 1)
	h2, m2 := run("two", 2)
	_, again := run("two-again", 2)
	if !bytes.Equal(m2, again) {
		t.Error("two --workers 2 runs wrote different models")
	}
	for e := range h1.Epochs {
		a, b := h1.Epochs[e], h2.Epochs[e]
		if math.Abs(a.Loss-b.Loss) > 1e-5*a.Loss || math.Abs(a.Val.Loss-b.Val.Loss) > 1e-4*a.Val.Loss {
			t.Errorf("epoch %d: one worker loss %.7f val %.7f, two workers %.7f val %.7f", e+1, a.Loss, a.Val.Loss, b.Loss, b.Val.Loss)
		}
	}
}
