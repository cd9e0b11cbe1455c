package main

import (
	"context"
	"encoding/json"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/cmd/examples/internal/pics"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/data"
	"github.com/graft-dev/graft/surgery"
	"gorgonia.org/tensor"
)

var (
	lenetDir = filepath.Join("..", "..", "..", "testdata", "models", "lenet_mnist")
	digits   = filepath.Join(lenetDir, "heldout-images-idx3-ubyte.gz")
)

// TestRun runs the comparison briefly on real digits (trained on 100 of
// the held-out digits, one epoch each way, validated on all 2,000) and checks what it writes: both models, the
// report, and the picture, whose pairs are each digit beside what the
// written transformer makes of it. The model with the transformer, at
// opset 16 with its grid decomposed, runs in onnxruntime with graft's
// outputs.
func TestRun(t *testing.T) {
	out := t.TempDir()
	o := DefaultOptions()
	o.Model, o.Train, o.Val, o.PerClass, o.Out, o.Epochs, o.Batch = filepath.Join(lenetDir, "model.onnx"), digits, digits, 10, out, 1, 16
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", res)
	var report Result
	if b, err := os.ReadFile(filepath.Join(out, ReportFile)); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &report); err != nil {
		t.Fatal(err)
	}
	if report.Plain != res.Plain || report.STN != res.STN || report.Examples != 100 || report.ValSize != 2000 {
		t.Errorf("report.json %+v, want the run's %+v", report, res)
	}
	for _, s := range []Summary{res.Plain, res.STN} {
		if s.FinalAccuracy <= 0 || s.FinalAccuracy > 1 || s.BestEpoch != 1 {
			t.Errorf("summary %+v", s)
		}
	}

	m, err := onnx.Load(res.STN.Model)
	if err != nil {
		t.Fatal(err)
	}
	if v := m.OpsetVersion(""); v != 16 || len(surgery.Find(m.Graph, surgery.Query{Op: "GridSample"})) != 1 {
		t.Fatalf("the model with the transformer imports opset %d, want 16 and a GridSample", v)
	}
	imgs, err := data.ReadIDXImages(digits)
	if err != nil {
		t.Fatal(err)
	}
	x := imgs.Tensor(0, pictureDigits)
	m.Graph.Outputs = append(m.Graph.Outputs, m.Graph.Value(surgery.STNOutput))
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := p.Run(x)
	if err != nil {
		t.Fatal(err)
	}
	checkPicture(t, filepath.Join(out, PictureFile), x, outs[1])

	in := filepath.Join(t.TempDir(), "input_0.pb")
	xt, err := onnx.FromFloat32("input", []int64{pictureDigits, 1, 28, 28}, x.Data().([]float32))
	if err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(xt, in); err != nil {
		t.Fatal(err)
	}
	ort := onnxtest.RunORT(t, res.STN.Model, in)
	want, err := onnx.FromFloat32("output", []int64{pictureDigits, 10}, outs[0].Data().([]float32))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := onnxtest.MaxAbsDiff(ort[0], want)
	t.Logf("onnxruntime within %.2g of graft", d)
	if err := onnxtest.AllClose(ort[0], want, 1e-5, 1e-5); err != nil {
		t.Errorf("onnxruntime differs from graft: %v", err)
	}
}

// checkPicture checks that the picture shows each digit of x, left, beside
// its transformed version, right, pairsPerRow pairs a row.
func checkPicture(t *testing.T, path string, x, transformed *tensor.Dense) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	im, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := im.(*image.Gray)
	if !ok {
		t.Fatalf("%s is %T, want gray", path, im)
	}
	side := 28 + pics.Border
	if w, h := g.Bounds().Dx(), g.Bounds().Dy(); w != 2*pairsPerRow*side+pics.Border || h != pictureDigits/pairsPerRow*side+pics.Border {
		t.Fatalf("picture %dx%d", w, h)
	}
	xs, ts := x.Data().([]float32), transformed.Data().([]float32)
	worst := 0.0
	for k := range pictureDigits {
		for half, src := range [][]float32{xs, ts} {
			col, row := 2*(k%pairsPerRow)+half, k/pairsPerRow
			for y := range 28 {
				for xx := range 28 {
					got := float64(g.GrayAt(pics.Border+col*side+xx, pics.Border+row*side+y).Y) / 255
					want := math.Max(0, math.Min(1, float64(src[k*784+y*28+xx])))
					worst = math.Max(worst, math.Abs(got-want))
				}
			}
		}
	}
	if worst > 0.5/255+1e-6 {
		t.Errorf("the picture's pixels differ from the digits and their transformed versions by up to %g", worst)
	}
}
