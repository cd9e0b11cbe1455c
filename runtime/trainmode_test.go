package runtime

import (
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

// With Train set, only BatchNormalization layers whose parameters are being
// trained use batch statistics and update their running statistics.
func TestFrozenBatchNormStaysInInferenceForm(t *testing.T) {
	m, err := onnx.Load("../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := loadDense(t, "../testdata/models/resnet_tiny_op13_bn/test_data_set_0/input_0.pb", false)
	targets, _ := p.OneHot([]int{1, 2}, 10)
	running := func() [][]float32 {
		var out [][]float32
		for _, prm := range p.Params() {
			if strings.Contains(prm.Name, "running_") {
				out = append(out, append([]float32(nil), prm.Value.Data().([]float32)...))
			}
		}
		return out
	}
	eval, _ := p.Run(in)
	before := running()

	// Head only: every BN is frozen, so the step's output equals inference
	// and no statistic moves.
	res, err := p.Step(&Request{Inputs: []*tensor.Dense{in}, Targets: targets, Loss: CrossEntropy, Train: true, Params: []string{"fc.weight", "fc.bias"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Outputs[0].Data().([]float32), eval[0].Data().([]float32)) {
		t.Error("a head-only training step did not run the frozen BatchNorms in inference form")
	}
	for i, r := range running() {
		if !slices.Equal(r, before[i]) {
			t.Fatal("a frozen BatchNorm's running statistics changed")
		}
	}

	// Everything trained: batch statistics, running statistics updated.
	var all []string
	for _, prm := range p.Params() {
		if !strings.Contains(prm.Name, "running_") {
			all = append(all, prm.Name)
		}
	}
	res, err = p.Step(&Request{Inputs: []*tensor.Dense{in}, Targets: targets, Loss: CrossEntropy, Train: true, Params: all})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(res.Outputs[0].Data().([]float32), eval[0].Data().([]float32)) {
		t.Error("a full training step gave inference outputs")
	}
	changed := 0
	for i, r := range running() {
		if !slices.Equal(r, before[i]) {
			changed++
		}
	}
	if changed != len(before) {
		t.Errorf("%d of %d running statistics changed in a full training step", changed, len(before))
	}
}
