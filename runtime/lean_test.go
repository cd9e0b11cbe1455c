package runtime

import (
	"slices"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

// An inference run (leanRun) computes exactly what the tape machine does,
// and holds fewer bytes at once than the tape machine's one buffer per
// node.
func TestLeanRunEqualsTapeMachine(t *testing.T) {
	for _, name := range []string{"resnet_tiny_op13_bn", "resnet_tiny_op17_folded", "cnn", "stn"} {
		p := compileTestModel(t, name)
		shape := []int{3}
		for _, d := range p.inputs[0].Type.Shape[1:] {
			shape = append(shape, int(d.Value))
		}
		x := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(ramp(shape)))
		lean, err := p.Run(x)
		if err != nil {
			t.Fatal(err)
		}
		s, _, err := buildSession[float32](p, Plan{Inputs: [][]int{shape}})
		if err != nil {
			t.Fatal(err)
		}
		if s.lean == nil {
			t.Fatalf("%s: an inference session has no lean schedule", name)
		}
		peak, all := leanPeak(s.lean, 4), int64(0)
		for _, n := range s.g.AllNodes() {
			if n.Op() != nil {
				all += int64(n.Shape().TotalSize()) * 4
			}
		}
		if peak >= all {
			t.Errorf("%s: the lean run holds %d bytes at once, the tape machine %d", name, peak, all)
		}
		s.lean = nil // the tape machine
		s.start()
		tape, err := s.run(&Request{Inputs: []*tensor.Dense{x}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(lean[0].Data().([]float32), tape.Outputs[0].Data().([]float32)) {
			t.Errorf("%s: the lean run's outputs differ from the tape machine's", name)
		}
	}
}

// ramp fills a tensor of shape with values that vary along every axis.
func ramp(shape []int) []float32 {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%97)/97 - 0.4
	}
	return v
}

func compileTestModel(t *testing.T, name string) *Program {
	t.Helper()
	m, err := onnx.Load("../testdata/models/" + name + "/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
