package onnx

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
)

// The rules of comparisons, logic, Where, Mod, Cast, Split, ScatterND,
// Resize and Upsample give the types of the ONNX backend tests' expected
// outputs, inputs after the first bound as constants (as the runtime takes
// Split's split and Resize's scales).
func TestInferShapesIndexOps(t *testing.T) {
	ops := map[string]bool{"Equal": true, "Less": true, "Greater": true, "LessOrEqual": true, "GreaterOrEqual": true,
		"And": true, "Or": true, "Xor": true, "Not": true, "Mod": true, "Where": true, "Cast": true, "CastLike": true,
		"Split": true, "ScatterND": true, "Resize": true, "Upsample": true}
	seen := map[string]int{}
	for _, path := range testenv.Backend.Glob(t, "node/test_*/model.onnx", 932) {
		m, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Graph.Nodes) != 1 || !ops[m.Graph.Nodes[0].OpType] {
			continue
		}
		n := m.Graph.Nodes[0]
		set := filepath.Join(filepath.Dir(path), "test_data_set_0")
		for i, v := range m.Graph.Inputs {
			x, err := LoadTensor(filepath.Join(set, fmt.Sprintf("input_%d.pb", i)))
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 {
				v.Const = x
			}
		}
		clearTypes(m.Graph)
		name := filepath.Base(filepath.Dir(path))
		if err := m.InferShapes(); err != nil {
			if strings.Contains(name, "zero_size") { // an empty split of an empty axis
				continue
			}
			t.Errorf("%s: %v", name, err)
			continue
		}
		for k, v := range n.Outputs {
			if strings.Contains(name, "to_BFLOAT16") {
				break // the test stores bfloat16 as uint16
			}
			want, err := LoadTensor(filepath.Join(set, fmt.Sprintf("output_%d.pb", k)))
			if err != nil {
				t.Fatal(err)
			}
			got, ok := v.Type.shape().Ints()
			if v.Type == nil || !ok || !slices.Equal(got, want.Dims) || v.Type.Elem != want.DType {
				t.Errorf("%s: output %d inferred %v, want %s%v", name, k, v.Type, want.DType, want.Dims)
			}
		}
		seen[n.OpType]++
	}
	for op := range ops {
		if seen[op] == 0 {
			t.Errorf("no backend test of %s was checked", op)
		}
	}
	t.Log(seen)
}
