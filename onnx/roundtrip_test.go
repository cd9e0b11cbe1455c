package onnx

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// testModels lists the model files round-tripped: the project's committed
// models, the full-size ones when generated, and the ONNX backend test data.
func testModels(t testing.TB) []string {
	var paths []string
	for _, pat := range []string{
		"../testdata/models/*/model.onnx",
		"../testdata/big/resnet18_*/model.onnx",
		onnxTestData + "/node/*/model.onnx",
		onnxTestData + "/pytorch-converted/*/model.onnx",
		onnxTestData + "/pytorch-operator/*/model.onnx",
		onnxTestData + "/simple/*/model.onnx",
	} {
		m, _ := filepath.Glob(pat)
		paths = append(paths, m...)
	}
	if len(paths) == 0 {
		t.Fatal("no test models found: run testdata/gen/export_models.py --small")
	}
	return paths
}

const onnxTestData = "/usr/share/libonnx-testdata/data"

func TestRoundTripIsByteIdentical(t *testing.T) {
	n := 0
	for _, path := range testModels(t) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeOptions{Dir: filepath.Dir(path)}.Decode(b)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		out, err := Encode(m)
		if err != nil {
			t.Errorf("%s: encode: %v", path, err)
			continue
		}
		if !bytes.Equal(b, out) {
			t.Errorf("%s: re-encoded model differs (%d bytes in, %d out)", path, len(b), len(out))
		}
		n++
	}
	t.Logf("%d models round-tripped", n)
}
