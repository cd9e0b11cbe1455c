package main

import (
	"encoding/json"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx/onnxtest"
	"github.com/graft-dev/graft/runtime/train"
)

const fashionMNIST = "/usr/share/datasets/fashion-mnist"

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
	if _, err := os.Stat(fashionMNIST); err != nil {
		onnxtest.Missing(t, "Debian's dataset-fashion-mnist")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "model.onnx")
	code, stdout, errs := graft("finetune", "--model", "demo/pretrained.onnx",
		"--data", filepath.Join(fashionMNIST, "train-images-idx3-ubyte.gz"), "--classes", "5,6,7,8,9", "--per-class", "200",
		"--val", filepath.Join(fashionMNIST, "t10k-images-idx3-ubyte.gz"),
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
	for _, f := range []string{"model.onnx", "training.png", "checkpoint/last.onnx", "checkpoint/optimizer.state"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}

	// --resume continues from the checkpoint to 6 epochs.
	code, _, errs = graft("finetune", "--model", "demo/pretrained.onnx",
		"--data", filepath.Join(fashionMNIST, "train-images-idx3-ubyte.gz"), "--classes", "5,6,7,8,9", "--per-class", "200",
		"--val", filepath.Join(fashionMNIST, "t10k-images-idx3-ubyte.gz"),
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

// photoFolder writes an ImageFolder of random crops of real photos, one
// class per photo, in PNG and JPEG and of mixed sizes.
func photoFolder(t *testing.T, root string, perClass int) {
	t.Helper()
	photos := map[string]string{"cat": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg", "astronaut": "astronaut.png"}
	rng := rand.New(rand.NewSource(1))
	for class, file := range photos {
		fin, err := os.Open(filepath.Join("../../testdata/big/photos", file))
		if err != nil {
			onnxtest.Missing(t, "sample photos (bash testdata/gen/setup.sh): %v", err)
		}
		src, _, err := image.Decode(fin)
		fin.Close()
		if err != nil {
			t.Fatal(err)
		}
		b := src.Bounds()
		if err := os.MkdirAll(filepath.Join(root, class), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < perClass; i++ {
			side := b.Dy()/2 + rng.Intn(b.Dy()/3)
			x0, y0 := rng.Intn(b.Dx()-side), rng.Intn(b.Dy()-side)
			crop := image.NewRGBA(image.Rect(0, 0, side, side+rng.Intn(40)))
			draw.Draw(crop, crop.Bounds(), src, image.Pt(x0, y0), draw.Src)
			f, err := os.Create(filepath.Join(root, class, class+string(rune('a'+i))+[]string{".png", ".jpg"}[i%2]))
			if err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 {
				err = png.Encode(f, crop)
			} else {
				err = jpeg.Encode(f, crop, &jpeg.Options{Quality: 90})
			}
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// The full-size torchvision ResNet-18 fine-tunes end to end (every layer,
// BatchNorm in training mode) on an image folder of real RGB photos.
func TestFinetuneResNet18OnPhotos(t *testing.T) {
	model := "../../testdata/big/resnet18_op13_bn/model.onnx"
	if _, err := os.Stat(model); err != nil {
		onnxtest.Missing(t, "full-size ResNet-18 (testdata/gen/export_models.py --big)")
	}
	dir := t.TempDir()
	photoFolder(t, filepath.Join(dir, "photos"), 6)
	out := filepath.Join(dir, "resnet18_photos.onnx")
	code, stdout, errs := graft("finetune", "--model", model, "--data", filepath.Join(dir, "photos"), "--val-split", "0.34",
		"--epochs", "3", "--lr", "0.01", "--batch", "8", "--augment", "-o", out)
	if code != 0 {
		t.Fatalf("graft finetune: %s\n%s", errs, stdout)
	}
	h := readHistory(t, filepath.Join(dir, "metrics.json"))
	if len(h.Epochs) != 3 {
		t.Fatalf("%d epochs", len(h.Epochs))
	}
	if h.Epochs[2].Loss >= h.Epochs[0].Loss {
		t.Errorf("training loss did not fall: %g -> %g", h.Epochs[0].Loss, h.Epochs[2].Loss)
	}
	t.Logf("losses %.3f %.3f %.3f, best val accuracy %.2f", h.Epochs[0].Loss, h.Epochs[1].Loss, h.Epochs[2].Loss, h.BestAccuracy)
	code, js, errs := graft("inspect", "--json", out)
	if code != 0 {
		t.Fatal(errs)
	}
	var r Report
	json.Unmarshal([]byte(js), &r)
	if r.Head == nil || r.Head.InFeatures != 512 || r.Head.OutFeatures != 4 {
		t.Errorf("fine-tuned head %+v", r.Head)
	}
	onnxtest.CheckModel(t, out)
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
		{[]string{"finetune", "--model", model, "--data", folder, "-o", filepath.Join(dir, "no/such/out.onnx")}, 1, "cannot write output"},
		{[]string{"finetune", "--data", folder, "-o", outp}, 2, "--model is required"},
		{append(base, "--data", folder, "--replace-head", "3"), 1, "--replace-head 3 but the data has 2 classes"},
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
