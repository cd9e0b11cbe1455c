package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/attacks"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
)

const lenetDir = "../../testdata/models/lenet_mnist"

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
// FGSM at eps 0.1 than the same fine-tuning without them.
func TestAdversarialFinetuningHardens(t *testing.T) {
	images := filepath.Join(lenetDir, "heldout-images-idx3-ubyte.gz")
	labels := filepath.Join(lenetDir, "heldout-labels-idx1-ubyte.gz")
	dir := t.TempDir()
	common := []string{"finetune", "--model", filepath.Join(lenetDir, "model.onnx"), "--data", images, "--labels", labels,
		"--val-split", "0.5", "--epochs", "4", "--lr", "0.01", "--batch", "32", "--seed", "1"}
	plain, adv, noisy := filepath.Join(dir, "plain.onnx"), filepath.Join(dir, "adv.onnx"), filepath.Join(dir, "noise.onnx")
	for _, run := range [][]string{
		append(append([]string{}, common...), "--metrics", filepath.Join(dir, "p"), "-o", plain),
		append(append([]string{}, common...), "--metrics", filepath.Join(dir, "a"), "--adv", "fgsm", "--adv-eps", "0.1", "--adv-ratio", "0.5", "-o", adv),
		append(append([]string{}, common...), "--metrics", filepath.Join(dir, "n"), "--noise", "gaussian", "--noise-std", "0.3", "-o", noisy),
	} {
		if code, out, errs := graft(run...); code != 0 {
			t.Fatalf("graft %s: %s\n%s", strings.Join(run, " "), errs, out)
		}
	}
	all, err := dataset.IDX(images, labels)
	if err != nil {
		t.Fatal(err)
	}
	_, val, err := dataset.Split(all, 0.5, 1) // the split graft finetune made
	if err != nil {
		t.Fatal(err)
	}
	pc, pr := robustAccuracy(t, plain, val, 0.1)
	ac, ar := robustAccuracy(t, adv, val, 0.1)
	nc, nr := robustAccuracy(t, noisy, val, 0.1)
	t.Logf("FGSM eps 0.1 on %d held-out digits: plain fine-tuning %.1f%% (clean %.1f%%), adversarial %.1f%% (clean %.1f%%), noise %.1f%% (clean %.1f%%)",
		val.Len(), 100*pr, 100*pc, 100*ar, 100*ac, 100*nr, 100*nc)
	if ar <= pr+0.05 {
		t.Errorf("adversarial fine-tuning: %.1f%% under attack, plain %.1f%%: want at least 5 points better", 100*ar, 100*pr)
	}
}

func TestHardeningFlags(t *testing.T) {
	dir := t.TempDir()
	base := []string{"finetune", "--model", "../../testdata/models/resnet_tiny_op13_bn/model.onnx", "--data", "x", "-o", filepath.Join(dir, "o.onnx")}
	for _, c := range []struct {
		extra []string
		want  string
	}{
		{[]string{"--adv", "pgd"}, `--adv "pgd": want fgsm`},
		{[]string{"--adv", "fgsm", "--adv-eps", "0"}, "--adv-eps 0"},
		{[]string{"--adv", "fgsm", "--adv-ratio", "1.5"}, "--adv-ratio 1.5"},
		{[]string{"--noise", "salt"}, `--noise "salt"`},
		{[]string{"--noise", "gaussian", "--mean", "0.5", "--std", "0.5"}, "normalisation inside the model"},
	} {
		code, _, errs := graft(append(append([]string{}, base...), c.extra...)...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: code %d, %q; want usage error %q", c.extra, code, errs, c.want)
		}
	}
}
