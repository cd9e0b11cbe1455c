package surgery

import (
	"math"
	"testing"

	"github.com/graft-dev/graft/onnx"
)

// A new head starts as PyTorch's nn.Linear does: weights and bias uniform
// in ±1/sqrt(in_features). Over 640 draws the largest comes close to the
// bound and none passes it.
func TestNewHeadInitBound(t *testing.T) {
	m, err := onnx.Load("../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(m, ReplaceHead(10, HeadOptions{Seed: 3})); err != nil {
		t.Fatal(err)
	}
	h, err := FindHead(m.Graph)
	if err != nil {
		t.Fatal(err)
	}
	bound := 1 / math.Sqrt(float64(h.InFeatures))
	for _, name := range []string{"fc.weight", "fc.bias"} {
		v, err := m.Graph.Value(name).Const.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		var largest float64
		for _, x := range v {
			largest = math.Max(largest, math.Abs(float64(x)))
		}
		want := 0.97 * bound
		if name == "fc.bias" {
			want = 0.5 * bound // 10 draws
		}
		if largest > bound || largest < want {
			t.Errorf("%s (%d values): largest |w| %.4f, want it in [%.4f, %.4f] (1/sqrt(%d))", name, len(v), largest, want, bound, h.InFeatures)
		}
	}
}
