package onnx

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx/internal/pb"
	"google.golang.org/protobuf/encoding/protowire"
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

// keepCases change tinyProto (Y = X + W) in ways graft's IR does not hold
// or reads loosely; decode and encode must keep each (also FuzzDecode seeds).
func keepCases() []keepCase {
	attr := func(p *pb.ModelProto) *pb.AttributeProto {
		a := &pb.AttributeProto{Name: proto.String("a")}
		p.Graph.Node[0].Attribute = append(p.Graph.Node[0].Attribute, a)
		return a
	}
	typ := pb.AttributeProto_INT.Enum
	dim := func(p *pb.ModelProto) *pb.TensorShapeProto_Dimension {
		return p.Graph.Input[0].Type.TensorType.Shape.Dim[0]
	}
	w := func(p *pb.ModelProto) *pb.TensorProto { return p.Graph.Initializer[0] }
	intTensor := func(p *pb.ModelProto, dt DType, data func(*pb.TensorProto)) {
		tp := &pb.TensorProto{Name: proto.String("c"), DataType: proto.Int32(int32(dt)), Dims: []int64{2}}
		data(tp)
		p.Graph.Initializer = append(p.Graph.Initializer, tp)
	}
	return []keepCase{
		{"attribute without type (IR version 1)", func(p *pb.ModelProto) { attr(p).F = proto.Float32(2) }},
		{"attribute of type UNDEFINED with a value", func(p *pb.ModelProto) {
			a := attr(p)
			a.Type, a.I = pb.AttributeProto_UNDEFINED.Enum(), proto.Int64(3)
		}},
		{"attribute without its value (proto3 writers leave out 0)", func(p *pb.ModelProto) { attr(p).Type = typ() }},
		{"attribute with values of other types", func(p *pb.ModelProto) {
			a := attr(p)
			a.Type, a.I, a.F, a.S, a.Floats, a.Strings = typ(), proto.Int64(1), proto.Float32(0), []byte{}, []float32{1}, [][]byte{[]byte("s")}
			a.T = pbFloats("t", []int64{1}, 5)
		}},
		{"dim_value -1", func(p *pb.ModelProto) { dim(p).DimValue = proto.Int64(-1) }},
		{"empty dim_param", func(p *pb.ModelProto) { dim(p).DimValue, dim(p).DimParam = nil, proto.String("") }},
		{"dim_value and dim_param", func(p *pb.ModelProto) { dim(p).DimParam = proto.String("n") }},
		{"type with tensor and sequence", func(p *pb.ModelProto) {
			p.Graph.Input[0].Type.SequenceType = &pb.TypeProto_Sequence{}
		}},
		{"uint8 int32_data out of range", func(p *pb.ModelProto) {
			intTensor(p, Uint8, func(tp *pb.TensorProto) { tp.Int32Data = []int32{300, -1} })
		}},
		{"uint32 uint64_data out of range", func(p *pb.ModelProto) {
			intTensor(p, Uint32, func(tp *pb.TensorProto) { tp.Uint64Data = []uint64{1 << 40, 1} })
		}},
		{"float tensor with int64_data", func(p *pb.ModelProto) { w(p).Int64Data = []int64{1} }},
		{"raw_data and float_data", func(p *pb.ModelProto) { w(p).FloatData = []float32{3, 4} }},
		{"float_data and raw_data of another tensor", func(p *pb.ModelProto) {
			intTensor(p, Float, func(tp *pb.TensorProto) { tp.FloatData, tp.DoubleData = []float32{1, 2}, []float64{3} })
		}},
		{"output also in value_info, other doc string, no type", func(p *pb.ModelProto) {
			p.Graph.Output[0].DocString = proto.String("as output")
			p.Graph.ValueInfo = append(p.Graph.ValueInfo, &pb.ValueInfoProto{Name: proto.String("Y"), DocString: proto.String("as value")})
		}},
		{"value listed twice in value_info", func(p *pb.ModelProto) {
			vi := pbValue("X", int32(Float), 2)
			vi.Type.Denotation = proto.String("TENSOR")
			p.Graph.ValueInfo = append(p.Graph.ValueInfo, vi, &pb.ValueInfoProto{Name: proto.String("X")})
		}},
		{"initializer listed as input without type", func(p *pb.ModelProto) {
			p.Graph.Input = append(p.Graph.Input, &pb.ValueInfoProto{Name: proto.String("W")})
		}},
		{"metadata with repeated keys", func(p *pb.ModelProto) {
			for _, k := range []string{"k", "k", "j"} {
				e := &pb.StringStringEntryProto{Key: proto.String(k)}
				e.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9001, protowire.VarintType), 7))
				p.MetadataProps = append(p.MetadataProps, e)
			}
		}},
	}
}

type keepCase struct {
	name string
	edit func(*pb.ModelProto)
}

// A model keeps, through decode and encode, what graft's IR does not hold
// or reads loosely.
func TestRoundTripKeepsWhatTheIRIgnores(t *testing.T) {
	for _, c := range keepCases() {
		t.Run(c.name, func(t *testing.T) {
			p := tinyProto()
			c.edit(p)
			b := marshal(t, p)
			m, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, b) {
				t.Errorf("re-encoded differently: %s", preserved(b, out))
			}
		})
	}
}

