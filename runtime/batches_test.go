package runtime

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

func TestRunBatches(t *testing.T) {
	m, err := onnx.Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	data := make([]float32, 7*28*28)
	for i := range data {
		data[i] = rng.Float32()
	}
	x := tensor.New(tensor.WithShape(7, 1, 28, 28), tensor.WithBacking(data))
	whole, err := p.Run(x)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 3, 7, 100} {
		got, err := p.RunBatches(x, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !got[0].Shape().Eq(whole[0].Shape()) {
			t.Fatalf("batches of %d: outputs %v, want %v", n, got, whole)
		}
		a, b := got[0].Data().([]float32), whole[0].Data().([]float32)
		for i := range a {
			if math.Abs(float64(a[i]-b[i])) > 1e-5 {
				t.Fatalf("batches of %d: output[%d] = %v, want %v", n, i, a[i], b[i])
			}
		}
	}
	// Only the batch sizes used were compiled: 3 and the last 1.
	p.cache = map[string]session{}
	if _, err := p.RunBatches(x, 3); err != nil || len(p.cache) != 2 {
		t.Errorf("%d sessions for batches of 3 over 7, want 2 (%v)", len(p.cache), err)
	}
	bad := tensor.New(tensor.WithShape(2, 1, 27, 28), tensor.WithBacking(make([]float32, 2*27*28)))
	if _, err := p.RunBatches(bad, 1); err == nil || !strings.Contains(err.Error(), "examples 0 to 0 of 2: ") {
		t.Errorf("a bad input: %v", err)
	}
}
