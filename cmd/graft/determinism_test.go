package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/onnx"
)

// Reruns are bit-identical: the same command twice writes the same model,
// for the cached-feature path (demo) and for full training with random
// augmentation, dropout-free but with train-mode BatchNorm and shuffles.
func TestRerunsAreBitIdentical(t *testing.T) {
	runTwice := func(name string, args func(dir string) []string) {
		var models [][]byte
		for i := 0; i < 2; i++ {
			dir := t.TempDir()
			if code, out, errs := graft(args(dir)...); code != 0 {
				t.Fatalf("%s: %s\n%s", name, errs, out)
			}
			b, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			models = append(models, b)
		}
		if !bytes.Equal(models[0], models[1]) {
			t.Errorf("%s: two runs wrote different models", name)
		}
	}
	runTwice("demo", func(dir string) []string { return []string{"demo", "-o", dir, "--epochs", "3"} })

	photos := t.TempDir()
	photoFolderSmall(t, photos)
	runTwice("finetune --augment", func(dir string) []string {
		return []string{"finetune", "--model", "../../testdata/models/resnet_tiny_op13_bn/model.onnx", "--data", photos,
			"--val-split", "0.34", "--epochs", "2", "--lr", "0.01", "--batch", "4", "--augment", "--seed", "3",
			"-o", filepath.Join(dir, "model.onnx")}
	})
}

// photoFolderSmall writes a 2-class folder of generated RGB images.
func photoFolderSmall(t *testing.T, root string) {
	t.Helper()
	for c, class := range []string{"bright", "dark"} {
		dir := filepath.Join(root, class)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 6; i++ {
			writeGradientPNG(t, filepath.Join(dir, class+string(rune('a'+i))+".png"), 70+i*3, 64+i, uint8(200-150*c), uint8(i*20))
		}
	}
}

// The spatial transformer (a localisation net predicting theta, a grid from
// theta, GridSample warping the input, then a classifier) trains end to end
// on real digits: the loss falls and the localisation net's last layer,
// which only the grid's gradient reaches, changes.
func TestSpatialTransformerLearnsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "stn.onnx")
	code, stdout, errs := graft("finetune", "--model", "../../testdata/models/stn/model.onnx",
		"--data", filepath.Join(lenetDir, "heldout-images-idx3-ubyte.gz"), "--labels", filepath.Join(lenetDir, "heldout-labels-idx1-ubyte.gz"),
		"--val-split", "0.2", "--epochs", "3", "--lr", "0.01", "--batch", "32", "-o", out)
	if code != 0 {
		t.Fatalf("graft finetune stn: %s\n%s", errs, stdout)
	}
	h := readHistory(t, filepath.Join(dir, "metrics.json"))
	if h.Epochs[2].Loss >= h.Epochs[0].Loss || h.BestAccuracy < 0.5 {
		t.Errorf("STN training: loss %g -> %g, best accuracy %.3f", h.Epochs[0].Loss, h.Epochs[2].Loss, h.BestAccuracy)
	}
	before, err := onnx.Load("../../testdata/models/stn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	after, err := onnx.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	b0, _ := before.Graph.Value("fc_loc.2.weight").Const.Float32s()
	b1, _ := after.Graph.Value("fc_loc.2.weight").Const.Float32s()
	changed := 0
	for i := range b0 {
		if b0[i] != b1[i] {
			changed++
		}
	}
	if changed < len(b0)/2 {
		t.Errorf("only %d of %d localisation weights changed: the grid's gradient does not reach theta", changed, len(b0))
	}
	t.Logf("losses %.3f -> %.3f, best accuracy %.3f, %d/%d localisation weights moved", h.Epochs[0].Loss, h.Epochs[2].Loss, h.BestAccuracy, changed, len(b0))
}

// writeGradientPNG writes a w x h RGB image: a base brightness with a
// diagonal gradient whose slope depends on shift.
func writeGradientPNG(t *testing.T, path string, w, h int, base, shift uint8) {
	t.Helper()
	im := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := uint8((int(base) + (x+y)*int(shift)/64) % 256)
			im.Set(x, y, color.RGBA{v, uint8(int(v) * 3 / 4), uint8(255 - int(v)), 255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, im); err != nil {
		t.Fatal(err)
	}
}
