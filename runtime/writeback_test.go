package runtime

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

// Trained weights written back and saved give a model that computes what
// the program computes.
func TestWriteBackSavesTrainedWeights(t *testing.T) {
	m, err := onnx.Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := p.Param("fc2.weight").Value.Data().([]float32)
	for i := range w {
		w[i] *= 1.5 // a stand-in for training
	}
	in := loadDense(t, "../testdata/models/cnn/test_data_set_0/input_0.pb", false)
	want, _ := p.Run(in)
	before := map[string]*byte{}
	for _, v := range m.Graph.Initializers {
		before[v.Name] = &v.Const.Raw()[0]
	}
	if err := p.WriteBack(); err != nil {
		t.Fatal(err)
	}
	// Only the changed weight gets new bytes; the others keep theirs,
	// uncopied.
	for _, v := range m.Graph.Initializers {
		if changed := &v.Const.Raw()[0] != before[v.Name]; changed != (v.Name == "fc2.weight") {
			t.Errorf("initializer %q: new bytes %v", v.Name, changed)
		}
	}
	path := filepath.Join(t.TempDir(), "trained.onnx")
	if err := onnx.Save(p.Model(), path); err != nil {
		t.Fatal(err)
	}
	m2, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Compile(m2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := p2.Run(in.Clone().(*tensor.Dense))
	if !slices.Equal(got[0].Data().([]float32), want[0].Data().([]float32)) {
		t.Error("the saved model computes something else than the program")
	}
}
