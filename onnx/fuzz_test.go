package onnx

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx/internal/pb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// fuzzNodeTests are small ONNX backend test models used as fuzz seeds: plain
// ops, constants, subgraphs (If, Loop, Scan), sequences, optionals, strings.
var fuzzNodeTests = []string{
	"test_add", "test_constant", "test_if", "test_if_seq", "test_loop11",
	"test_scan9_sum", "test_cast_FLOAT_to_STRING", "test_optional_get_element",
	"test_constantofshape_int_shape_zero", "test_split_zero_size_splits",
	"test_range_float_type_positive_delta_expanded", "test_reshape_negative_dim",
}

// nodeTestFiles names a file of each of fuzzNodeTests in the backend data.
func nodeTestFiles(file string) []string {
	var out []string
	for _, name := range fuzzNodeTests {
		out = append(out, filepath.Join("node", name, file))
	}
	return out
}

func FuzzDecode(f *testing.F) {
	paths := committedModels(f)
	paths = append(paths, testenv.Backend.FilesPart(f, nodeTestFiles("model.onnx")...)...)
	for _, path := range paths {
		b := readFile(f, path)
		f.Add(b)
		if len(b) < 4096 {
			f.Add(b[:len(b)/2])
			f.Add(b[:len(b)-1])
		}
	}
	cnn := readFile(f, "../testdata/models/cnn/model.onnx")
	for _, n := range []int{2, 19, len(cnn) / 10, len(cnn) - 4} {
		f.Add(cnn[:n])
	}
	f.Add(marshal(f, tinyProto()))
	for _, c := range keepCases() {
		p := tinyProto()
		c.edit(p)
		f.Add(marshal(f, p))
	}
	f.Add([]byte{})
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(checkDecode)
}

// checkDecode decodes b; if that succeeds the model must encode, decode
// again, re-encode to the same bytes and survive the graph operations.
func checkDecode(t *testing.T, b []byte) {
	m, err := Decode(b)
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
		return
	}
	enc, err := Encode(m)
	if err != nil {
		t.Fatalf("Encode of a decoded model: %v", err)
	}
	m2, err := Decode(enc)
	if err != nil {
		t.Fatalf("Decode of an encoded model: %v", err)
	}
	enc2, err := Encode(m2)
	if err != nil {
		t.Fatalf("second Encode: %v", err)
	}
	if !bytes.Equal(enc, enc2) {
		t.Fatalf("Encode is not idempotent: %d bytes, then %d", len(enc), len(enc2))
	}
	if diff := preserved(b, enc); diff != "" {
		t.Fatalf("decode-encode lost or changed part of the input: %s", diff)
	}
	// A valid model has no cycle, and cleaning it up keeps it valid.
	g := m2.Graph
	if err := g.TopoSort(); err != nil {
		t.Fatalf("TopoSort of a valid model: %v", err)
	}
	g.Cleanup()
	if err := m2.Validate(); err != nil {
		t.Fatalf("Cleanup made the model invalid: %v", err)
	}
	enc3, err := Encode(m2)
	if err != nil {
		t.Fatalf("Encode after Cleanup: %v", err)
	}
	if _, err := Decode(enc3); err != nil {
		t.Fatalf("Decode after Cleanup: %v", err)
	}
}

func FuzzDecodeTensor(f *testing.F) {
	paths, _ := filepath.Glob("../testdata/models/*/test_data_set_0/*.pb")
	paths = append(paths, testenv.Backend.FilesPart(f, nodeTestFiles("test_data_set_0/output_0.pb")...)...)
	for _, path := range paths {
		if b, err := os.ReadFile(path); err == nil && len(b) < 1<<16 {
			f.Add(b)
		}
	}
	for _, c := range typedCases() {
		f.Add(marshal(f, c.typed))
	}
	f.Add(marshal(f, pbFloats("w", []int64{2, 1}, 1, 2)))
	f.Add(marshal(f, extProto("location", "w.bin").Graph.Initializer[0]))
	f.Fuzz(checkDecodeTensor)
}

func checkDecodeTensor(t *testing.T, b []byte) {
	x, err := DecodeTensor(b)
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
		return
	}
	// The accessors either work or fail; they do not panic.
	x.Int64s()
	x.Float64s()
	x.Float32s()
	x.Strings()
	if n := x.NumElements(); n < 0 {
		t.Fatalf("NumElements = %d", n)
	}
	x.Bytes()
	out, err := EncodeTensor(x)
	if err != nil {
		t.Fatalf("EncodeTensor of a decoded tensor: %v", err)
	}
	if diff := preservedAs(b, out, func() proto.Message { return &pb.TensorProto{} }); diff != "" {
		t.Fatalf("decode-encode lost or changed part of the input: %s", diff)
	}
	y, err := DecodeTensor(out)
	if err != nil {
		t.Fatalf("DecodeTensor of an encoded tensor: %v", err)
	}
	out2, err := EncodeTensor(y)
	if err != nil {
		t.Fatalf("second EncodeTensor: %v", err)
	}
	if !bytes.Equal(out, out2) {
		t.Fatalf("EncodeTensor is not idempotent:\n% x\n% x", out, out2)
	}
}

// preserved compares the model in out with the model in in, both parsed by
// protobuf-go: "" when every field, doc string and unknown field of in
// is in out with the same value, otherwise the first difference.
func preserved(in, out []byte) string {
	return preservedAs(in, out, func() proto.Message { return &pb.ModelProto{} })
}

// preservedAs is preserved for messages made by newMsg.
func preservedAs(in, out []byte, newMsg func() proto.Message) string {
	a, b := newMsg(), newMsg()
	if err := proto.Unmarshal(in, a); err != nil {
		return "input: " + err.Error()
	}
	if err := proto.Unmarshal(out, b); err != nil {
		return "output: " + err.Error()
	}
	if proto.Equal(a, b) {
		return ""
	}
	if d := firstDiff(a.ProtoReflect(), b.ProtoReflect(), string(a.ProtoReflect().Descriptor().Name())); d != "" {
		return d
	}
	return "the messages differ"
}

// firstDiff names the first field where two messages differ, or returns "".
func firstDiff(a, b protoreflect.Message, path string) string {
	if !bytes.Equal(a.GetUnknown(), b.GetUnknown()) {
		return fmt.Sprintf("%s: unknown fields % x, then % x", path, a.GetUnknown(), b.GetUnknown())
	}
	fields := a.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		p := path + "." + string(f.Name())
		if a.Has(f) != b.Has(f) {
			return fmt.Sprintf("%s: present %v, then %v", p, a.Has(f), b.Has(f))
		}
		va, vb := a.Get(f), b.Get(f)
		switch {
		case f.IsList():
			la, lb := va.List(), vb.List()
			if la.Len() != lb.Len() {
				return fmt.Sprintf("%s: %d elements, then %d", p, la.Len(), lb.Len())
			}
			for j := 0; j < la.Len(); j++ {
				pj := fmt.Sprintf("%s[%d]", p, j)
				if f.Message() != nil {
					if d := firstDiff(la.Get(j).Message(), lb.Get(j).Message(), pj); d != "" {
						return d
					}
				} else if !la.Get(j).Equal(lb.Get(j)) {
					return fmt.Sprintf("%s: %v, then %v", pj, la.Get(j), lb.Get(j))
				}
			}
		case f.Message() != nil:
			if a.Has(f) {
				if d := firstDiff(va.Message(), vb.Message(), p); d != "" {
					return d
				}
			}
		case !va.Equal(vb):
			return fmt.Sprintf("%s: %v, then %v", p, va, vb)
		}
	}
	return ""
}
