package onnx_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
)

// roundTripModel loads a model of testdata/roundtrip and returns it with
// its file's bytes.
func roundTripModel(t *testing.T, name string) (*onnx.Model, []byte) {
	t.Helper()
	path := filepath.Join("../testdata/roundtrip", name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m, b
}

func encode(t *testing.T, m *onnx.Model) []byte {
	t.Helper()
	b, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A clone encodes to the original's bytes: doc strings, metadata and
// unknown fields included.
func TestCloneKeepsEverything(t *testing.T) {
	for _, name := range []string{"everything.onnx", "mlp.onnx", "mlp_external.onnx"} {
		m, b := roundTripModel(t, name)
		c, err := m.Clone()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(encode(t, c), b) {
			t.Errorf("%s: the clone encodes differently from the file", name)
		}
	}
}

// Graph edits keep the doc strings, metadata and unknown fields of the
// parts they do not replace.
func TestGraphEditsKeepUntouchedParts(t *testing.T) {
	m, b := roundTripModel(t, "mlp.onnx")
	if err := m.InferShapes(); err != nil {
		t.Fatal(err)
	}
	onnxtest.KeepsMarks(t, b, encode(t, m))

	// Route the output through a new node: the output listing is replaced.
	g := m.Graph
	out := g.Outputs[0]
	id := g.AddNode("Identity", "graft_identity", []*onnx.Value{out}, []string{"scores"})
	id.Outputs[0].Type = out.Type
	g.Outputs[0] = id.Outputs[0]
	out.Name = "logits"
	if err := g.TopoSort(); err != nil {
		t.Fatal(err)
	}
	g.Cleanup()
	onnxtest.KeepsMarks(t, b, encode(t, m), "model.graph.output[0]")
}

// The models of testdata/roundtrip, edited and saved, still pass
// onnx.checker: what graft keeps of them is valid ONNX.
func TestEditedRoundTripModelsPassChecker(t *testing.T) {
	for _, name := range []string{"everything.onnx", "mlp.onnx"} {
		m, _ := roundTripModel(t, name)
		m.ProducerName = "graft"
		m.Graph.Nodes[0].Name += "_edited"
		path := filepath.Join(t.TempDir(), name)
		if err := onnx.Save(m, path); err != nil {
			t.Fatal(err)
		}
		onnxtest.CheckModel(t, path)
	}
}
