package main

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/runtime/train"
)

// graft demo fine-tunes the embedded model and writes the model, metrics,
// plot and report; the saved model has the new head and trainable set.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := graft("demo", "-o", dir, "--epochs", "6")
	if code != 0 {
		t.Fatalf("graft demo: %s", errs)
	}
	if !strings.Contains(out, "best validation accuracy") {
		t.Errorf("demo output:\n%s", out)
	}
	var h train.History
	b, err := os.ReadFile(filepath.Join(dir, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Epochs) != 6 || h.Epochs[0].Val == nil || h.Epochs[0].Seconds < 0 || h.BestEpoch < 0 {
		t.Fatalf("metrics.json: %+v", h)
	}
	// The new head learns: far above the 20% of chance on 5 classes.
	if h.BestAccuracy < 0.6 || h.Epochs[5].Loss >= h.Epochs[0].Loss {
		t.Errorf("best accuracy %.3f, loss %g -> %g", h.BestAccuracy, h.Epochs[0].Loss, h.Epochs[5].Loss)
	}
	f, err := os.Open(filepath.Join(dir, "training.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 960 || b.Dy() != 336 {
		t.Errorf("training.png is %v, want 960x336", b)
	}
	if r, err := os.ReadFile(filepath.Join(dir, "report.md")); err != nil || !strings.Contains(string(r), "best validation accuracy") {
		t.Errorf("report.md: %v\n%s", err, r)
	}
	code, js, errs := graft("inspect", "--json", filepath.Join(dir, "model.onnx"))
	if code != 0 {
		t.Fatal(errs)
	}
	var r Report
	json.Unmarshal([]byte(js), &r)
	if r.Head == nil || r.Head.OutFeatures != 5 || strings.Join(r.Trainable, ",") != "fc.weight,fc.bias" {
		t.Errorf("saved model: head %+v trainable %v", r.Head, r.Trainable)
	}
}
