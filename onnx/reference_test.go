package onnx_test

import (
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
)

// An edited model must still be a valid ONNX model that another runtime
// runs with the original outputs: rename the output, route it through a new
// Identity node, save, then check with onnx.checker and onnxruntime-node.
func TestEditedModelPassesCheckerAndRunsInORT(t *testing.T) {
	paths, _ := filepath.Glob("../testdata/models/*/model.onnx")
	if len(paths) < 7 {
		t.Fatalf("%d models in testdata/models, want 7", len(paths))
	}
	for _, path := range paths {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) { checkEditedModel(t, path) })
	}
	t.Run("big", func(t *testing.T) {
		for _, path := range testenv.Big.Glob(t, "resnet18_*/model.onnx", 4) {
			t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) { checkEditedModel(t, path) })
		}
	})
}

func checkEditedModel(t *testing.T, path string) {
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	out := g.Outputs[0]
	out.Name = "logits"
	id := g.AddNode("Identity", "graft_identity", []*onnx.Value{out}, []string{"scores"})
	id.Outputs[0].Type = out.Type
	g.Outputs[0] = id.Outputs[0]
	if err := g.TopoSort(); err != nil {
		t.Fatal(err)
	}
	g.Cleanup()
	edited := filepath.Join(t.TempDir(), "edited.onnx")
	if err := onnx.Save(m, edited); err != nil {
		t.Fatal(err)
	}
	onnxtest.CheckModel(t, edited)
	dataset := filepath.Join(filepath.Dir(path), "test_data_set_0")
	got := onnxtest.RunORT(t, edited, filepath.Join(dataset, "input_0.pb"))
	want, err := onnx.LoadTensor(filepath.Join(dataset, "output_0.pb"))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Name != "scores" {
		t.Errorf("ORT output is named %q, want the edited name %q", got[0].Name, "scores")
	}
	d, err := onnxtest.MaxAbsDiff(got[0], want)
	if err != nil || d > 1e-4 {
		t.Errorf("ORT output of the edited model differs from PyTorch's by %g (%v)", d, err)
	}
}
