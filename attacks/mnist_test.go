package attacks

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/data"
)

const lenetDir = "../testdata/models/lenet_mnist/"

// mnistRef is testdata/models/lenet_mnist/fgsm_reference.json, written by
// testdata/gen/mnist_lenet.py.
type mnistRef struct {
	Examples      int     `json:"examples"`
	CleanAccuracy float64 `json:"clean_accuracy"`
	Points        []struct {
		Eps            float64   `json:"eps"`
		Accuracy       float64   `json:"accuracy"`
		Correct        int       `json:"correct"`
		SuccessRate    float64   `json:"success_rate"`
		MeanConfidence float64   `json:"mean_confidence"`
		ClassAccuracy  []float64 `json:"class_accuracy"`
		Predictions    []int     `json:"predictions"`
	} `json:"points"`
}

func loadLeNet(t testing.TB) *Classifier {
	t.Helper()
	m, err := onnx.Load(lenetDir + "model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClassifier(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func loadHeldOut(t testing.TB) (*data.IDXImages, []int) {
	t.Helper()
	im, err := data.ReadIDXImages(lenetDir + "heldout-images-idx3-ubyte.gz")
	if err != nil {
		t.Fatal(err)
	}
	labels, err := data.ReadIDXLabels(lenetDir + "heldout-labels-idx1-ubyte.gz")
	if err != nil {
		t.Fatal(err)
	}
	return im, labels
}

// graft's FGSM sweep of the LeNet trained in PyTorch, on 2,000 real MNIST
// digits it never saw, equals PyTorch's within 0.3 points at every eps, and
// the curve falls.
func TestMNISTSweepMatchesPyTorch(t *testing.T) {
	b, err := os.ReadFile(lenetDir + "fgsm_reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref mnistRef
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	c := loadLeNet(t)
	if c.Loss != runtime.NLL {
		t.Errorf("loss for a LogSoftmax model = %v, want NLL", c.Loss)
	}
	im, labels := loadHeldOut(t)
	eps := make([]float64, len(ref.Points))
	for i, p := range ref.Points {
		eps[i] = p.Eps
	}
	// One batch, as the reference: the gradient of the batch-mean loss.
	r, err := Sweep(c, mustMemory(im.Tensor(0, im.Count), labels, 0), Config{Attack: FGSM{}, Eps: eps})
	if err != nil {
		t.Fatal(err)
	}
	if r.Examples != ref.Examples {
		t.Fatalf("%d examples, reference %d", r.Examples, ref.Examples)
	}
	t.Logf("clean accuracy: graft %.4f, PyTorch %.4f", r.CleanAccuracy, ref.CleanAccuracy)
	t.Logf("  eps  graft   PyTorch  tutorial  success  confidence")
	tutorial := []float64{.981, .943, .851, .683, .430, .208, .087}
	for i, p := range r.Points {
		want := ref.Points[i]
		t.Logf("  %.2f %.4f  %.4f   %.3f     %.4f   %.4f", p.Eps, p.Accuracy, want.Accuracy, tutorial[i], p.SuccessRate, p.MeanConfidence)
		if d := math.Abs(p.Accuracy - want.Accuracy); d > 0.003 {
			t.Errorf("eps %g: accuracy %.4f, PyTorch %.4f: differs by %.2f points", p.Eps, p.Accuracy, want.Accuracy, 100*d)
		}
		if d := math.Abs(p.SuccessRate - want.SuccessRate); d > 0.005 {
			t.Errorf("eps %g: success rate %.4f, PyTorch %.4f", p.Eps, p.SuccessRate, want.SuccessRate)
		}
		if d := math.Abs(p.MeanConfidence - want.MeanConfidence); d > 0.005 {
			t.Errorf("eps %g: mean confidence %.4f, PyTorch %.4f", p.Eps, p.MeanConfidence, want.MeanConfidence)
		}
		for k, a := range p.ClassAccuracy {
			if d := math.Abs(float64(a) - want.ClassAccuracy[k]); d > 0.03 {
				t.Errorf("eps %g class %d: accuracy %.3f, PyTorch %.3f", p.Eps, k, a, want.ClassAccuracy[k])
			}
		}
		if i > 0 && p.Accuracy >= r.Points[i-1].Accuracy {
			t.Errorf("accuracy does not fall from eps %g (%.4f) to %g (%.4f)", r.Points[i-1].Eps, r.Points[i-1].Accuracy, p.Eps, p.Accuracy)
		}
		if p.MaxPerturbation > p.Eps+1e-6 {
			t.Errorf("eps %g: max perturbation %g", p.Eps, p.MaxPerturbation)
		}
	}
	if r.Points[0].Accuracy != r.CleanAccuracy || r.CleanCorrect != ref.Points[0].Correct {
		t.Errorf("eps 0 accuracy %v, clean %v (%d correct), PyTorch %d correct: want all equal",
			r.Points[0].Accuracy, r.CleanAccuracy, r.CleanCorrect, ref.Points[0].Correct)
	}
	// Example by example: the adversarial predictions differ from PyTorch's
	// only where a gradient component near 0 took another sign.
	outs, err := Run(c, FGSM{}, im.Tensor(0, im.Count), Misclassification(labels), eps)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range outs {
		diff := 0
		for j, p := range o.Pred {
			if p != ref.Points[i].Predictions[j] {
				diff++
			}
		}
		t.Logf("eps %.2f: %d of %d predictions differ from PyTorch's", o.Eps, diff, len(o.Pred))
		if diff > 6 || i == 0 && diff > 0 {
			t.Errorf("eps %g: %d predictions differ from PyTorch's", o.Eps, diff)
		}
	}
	if last := r.Points[len(r.Points)-1].Accuracy; last > 0.3 || r.CleanAccuracy < 0.95 {
		t.Errorf("clean accuracy %.3f, accuracy at eps 0.3 %.3f: want a trained model that FGSM breaks", r.CleanAccuracy, last)
	}
}

// On the compiled LeNet (float32), FGSM is clamp(x + eps*sign(grad), 0, 1)
// computed in float32, and a sweep's accuracy at eps 0 is exactly the
// accuracy of plain inference, whatever the batching.
func TestLeNetFGSMAndCleanAccuracy(t *testing.T) {
	c := loadLeNet(t)
	im, labels := loadHeldOut(t)
	x := im.Tensor(0, 300)
	labels = labels[:300]
	advs, err := FGSM{}.Perturb(c, x, Misclassification(labels), []float64{0.1})
	if err != nil {
		t.Fatal(err)
	}
	_, g, err := c.Gradient(x, labels)
	if err != nil {
		t.Fatal(err)
	}
	xv, gv := x.Data().([]float32), g.Data().([]float32)
	for i, a := range advs[0].Data().([]float32) {
		if want := clamp(xv[i]+float32(0.1)*sign(gv[i]), 0, 1); a != want {
			t.Fatalf("element %d: %g, want %g", i, a, want)
		}
	}
	out, err := c.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	pred, _, _ := Predict(out, contract.Output{Kind: contract.Logits})
	correct := 0
	for i, p := range pred {
		if p == labels[i] {
			correct++
		}
	}
	for _, bs := range []int{300, 64, 7} {
		r, err := Sweep(c, mustMemory(x, labels, bs), Config{Attack: &PGD{Steps: 1}, Eps: []float64{0.2, 0}})
		if err != nil {
			t.Fatal(err)
		}
		if r.CleanCorrect != correct || r.Points[1].Correct != correct || r.Points[1].Accuracy != float64(correct)/300 {
			t.Errorf("batch %d: clean %d, eps 0 %d (%v); inference %d correct", bs, r.CleanCorrect, r.Points[1].Correct, r.Points[1].Accuracy, correct)
		}
	}
}

// A model ending in Softmax is attacked through its logits: the loss reads
// the Softmax's input, and predictions and confidences are those of the
// same network ending in logits.
func TestClassifierDropsFinalSoftmax(t *testing.T) {
	logits, err := onnx.Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	probs, _ := logits.Clone()
	g := probs.Graph
	out := g.Outputs[0]
	sm := g.AddNode("Softmax", "probs", []*onnx.Value{out}, []string{"probabilities"})
	g.Outputs[0] = sm.Outputs[0]
	a, err := NewClassifier(logits, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewClassifier(probs, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g.Outputs[0].Producer().OpType != "Softmax" || b.Loss != runtime.CrossEntropy || b.LossOn != out.Name {
		t.Errorf("the caller's model lost its Softmax, or loss %v on %q", b.Loss, b.LossOn)
	}
	im, labels := loadHeldOut(t)
	x := im.Tensor(0, 20)
	oa, err := Run(a, FGSM{}, x, Misclassification(labels[:20]), []float64{0, 0.1})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := Run(b, FGSM{}, x, Misclassification(labels[:20]), []float64{0, 0.1})
	if err != nil {
		t.Fatal(err)
	}
	for k := range oa {
		for i := range oa[k].Pred {
			if oa[k].Pred[i] != ob[k].Pred[i] || math.Abs(oa[k].Confidence[i]-ob[k].Confidence[i]) > 1e-6 {
				t.Fatalf("eps %g example %d: %d (%g) with Softmax, %d (%g) without", oa[k].Eps, i, ob[k].Pred[i], ob[k].Confidence[i], oa[k].Pred[i], oa[k].Confidence[i])
			}
		}
	}
}
