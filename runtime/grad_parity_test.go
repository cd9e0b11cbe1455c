package runtime

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

// The gradient of the mean cross-entropy with respect to the input of the
// full-size ResNet-18 (BatchNorm kept, eval mode) equals PyTorch's: the
// gradient FGSM follows. The reference is PyTorch's float64 gradient of the
// same model and input: PyTorch's own float32 gradient is 3e-5 away from it
// (a ReLU near-tie flips 99 signs), so float32 results of two libraries
// agree only as far as their rounding does; graft's float32 is compared to
// the exact value, and to PyTorch's float32 for information. Both ways
// graft computes it are checked: as trained weights are (im2col), and as
// an attack on fixed weights does (Options.FixedWeights: BatchNormalization
// folded into the convolutions, Winograd).
func TestResNet18InputGradientMatchesPyTorch(t *testing.T) {
	for _, fixed := range []bool{false, true} {
		t.Run(fmt.Sprintf("fixed=%v", fixed), func(t *testing.T) { testResNet18InputGradient(t, Options{FixedWeights: fixed}) })
	}
}

func testResNet18InputGradient(t *testing.T, opts Options) {
	const model = "resnet18_op13_bn"
	ds := filepath.Join(model, "test_data_set_0")
	testenv.Big.Files(t, filepath.Join(model, "model.onnx"), filepath.Join(ds, "labels.pb"), filepath.Join(ds, "input_0.pb"))
	refs := testenv.Big.Files(t, filepath.Join(ds, "fgsm_grad64.pb"), filepath.Join(ds, "grad_input_0.pb"))
	dir, ref64, ref32 := testenv.Big.Path(model), refs[0], refs[1]
	m, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(m, opts)
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
	compare := func(want []float64) (rel, l2 float64, flips int) {
		var maxRef, maxDiff, num, den float64
		for i := range want {
			maxRef = math.Max(maxRef, math.Abs(want[i]))
			maxDiff = math.Max(maxDiff, math.Abs(got[i]-want[i]))
			num += (got[i] - want[i]) * (got[i] - want[i])
			den += want[i] * want[i]
			if math.Abs(want[i]) > 1e-6 && math.Signbit(got[i]) != math.Signbit(want[i]) {
				flips++
			}
		}
		return maxDiff / maxRef, math.Sqrt(num / den), flips
	}
	rel, l2, flips := compare(float64sOf(loadDense(t, ref64, true)))
	t.Logf("loss %.6f; against PyTorch float64: max diff %.3g of the largest component, relative L2 %.3g, %d sign flips", res.Loss, rel, l2, flips)
	if rel > 1e-4 || math.IsNaN(rel) {
		t.Errorf("input gradient differs from PyTorch's (float64) by %.3g of its largest component, want <= 1e-4", rel)
	}
	if flips > 0 {
		t.Errorf("%d gradient signs differ from PyTorch's (float64) where |grad| > 1e-6", flips)
	}
	rel32, l232, flips32 := compare(float64sOf(loadDense(t, ref32, false)))
	t.Logf("for information, against PyTorch float32: max diff %.3g, relative L2 %.3g, %d sign flips", rel32, l232, flips32)
}
