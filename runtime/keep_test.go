package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
)

// Writing trained weights back keeps each tensor's doc string, metadata,
// unknown fields and storage (inside the file or in its data file), as
// testdata/roundtrip's models mark them.
func TestWriteBackKeepsTensorFields(t *testing.T) {
	for _, name := range []string{"mlp.onnx", "mlp_external.onnx"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("../testdata/roundtrip", name)
			before, err := os.ReadFile(path)
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
			w := p.Param("fc1.weight").Value.Data().([]float32)
			w[0] += 1 // a stand-in for training
			if err := p.WriteBack(); err != nil {
				t.Fatal(err)
			}
			saved := filepath.Join(t.TempDir(), name)
			if err := onnx.Save(m, saved); err != nil {
				t.Fatal(err)
			}
			after, err := os.ReadFile(saved)
			if err != nil {
				t.Fatal(err)
			}
			onnxtest.KeepsMarks(t, before, after)
			m2, err := onnx.Load(saved)
			if err != nil {
				t.Fatal(err)
			}
			c := m2.Graph.Initializers[0].Const
			if got, _ := c.Float32s(); got[0] != w[0] {
				t.Errorf("saved fc1.weight[0] = %g, want the trained %g", got[0], w[0])
			}
			if ext := c.External(); (ext != nil) != (name == "mlp_external.onnx") {
				t.Errorf("fc1.weight's external data after the write back: %+v", ext)
			}
		})
	}
}
