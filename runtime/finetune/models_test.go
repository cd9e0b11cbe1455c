package finetune

import (
	"context"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/attacks"
	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
)

// Fine-tuning real models on real data, through Run.

// The spatial transformer (a localisation net predicting theta, a grid from
// theta, GridSample warping the input, then a classifier) trains end to end
// on real digits: the loss falls and the localisation net's last layer,
// which only the grid's gradient reaches, changes.
func TestSpatialTransformerLearnsEndToEnd(t *testing.T) {
	digits := heldOutDigits(t)
	o := DefaultOptions()
	o.Out = filepath.Join(t.TempDir(), "stn.onnx")
	o.Epochs, o.LR = 3, 0.01
	before, err := onnx.Load("../../testdata/models/stn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), before, digits, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	h := res.History
	if h.Epochs[2].Loss >= h.Epochs[0].Loss || h.BestAccuracy < 0.5 {
		t.Errorf("STN training: loss %g -> %g, best accuracy %.3f", h.Epochs[0].Loss, h.Epochs[2].Loss, h.BestAccuracy)
	}
	before, err = onnx.Load("../../testdata/models/stn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	after, err := onnx.Load(o.Out)
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

// heldOutDigits returns the 2,000 real MNIST digits held out from the
// LeNet's training (testdata/gen/mnist_lenet.py).
func heldOutDigits(t *testing.T) *dataset.Dataset {
	t.Helper()
	ds, err := dataset.IDX(lenetDir+"/heldout-images-idx3-ubyte.gz", lenetDir+"/heldout-labels-idx1-ubyte.gz")
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

const lenetDir = "../../testdata/models/lenet_mnist"

// photoFolder writes an ImageFolder of random crops of real photos, one
// class per photo, in PNG and JPEG and of mixed sizes.
func photoFolder(t *testing.T, root string, perClass int) {
	t.Helper()
	photos := map[string]string{"cat": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg", "astronaut": "astronaut.png"}
	rng := rand.New(rand.NewSource(1))
	for class, file := range photos {
		fin, err := os.Open(testenv.Big.Files(t, "photos/"+file)[0])
		if err != nil {
			t.Fatal(err)
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
// BatchNorm in training mode) on an image folder of real RGB photos, and
// the result passes the ONNX checker.
func TestResNet18OnPhotos(t *testing.T) {
	if testing.Short() {
		t.Skip("trains the full-size ResNet-18 (-short)")
	}
	model := testenv.Big.Files(t, "resnet18_op13_bn/model.onnx")[0]
	dir := t.TempDir()
	photoFolder(t, filepath.Join(dir, "photos"), 6)
	photos, err := dataset.ImageFolder(filepath.Join(dir, "photos"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Out = filepath.Join(dir, "resnet18_photos.onnx")
	o.ValSplit, o.Epochs, o.LR, o.Batch, o.Augment = 0.34, 3, 0.01, 8, true
	res, err := Run(context.Background(), m, photos, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	h := res.History
	if len(h.Epochs) != 3 || h.Epochs[2].Loss >= h.Epochs[0].Loss {
		t.Errorf("training loss did not fall: %+v", h.Epochs)
	}
	t.Logf("losses %.3f %.3f %.3f, best val accuracy %.2f", h.Epochs[0].Loss, h.Epochs[1].Loss, h.Epochs[2].Loss, h.BestAccuracy)
	if res.Head.InFeatures != 512 || res.Head.OutFeatures != 4 {
		t.Errorf("fine-tuned head %+v", res.Head)
	}
	onnxtest.CheckModel(t, o.Out)
}

// robustAccuracy sweeps FGSM at eps over a data set in pixel space.
func robustAccuracy(t *testing.T, model string, ds *dataset.Dataset, eps float64) (clean, robust float64) {
	t.Helper()
	m, err := onnx.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	clf, err := attacks.NewClassifier(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := dataset.ForInput(1, 28, 28).Config(ds, 250, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := dataset.NewLoader(ds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := attacks.Sweep(clf, l, attacks.Config{Attack: attacks.FGSM{}, Eps: []float64{0, eps}, Samples: -1})
	if err != nil {
		t.Fatal(err)
	}
	return r.Points[0].Accuracy, r.Points[1].Accuracy
}

// Hardening on real digits: fine-tuning the MNIST LeNet with half of each
// batch replaced by FGSM examples (eps 0.1) makes it more accurate under
// that attack than plain fine-tuning, on held-out digits.
func TestAdversarialFinetuningHardens(t *testing.T) {
	if testing.Short() {
		t.Skip("three fine-tuning runs (-short)")
	}
	digits := heldOutDigits(t)
	dir := t.TempDir()
	runs := map[string]func(*Options){
		"plain": func(*Options) {},
		"adv":   func(o *Options) { o.Adversarial = Adversarial{Eps: 0.1, Ratio: 0.5} },
		"noise": func(o *Options) { o.NoiseStd = 0.3 },
	}
	acc := map[string][2]float64{}
	var val *dataset.Dataset
	for name, change := range runs {
		m, err := onnx.Load(lenetDir + "/model.onnx")
		if err != nil {
			t.Fatal(err)
		}
		o := DefaultOptions()
		o.Out, o.Dir = filepath.Join(dir, name+".onnx"), filepath.Join(dir, name)
		o.ValSplit, o.Epochs, o.LR, o.Seed = 0.5, 4, 0.01, 1
		change(&o)
		res, err := Run(context.Background(), m, digits, nil, o)
		if err != nil {
			t.Fatal(err)
		}
		val = res.Val
		c, r := robustAccuracy(t, o.Out, val, 0.1)
		acc[name] = [2]float64{c, r}
	}
	t.Logf("FGSM eps 0.1 on %d held-out digits: plain fine-tuning %.1f%% (clean %.1f%%), adversarial %.1f%% (clean %.1f%%), noise %.1f%% (clean %.1f%%)",
		val.Len(), 100*acc["plain"][1], 100*acc["plain"][0], 100*acc["adv"][1], 100*acc["adv"][0], 100*acc["noise"][1], 100*acc["noise"][0])
	if acc["adv"][1] <= acc["plain"][1]+0.05 {
		t.Errorf("adversarial fine-tuning: %.1f%% under attack, plain %.1f%%: want at least 5 points better", 100*acc["adv"][1], 100*acc["plain"][1])
	}
}
