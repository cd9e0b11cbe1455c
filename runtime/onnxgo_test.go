package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	onnxgo "github.com/owulveryck/onnx-go"
	"github.com/owulveryck/onnx-go/backend/x/gorgonnx"
	"gorgonia.org/tensor"
)

// onnx-go's gorgonnx backend is an independent Go implementation of ONNX
// inference. On the models it supports (no AveragePool, no GridSample, no
// opset-13 Flatten quirks), graft's outputs must equal its outputs.
func TestMatchesOnnxGo(t *testing.T) {
	t.Run("cnn", func(t *testing.T) { checkOnnxGo(t, "../testdata/models/cnn/model.onnx") })
	t.Run("resnet18_op13_folded", func(t *testing.T) {
		const dir = "resnet18_op13_folded"
		testenv.Big.Files(t, dir+"/model.onnx", dir+"/test_data_set_0/input_0.pb")
		checkOnnxGo(t, testenv.Big.Path(dir, "model.onnx"))
	})
}

func checkOnnxGo(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in := loadDense(t, filepath.Join(filepath.Dir(path), "test_data_set_0/input_0.pb"), false)

	backend := gorgonnx.NewGraph()
	ref := onnxgo.NewModel(backend)
	if err := ref.UnmarshalBinary(raw); err != nil {
		t.Fatalf("onnx-go cannot load %s: %v", path, err)
	}
	if err := ref.SetInput(0, in.Clone().(*tensor.Dense)); err != nil {
		t.Fatal(err)
	}
	if err := backend.Run(); err != nil {
		t.Fatalf("onnx-go run: %v", err)
	}
	refOut, err := ref.GetOutputTensors()
	if err != nil {
		t.Fatal(err)
	}

	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	want := refOut[0].(*tensor.Dense)
	if d := maxAbsDiff(float64sOf(out[0]), float64sOf(want)); d > 1e-5 {
		t.Errorf("max |graft - onnx-go| = %g, want <= 1e-5", d)
	} else {
		t.Logf("max |graft - onnx-go| = %.2g", d)
	}
}
