package attacks

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"gorgonia.org/tensor"
)

// resnet is the full-size ResNet-18 in testdata/big, with PyTorch's FGSM
// references (testdata/gen/fgsm_refs.py).
const resnet = "resnet18_op13_bn"

// loadPB reads a tensor file of resnet's test data set.
func loadPB(t testing.TB, name string) *onnx.Tensor {
	t.Helper()
	path := testenv.Big.Files(t, filepath.Join(resnet, "test_data_set_0", name))[0]
	x, err := onnx.LoadTensor(path)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func dense32(t testing.TB, x *onnx.Tensor) *tensor.Dense {
	t.Helper()
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	shape := make([]int, len(x.Dims))
	for i, d := range x.Dims {
		shape[i] = int(d)
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
}

func loadResNet(t testing.TB) *Classifier {
	t.Helper()
	m, err := onnx.Load(testenv.Big.Files(t, filepath.Join(resnet, "model.onnx"))[0])
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClassifier(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// graft's FGSM batch on the full-size ResNet-18 equals PyTorch's, element
// for element, except where PyTorch's gradient component is within 1e-6 of
// zero, or where PyTorch's float32 gradient has another sign than its
// float64 one (a near-tie in the network that float32 rounding decided:
// there PyTorch's own step is an accident of its summation order).
func TestResNet18FGSMMatchesPyTorch(t *testing.T) {
	adv := loadPB(t, "fgsm_adv.pb")
	grad := loadPB(t, "fgsm_grad.pb")
	grad64 := loadPB(t, "fgsm_grad64.pb")
	epsT := loadPB(t, "fgsm_eps.pb")
	c := loadResNet(t)
	if c.Loss != runtime.CrossEntropy {
		t.Errorf("loss for a logits model = %v, want cross-entropy", c.Loss)
	}
	x := dense32(t, loadPB(t, "input_0.pb"))
	l64, err := loadPB(t, "labels.pb").Int64s()
	if err != nil {
		t.Fatal(err)
	}
	labels := []int{int(l64[0]), int(l64[1])}
	eps, _ := epsT.Float32s()
	got, err := FGSM{}.Perturb(c, x, Misclassification(labels), []float64{float64(eps[0])})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := adv.Float32s()
	g, _ := grad.Float32s()
	g64, _ := grad64.Float64s()
	gv := got[0].Data().([]float32)
	// graft's own gradient, to tell the attack's arithmetic (which must be
	// exact wherever the two gradients have the same sign) from the
	// gradient (checked against PyTorch's in package runtime).
	_, mine, err := c.Gradient(x, labels)
	if err != nil {
		t.Fatal(err)
	}
	mg := mine.Data().([]float32)
	near, rounding := 0, 0
	differNear, differRounding, differ, arith := 0, 0, 0, 0
	for i := range want {
		small := math.Abs(float64(g[i])) <= 1e-6
		tie := !small && sign(float64(g[i])) != sign(g64[i])
		switch {
		case small:
			near++
		case tie:
			rounding++
		}
		if gv[i] == want[i] {
			continue
		}
		if sign(mg[i]) == sign(g[i]) {
			arith++
		}
		switch {
		case small:
			differNear++
		case tie:
			differRounding++
		default:
			differ++
			if differ <= 5 {
				t.Errorf("element %d: graft %v, PyTorch %v (gradient: PyTorch %g, float64 %g, graft %g)", i, gv[i], want[i], g[i], g64[i], mg[i])
			}
		}
	}
	t.Logf("%d elements: %d equal PyTorch's bit for bit; %d differ with |grad| <= 1e-6 (of %d such); "+
		"%d differ where PyTorch's float32 gradient has another sign than its float64 one (of %d such); %d differ elsewhere",
		len(want), len(want)-differ-differNear-differRounding, differNear, near, differRounding, rounding, differ)
	if arith > 0 {
		t.Errorf("%d elements differ from PyTorch's where graft's gradient has PyTorch's sign: the FGSM step is not PyTorch's", arith)
	}
	if differ > 0 {
		t.Errorf("%d elements differ from PyTorch's where |grad| > 1e-6 and PyTorch's float32 and float64 gradients agree in sign", differ)
	}
}

// BenchmarkFGSMResNet18 times one FGSM step (forward, backward to the input,
// signed step) on a batch of 8 of the full-size ResNet-18.
// testdata/gen/benchmarks.py times graft bench beside PyTorch for the ratio.
func BenchmarkFGSMResNet18(b *testing.B) {
	c := loadResNet(b)
	const batch = 8
	x := tensor.New(tensor.WithShape(batch, 3, 224, 224), tensor.Of(tensor.Float32))
	data := x.Data().([]float32)
	for i := range data {
		data[i] = float32(i%255) / 255
	}
	labels := make([]int, batch)
	for i := range labels {
		labels[i] = (i * 97) % 1000
	}
	crit := Misclassification(labels)
	eps := []float64{8.0 / 255}
	if _, err := (FGSM{}).Perturb(c, x, crit, eps); err != nil { // compile once
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := (FGSM{}).Perturb(c, x, crit, eps); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/step")
}
