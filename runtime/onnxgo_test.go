package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/onnx"
	onnxgo "github.com/owulveryck/onnx-go"
	"github.com/owulveryck/onnx-go/backend/x/gorgonnx"
	"gorgonia.org/tensor"
)

// onnx-go's gorgonnx backend is an independent Go implementation of ONNX
// inference. On the models it supports (no AveragePool, no GridSample, no
// opset-13 Flatten quirks), graft's outputs must equal its outputs.
func TestMatchesOnnxGo(t *testing.T) {
	paths := []string{"../testdata/models/cnn/model.onnx"}
	if big, _ := filepath.Glob("../testdata/big/resnet18_op13_folded/model.onnx"); len(big) > 0 {
		paths = append(paths, big...)
	}
	for _, path := range paths {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
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
		})
	}
}
