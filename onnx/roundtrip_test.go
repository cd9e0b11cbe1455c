package onnx

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx/internal/pb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// committedModels lists the project's committed models: the exported ones
// and those of testdata/roundtrip, whose every message carries a doc
// string, metadata and unknown fields.
func committedModels(t testing.TB) []string {
	var paths []string
	for _, pat := range []string{"../testdata/models/*/model.onnx", "../testdata/roundtrip/*.onnx"} {
		m, _ := filepath.Glob(pat)
		paths = append(paths, m...)
	}
	if len(paths) < 10 {
		t.Fatalf("%d committed models, want 10 (testdata/models and testdata/roundtrip)", len(paths))
	}
	return paths
}

// backendSuites are the ONNX backend test suites, with the number of models
// each has in Debian's libonnx-testdata (ONNX 1.12).
var backendSuites = []struct {
	name   string
	models int
}{{"node", 932}, {"pytorch-converted", 82}, {"pytorch-operator", 35}, {"simple", 23}}

// Every model re-encodes to the bytes it was read from: the committed ones,
// the full-size ones and the 1,072 ONNX backend-test models (1,083 in all).
func TestRoundTripIsByteIdentical(t *testing.T) {
	t.Run("committed", func(t *testing.T) { roundTrip(t, committedModels(t)) })
	t.Run("big", func(t *testing.T) { roundTrip(t, testenv.Big.Glob(t, "resnet18_*/model.onnx", 4)) })
	for _, s := range backendSuites {
		t.Run(s.name, func(t *testing.T) {
			roundTrip(t, testenv.Backend.Glob(t, filepath.Join(s.name, "*", "model.onnx"), s.models))
		})
	}
}

func roundTrip(t *testing.T, paths []string) {
	for _, path := range paths {
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
			t.Errorf("%s: re-encoded model differs (%d bytes in, %d out): %s", path, len(b), len(out), preserved(b, out))
		}
	}
	t.Logf("%d models round-tripped", len(paths))
}

// The models of testdata/roundtrip make the round trip above check every
// kind of message: each occurs, and each has unknown fields, a doc string
// and metadata wherever the schema has those fields.
func TestRoundTripModelsCarryEverything(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	paths, _ := filepath.Glob("../testdata/roundtrip/*.onnx")
	if len(paths) != 3 {
		t.Fatalf("%d models in testdata/roundtrip, want 3 (testdata/gen/roundtrip_models.py)", len(paths))
	}
	for _, path := range paths {
		p := &pb.ModelProto{}
		if err := proto.Unmarshal(readFile(t, path), p); err != nil {
			t.Fatal(err)
		}
		walkMessages(p.ProtoReflect(), "model", func(m protoreflect.Message, where string) {
			seen[m.Descriptor().FullName()] = true
			if len(m.GetUnknown()) == 0 {
				t.Errorf("%s: %s has no unknown fields", path, where)
			}
			fields := m.Descriptor().Fields()
			if f := fields.ByName("doc_string"); f != nil && m.Get(f).String() == "" {
				t.Errorf("%s: %s has no doc string", path, where)
			}
			if f := fields.ByName("metadata_props"); f != nil && m.Get(f).List().Len() == 0 {
				t.Errorf("%s: %s has no metadata", path, where)
			}
		})
	}
	for _, name := range schemaMessages() {
		if !seen[name] {
			t.Errorf("no test model has a %s", name)
		}
	}
}

// schemaMessages lists every message type a model can hold.
func schemaMessages() []protoreflect.FullName {
	var out []protoreflect.FullName
	seen := map[protoreflect.FullName]bool{}
	var visit func(d protoreflect.MessageDescriptor)
	visit = func(d protoreflect.MessageDescriptor) {
		if seen[d.FullName()] {
			return
		}
		seen[d.FullName()] = true
		out = append(out, d.FullName())
		for i := range d.Fields().Len() {
			if md := d.Fields().Get(i).Message(); md != nil {
				visit(md)
			}
		}
	}
	visit((&pb.ModelProto{}).ProtoReflect().Descriptor())
	return out
}

// walkMessages calls f on m and every message inside it.
func walkMessages(m protoreflect.Message, where string, f func(protoreflect.Message, string)) {
	f(m, where)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		name := where + "." + string(fd.Name())
		if fd.IsList() {
			for i := range v.List().Len() {
				walkMessages(v.List().Get(i).Message(), name+"["+itoa(int64(i))+"]", f)
			}
		} else {
			walkMessages(v.Message(), name, f)
		}
		return true
	})
}