// Edits are written as edited: what was kept for an unedited part does not
// come back once that part changes.
func TestRoundTripWritesEdits(t *testing.T) {
	p := tinyProto()
	a := &pb.AttributeProto{Name: proto.String("a"), Type: pb.AttributeProto_INT.Enum(), I: proto.Int64(1), F: proto.Float32(9)}
	p.Graph.Node[0].Attribute = []*pb.AttributeProto{a}
	p.Graph.Input[0].Type.TensorType.Shape.Dim[0].DimValue = proto.Int64(-1)
	p.Graph.Initializer = append(p.Graph.Initializer, &pb.TensorProto{Name: proto.String("c"),
		DataType: proto.Int32(int32(Uint8)), Dims: []int64{2}, Int32Data: []int32{300, 1}, FloatData: []float32{5}})
	p.Graph.ValueInfo = []*pb.ValueInfoProto{{Name: proto.String("Y"), DocString: proto.String("value")}}
	p.Graph.Output[0].DocString = proto.String("output")
	m, err := Decode(marshal(t, p))
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	at := g.Nodes[0].Attrs[0]
	at.Type, at.Float = AttrFloat, 2
	g.Inputs[0].Type.Shape[0] = Fixed(2)
	c := g.Initializers[1].Const
	if err := c.SetRaw([]byte{7, 8}); err != nil {
		t.Fatal(err)
	}
	g.Outputs[0].DocString = "edited"
	q := &pb.ModelProto{}
	if err := proto.Unmarshal(marshalModel(t, m), q); err != nil {
		t.Fatal(err)
	}
	qa := q.Graph.Node[0].Attribute[0]
	if qa.GetType() != pb.AttributeProto_FLOAT || qa.GetF() != 2 || qa.I != nil {
		t.Errorf("attribute changed to a float: type %v, f %v, i %v; want FLOAT, 2 and no i", qa.GetType(), qa.GetF(), qa.I)
	}
	if d := q.Graph.Input[0].Type.TensorType.Shape.Dim[0]; d.GetDimValue() != 2 {
		t.Errorf("dimension set to 2 is written as %v", d)
	}
	if qc := q.Graph.Initializer[1]; !slices.Equal(qc.Int32Data, []int32{7, 8}) || !slices.Equal(qc.FloatData, []float32{5}) {
		t.Errorf("uint8 tensor set to [7 8]: int32_data %v, float_data %v; want [7 8], [5] (ignored by graft, kept)", qc.Int32Data, qc.FloatData)
	}
	if o, v := q.Graph.Output[0].GetDocString(), q.Graph.ValueInfo[0].GetDocString(); o != "edited" || v != "edited" {
		t.Errorf("doc strings of the edited value: %q as output, %q in value_info; want both edited", o, v)
	}
}

func marshalModel(t testing.TB, m *Model) []byte {
	t.Helper()
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// External data entries keep their form ("0004" for 4), extra keys and
// unknown fields; an entry Save must rewrite (a tensor moved to a free
// range) keeps its unknown fields.
func TestExternalEntriesKeepWhatTheyHold(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "w.bin"), append([]byte("pad!"), wData...))
	unknown := protowire.AppendString(protowire.AppendTag(nil, 9001, protowire.BytesType), "kept")
	p := extProto("location", "w.bin", "offset", "0004", "length", "8", "checksum", "none")
	for _, e := range p.Graph.Initializer[0].ExternalData {
		e.ProtoReflect().SetUnknown(unknown)
	}
	// V claims the same bytes as W, so Save moves it.
	v := proto.Clone(p.Graph.Initializer[0]).(*pb.TensorProto)
	v.Name = proto.String("V")
	p.Graph.Initializer = append(p.Graph.Initializer, v)
	b := marshal(t, p)
	m, err := DecodeOptions{Dir: dir}.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if out := marshalModel(t, m); !bytes.Equal(out, b) {
		t.Errorf("re-encoded differently: %s", preserved(b, out))
	}
	saved := filepath.Join(t.TempDir(), "model.onnx")
	if err := Save(m, saved); err != nil {
		t.Fatal(err)
	}
	q := &pb.ModelProto{}
	if err := proto.Unmarshal(readFile(t, saved), q); err != nil {
		t.Fatal(err)
	}
	for _, tp := range q.Graph.Initializer {
		for _, e := range tp.ExternalData {
			if !bytes.Equal(e.ProtoReflect().GetUnknown(), unknown) {
				t.Errorf("%s: external data entry %s=%s lost its unknown fields", tp.GetName(), e.GetKey(), e.GetValue())
			}
		}
	}
	if off := q.Graph.Initializer[1].ExternalData[1].GetValue(); off == "0004" || off == "4" {
		t.Errorf("V was not moved (offset %s): the test no longer rewrites an entry", off)
	}

	// Without offset and length (0 and the shape's size), none is added.
	writeFile(t, filepath.Join(dir, "w0.bin"), wData)
	b = marshal(t, extProto("location", "w0.bin"))
	if m, err = (DecodeOptions{Dir: dir}).Decode(b); err != nil {
		t.Fatal(err)
	}
	if out := marshalModel(t, m); !bytes.Equal(out, b) {
		t.Errorf("location only: re-encoded differently: %s", preserved(b, out))
	}
}
