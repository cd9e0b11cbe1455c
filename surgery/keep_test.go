package surgery

import (
	"os"
	"testing"

	"github.com/graft-dev/graft/onnx/onnxtest"
)

// Surgery keeps the doc strings, metadata and unknown fields of every part
// of the model it does not replace (testdata/roundtrip/mlp.onnx marks each
// with its path).
func TestEditsKeepUntouchedParts(t *testing.T) {
	const path = "../testdata/roundtrip/mlp.onnx"
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := ParseInit("xavier")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		edit   Edit
		edited []string // the parts an edit replaces
	}{
		{"freeze", Freeze(Backbone()), nil},
		{"initialize", Initialize(rules, All(), 1), nil},
		// The head's node and parameters are new, and its output's size.
		{"replace head", ReplaceHead(5, HeadOptions{Seed: 1}), []string{"model.graph.node[3]",
			"model.graph.initializer[2]", "model.graph.initializer[3]", "model.graph.output[0].type.tensor_type.shape.dim[1]"}},
		{"normalize", Normalize("input", []float32{0.5}, []float32{0.25}), nil},
		// Cut drops the head and its output; From drops Flatten and the input.
		{"cut", Cut("/relu/Relu_output_0"), []string{"model.graph.node[3]",
			"model.graph.initializer[2]", "model.graph.initializer[3]", "model.graph.output[0]"}},
		{"from", From("/Flatten_output_0"), []string{"model.graph.node[0]", "model.graph.input[0]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := load(t, path)
			if err := Apply(m, c.edit); err != nil {
				t.Fatal(err)
			}
			onnxtest.KeepsMarks(t, before, encode(t, m), c.edited...)
		})
	}
}
