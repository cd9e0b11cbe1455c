package attacks_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/attacks"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/train"
)

const (
	lenetDir     = "../testdata/models/lenet_mnist/"
	heldOut      = lenetDir + "heldout-images-idx3-ubyte.gz"
	heldOutLabel = lenetDir + "heldout-labels-idx1-ubyte.gz"
)

func load(t *testing.T, path string) *onnx.Model {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// digits returns the first n held-out MNIST digits.
func digits(t *testing.T, n int) *dataset.Dataset {
	t.Helper()
	ds, err := dataset.IDX(heldOut, heldOutLabel)
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return ds.Subset(idx)
}

// evaluate returns m's accuracy on ds fed as pre says, by train.Evaluate.
func evaluate(t *testing.T, m *onnx.Model, ds *dataset.Dataset, pre dataset.Preprocessing) float64 {
	t.Helper()
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pre.Config(ds, 50, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := dataset.NewLoader(ds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, acc, _, err := train.Evaluate(p, l, 10)
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

// A model whose stored contract says it takes normalised inputs (as graft
// finetune stores it) is attacked with that normalisation inside it: its
// clean accuracy is the accuracy of running it on inputs normalised as
// the contract says, not on raw pixels.
func TestRobustnessAppliesStoredNormalisation(t *testing.T) {
	ds := digits(t, 300)
	for _, tc := range []struct {
		model     string
		mean, std []float32
		override  bool // given as Overrides rather than stored
	}{
		// (x - 0.5) / 0.5, [-1, 1]: a common choice for gray digits.
		{lenetDir + "model.onnx", []float32{0.5}, []float32{0.5}, false},
		// Three channels, ImageNet's normalisation: the digits are made RGB
		// and resized to 64 as the contract says.
		{"../testdata/models/resnet_tiny_op13_bn/model.onnx", contract.ImageNetMean, contract.ImageNetStd, false},
		// One value for three channels, as an override.
		{"../testdata/models/resnet_tiny_op13_bn/model.onnx", []float32{0.5}, []float32{0.25}, true},
	} {
		m := load(t, tc.model)
		c, err := contract.Derive(m)
		if err != nil {
			t.Fatal(err)
		}
		opts := attacks.RobustnessOptions{Attack: attacks.FGSM{}, Eps: []float64{0}}
		if tc.override {
			opts.Overrides = contract.Overrides{Mean: tc.mean, Std: tc.std}
		}
		c.Input.Mean, c.Input.Std, c.Input.NormalizedInside = tc.mean, tc.std, false
		if !tc.override {
			if err := contract.Store(m, c); err != nil {
				t.Fatal(err)
			}
		}
		r, err := attacks.Robustness(context.Background(), m, ds, opts)
		if err != nil {
			t.Fatal(err)
		}
		pre, err := dataset.PreprocessingFor(c.Input)
		if err != nil {
			t.Fatal(err)
		}
		want := evaluate(t, m, ds, pre)
		pre.Mean, pre.Std = nil, nil
		raw := evaluate(t, m, ds, pre)
		t.Logf("%s: clean accuracy %.4f; evaluated on normalised inputs %.4f, on raw pixels %.4f", tc.model, r.CleanAccuracy, want, raw)
		if r.CleanAccuracy != want {
			t.Errorf("%s: clean accuracy %v, but the model on inputs normalised as its contract says has %v", tc.model, r.CleanAccuracy, want)
		}
		if raw == want {
			t.Errorf("%s: raw pixels give the accuracy normalised ones do: the test cannot tell them apart", tc.model)
		}
		if len(r.Settings.Mean) != c.Input.Channels || math.Abs(r.Settings.Std[0]-float64(tc.std[0])) > 1e-7 {
			t.Errorf("%s: settings mean %v std %v", tc.model, r.Settings.Mean, r.Settings.Std)
		}
		if m.Graph.Node("graft_normalize_div") != nil {
			t.Errorf("%s: Robustness changed the caller's model", tc.model)
		}
	}
}

// logitsLeNet returns the LeNet without its final LogSoftmax: a network
// ending in logits.
func logitsLeNet(t *testing.T) *onnx.Model {
	t.Helper()
	m := load(t, lenetDir+"model.onnx")
	g := m.Graph
	last := g.Outputs[0].Producer()
	if last.OpType != "LogSoftmax" {
		t.Fatalf("the LeNet ends in %s", last.OpType)
	}
	logits := last.Input(0)
	logits.Type = g.Outputs[0].Type
	g.Outputs[0] = logits
	g.RemoveNode(last)
	return m
}

// withFinal makes op the model's new last node, reading its old output.
func withFinal(m *onnx.Model, op string) *onnx.Model {
	g := m.Graph
	n := g.AddNode(op, "final_"+op, []*onnx.Value{g.Outputs[0]}, []string{"scores_" + op},
		&onnx.Attribute{Name: "axis", Type: onnx.AttrInt, Int: 1})
	if op == "Sigmoid" {
		n.Attrs = nil
	}
	n.Outputs[0].Type = g.Outputs[0].Type
	g.Outputs[0] = n.Outputs[0]
	return m
}

// The same network ending in logits, in Softmax or in Sigmoid is equally
// robust at every eps: the attacks differentiate the logits in all three
// (runtime.LossFor), not probabilities that saturate.
func TestRobustnessSoftmaxAndSigmoidEqualLogits(t *testing.T) {
	ds := digits(t, 300)
	opts := attacks.RobustnessOptions{Attack: attacks.FGSM{}, Eps: []float64{0, 0.05, 0.1, 0.2}}
	run := func(m *onnx.Model) *attacks.Report {
		r, err := attacks.Robustness(context.Background(), m, ds, opts)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	base := run(logitsLeNet(t))
	for _, op := range []string{"Softmax", "Sigmoid"} {
		r := run(withFinal(logitsLeNet(t), op))
		for i, p := range r.Points {
			b := base.Points[i]
			t.Logf("%s eps %g: accuracy %.4f, logits %.4f", op, p.Eps, p.Accuracy, b.Accuracy)
			if p.Correct != b.Correct || p.Successes != b.Successes || p.MaxPerturbation != b.MaxPerturbation {
				t.Errorf("%s eps %g: %d correct, %d successes; the network ending in logits: %d, %d", op, p.Eps, p.Correct, p.Successes, b.Correct, b.Successes)
			}
			// Softmax gives the probabilities the logits' softmax gives;
			// a Sigmoid's are its own.
			if op == "Softmax" && math.Abs(p.MeanConfidence-b.MeanConfidence) > 1e-6 {
				t.Errorf("%s eps %g: mean confidence %v, logits %v", op, p.Eps, p.MeanConfidence, b.MeanConfidence)
			}
		}
		if !strings.Contains(r.Settings.Loss, "before the final "+op) {
			t.Errorf("%s: loss %q", op, r.Settings.Loss)
		}
	}
	if base.Points[2].Accuracy > base.CleanAccuracy-0.1 {
		t.Errorf("FGSM at eps 0.1 barely moves the accuracy (%v to %v): the comparison says little", base.CleanAccuracy, base.Points[2].Accuracy)
	}
}

// Labels the model has no class for, and targets it has no class for, are
// refused before any work, naming the example or the class.
func TestRobustnessChecksLabelsAndTargets(t *testing.T) {
	m := load(t, lenetDir+"model.onnx")
	ds := digits(t, 50)
	five, err := ds.Select(0, 1, 2, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	// The LeNet with a 3-class head: labels 3 and 4 are not its classes.
	small := load(t, lenetDir+"model.onnx")
	small.Graph.Outputs[0].Type.Shape[1] = onnx.Fixed(3)
	_, err = attacks.Robustness(context.Background(), small, five, attacks.RobustnessOptions{Attack: attacks.FGSM{}})
	if err == nil || !strings.Contains(err.Error(), heldOut+"[") || !strings.Contains(err.Error(), "is not one of the model's 3 classes") {
		t.Errorf("labels beyond the model's classes: %v", err)
	}
	_, err = attacks.Robustness(context.Background(), m, ds, attacks.RobustnessOptions{Attack: attacks.FGSM{}, Target: attacks.TargetClass(10)})
	if err == nil || !strings.Contains(err.Error(), "target class 10") {
		t.Errorf("target 10 of 10 classes: %v", err)
	}
	r, err := attacks.Robustness(context.Background(), m, ds, attacks.RobustnessOptions{Attack: attacks.FGSM{}, Target: attacks.NextClass, Eps: []float64{0.3}, Samples: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Settings.Targeted || r.Grid == nil || len(r.Grid.Targets) != 4 || r.Grid.Targets[0] != (r.Grid.Labels[0]+1)%10 {
		t.Errorf("targeted: %+v, grid %+v", r.Settings, r.Grid)
	}
}

// Limit takes the first examples of IDX data, and the report says so;
// cancelling the context stops the sweep with the context's error.
func TestRobustnessLimitAndCancel(t *testing.T) {
	m := load(t, lenetDir+"model.onnx")
	ds := digits(t, 300)
	var seen []int
	r, err := attacks.Robustness(context.Background(), m, ds, attacks.RobustnessOptions{
		Attack: attacks.FGSM{}, Eps: []float64{0, 0.1}, Limit: 120, Batch: 50,
		Progress: func(done, total int) { seen = append(seen, done, total) },
	})
	if err != nil {
		t.Fatal(err)
	}
	first, err := attacks.Robustness(context.Background(), m, digits(t, 120), attacks.RobustnessOptions{Attack: attacks.FGSM{}, Eps: []float64{0, 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Examples != 120 || r.Settings.Limit != 120 || r.Points[1].Correct != first.Points[1].Correct || r.Settings.BatchSize != 50 {
		t.Errorf("limit 120: %d examples, settings %+v; the first 120: %d correct at eps 0.1, limited %d", r.Examples, r.Settings, first.Points[1].Correct, r.Points[1].Correct)
	}
	if want := []int{50, 120, 100, 120, 120, 120}; !slices.Equal(seen, want) {
		t.Errorf("progress %v, want %v", seen, want)
	}
	if !strings.Contains(r.Settings.Data, "120 of 300 images") {
		t.Errorf("data %q", r.Settings.Data)
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, err = attacks.Robustness(ctx, m, ds, attacks.RobustnessOptions{Attack: attacks.FGSM{}, Batch: 50,
		Progress: func(done, _ int) {
			if done >= 100 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
