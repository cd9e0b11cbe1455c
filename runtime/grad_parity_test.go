package runtime

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"gorgonia.org/tensor"
)

// The gradient of the mean cross-entropy with respect to the input of the
// full-size ResNet-18 (BatchNorm kept, eval mode) equals PyTorch's: the
// gradient FGSM follows.
func TestResNet18InputGradientMatchesPyTorch(t *testing.T) {
	dir := "../testdata/big/resnet18_op13_bn"
	ref := filepath.Join(dir, "test_data_set_0/grad_input_0.pb")
	if _, err := onnx.LoadTensor(ref); err != nil {
		onnxtest.Missing(t, "full-size models with gradient references (testdata/gen/export_models.py --big)")
	}
	m, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	labelsT, err := onnx.LoadTensor(filepath.Join(dir, "test_data_set_0/labels.pb"))
	if err != nil {
		t.Fatal(err)
	}
	l64, _ := labelsT.Int64s()
	labels := make([]int, len(l64))
	for i, l := range l64 {
		labels[i] = int(l)
	}
	targets, err := p.OneHot(labels, 1000)
	if err != nil {
		t.Fatal(err)
	}
	in := loadDense(t, filepath.Join(dir, "test_data_set_0/input_0.pb"), false)
	res, err := p.Step(&Request{Inputs: []*tensor.Dense{in}, Targets: targets, Loss: CrossEntropy, InputGrads: true})
	if err != nil {
		t.Fatal(err)
	}
	got := float64sOf(res.InputGrads[0])
	want := float64sOf(loadDense(t, ref, false))
	var maxRef, maxDiff, num, den float64
	for i := range want {
		maxRef = math.Max(maxRef, math.Abs(want[i]))
		maxDiff = math.Max(maxDiff, math.Abs(got[i]-want[i]))
		num += (got[i] - want[i]) * (got[i] - want[i])
		den += want[i] * want[i]
	}
	rel := maxDiff / maxRef
	t.Logf("loss %.6f; max |graft - PyTorch| = %.3g (%.3g of the largest component); relative L2 error %.3g", res.Loss, maxDiff, rel, math.Sqrt(num/den))
	if rel > 1e-4 || math.IsNaN(rel) {
		t.Errorf("input gradient differs from PyTorch's by %.3g of its largest component, want <= 1e-4", rel)
	}
	// FGSM needs the sign: it must agree wherever the component is not ~0.
	flips := 0
	for i := range want {
		if math.Abs(want[i]) > 1e-6 && math.Signbit(got[i]) != math.Signbit(want[i]) {
			flips++
		}
	}
	if flips > 0 {
		t.Errorf("%d gradient signs differ from PyTorch's where |grad| > 1e-6", flips)
	}
}
