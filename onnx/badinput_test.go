package onnx

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx/internal/pb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Helpers to build models as protobuf messages, so tests can write what the
// IR refuses to hold.

func pbValue(name string, elem int32, dims ...int64) *pb.ValueInfoProto {
	shape := &pb.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &pb.TensorShapeProto_Dimension{DimValue: proto.Int64(d)})
	}
	return &pb.ValueInfoProto{
		Name: proto.String(name),
		Type: &pb.TypeProto{TensorType: &pb.TypeProto_Tensor{
			ElemType: proto.Int32(elem), Shape: shape}},
	}
}

func pbNode(name, op string, in, out []string) *pb.NodeProto {
	return &pb.NodeProto{Name: proto.String(name), OpType: proto.String(op), Input: in, Output: out}
}

func pbFloats(name string, dims []int64, vals ...float32) *pb.TensorProto {
	raw := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &pb.TensorProto{Name: proto.String(name), Dims: dims,
		DataType: proto.Int32(int32(Float)), RawData: raw}
}

// tinyProto is a valid model: Y = X + W, with W an initializer.
func tinyProto() *pb.ModelProto {
	return &pb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*pb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph: &pb.GraphProto{
			Name:        proto.String("tiny"),
			Node:        []*pb.NodeProto{pbNode("add", "Add", []string{"X", "W"}, []string{"Y"})},
			Initializer: []*pb.TensorProto{pbFloats("W", []int64{2}, 1, 2)},
			Input:       []*pb.ValueInfoProto{pbValue("X", int32(Float), 2)},
			Output:      []*pb.ValueInfoProto{pbValue("Y", int32(Float), 2)},
		},
	}
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantErr fails unless err is a one-line error mentioning every part.
func wantErr(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", parts)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not mention %q", msg, p)
		}
	}
}

// decodeNoPanic decodes b, turning a panic into a test failure.
func decodeNoPanic(t testing.TB, b []byte) (m *Model, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Decode panicked on %d bytes: %v", len(b), r)
		}
	}()
	return Decode(b)
}

func TestTinyProtoIsValid(t *testing.T) {
	// The base that the tests below break must itself be accepted.
	if _, err := Decode(marshal(t, tinyProto())); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, b := range [][]byte{nil, {}} {
		_, err := decodeNoPanic(t, b)
		wantErr(t, err, "empty")
		if !errors.Is(err, ErrNotONNX) {
			t.Errorf("errors.Is(%v, ErrNotONNX) = false", err)
		}
	}
	path := filepath.Join(t.TempDir(), "empty.onnx")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	wantErr(t, err, path, "empty")
	if !errors.Is(err, ErrNotONNX) {
		t.Errorf("errors.Is(%v, ErrNotONNX) = false", err)
	}
}

func TestMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.onnx")
	_, err := Load(path)
	wantErr(t, err, path)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("errors.Is(%v, os.ErrNotExist) = false", err)
	}
}

// topLevelEnds returns the offsets at which each top-level field of a
// protobuf message ends: cutting there leaves a well-formed message.
func topLevelEnds(t *testing.T, b []byte) []int {
	var ends []int
	for i := 0; i < len(b); {
		_, typ, n := protowire.ConsumeTag(b[i:])
		if n < 0 {
			t.Fatalf("bad tag at %d", i)
		}
		m := protowire.ConsumeFieldValue(0, typ, b[i+n:])
		if m < 0 {
			t.Fatalf("bad field at %d", i)
		}
		i += n + m
		ends = append(ends, i)
	}
	return ends
}

func TestTruncatedModel(t *testing.T) {
	b, err := os.ReadFile("../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	cuts := []int{1, 2, 3, 10, len(b) / 10, len(b) / 4, len(b) / 2, len(b) * 3 / 4, len(b) * 99 / 100, len(b) - 5, len(b) - 1}
	// Cuts between the file's top-level fields give well-formed protobuf
	// that lacks the graph or the opset imports: the decoder must notice.
	ends := topLevelEnds(t, b)
	if len(ends) < 3 {
		t.Fatalf("cnn model has only %d top-level fields", len(ends))
	}
	cuts = append(cuts, ends[:len(ends)-1]...)
	for _, n := range cuts {
		m, err := decodeNoPanic(t, b[:n])
		if err == nil {
			t.Errorf("cut at %d of %d bytes: decoded a model with %d nodes", n, len(b), len(m.Graph.Nodes))
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("cut at %d: error is not one line: %q", n, err)
		}
		var verr *ValidationError
		if !errors.Is(err, ErrNotONNX) && !errors.As(err, &verr) {
			t.Errorf("cut at %d: %v: neither ErrNotONNX nor a validation error", n, err)
		}
	}
	// Cut right after the graph, the opset import is missing.
	_, err = Decode(b[:ends[len(ends)-2]])
	wantErr(t, err, "imports no opset")

	// A model file cut inside the graph is reported as truncated, naming the file.
	path := filepath.Join(t.TempDir(), "cut.onnx")
	if err := os.WriteFile(path, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	wantErr(t, err, path, "truncated")
	if !errors.Is(err, ErrNotONNX) {
		t.Errorf("errors.Is(%v, ErrNotONNX) = false", err)
	}
}

func TestNoOutputs(t *testing.T) {
	p := tinyProto()
	p.Graph.Output = nil
	_, err := Decode(marshal(t, p))
	wantErr(t, err, `graph "tiny"`, "no outputs")
}

func TestRandomBytes(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 42))
		for _, size := range []int{1, 2, 7, 64, 1000, 100000} {
			b := make([]byte, size)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			_, err := decodeNoPanic(t, b)
			if err == nil {
				t.Errorf("seed %d, %d random bytes: decoded", seed, size)
				continue
			}
			if !errors.Is(err, ErrNotONNX) {
				t.Errorf("seed %d, %d random bytes: %v: not ErrNotONNX", seed, size, err)
			}
		}
	}
	// Text is not a model either.
	_, err := decodeNoPanic(t, []byte("import torch\nmodel = torch.load('x.pth')\n"))
	wantErr(t, err, "not an ONNX model")
}

func TestPyTorchZip(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range []struct{ name, data string }{
		{"archive/data.pkl", "\x80\x02}q\x00."},
		{"archive/data/0", strings.Repeat("\x00", 64)},
		{"archive/version", "3\n"},
	} {
		w, err := zw.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(f.data))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.pth")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	wantErr(t, err, path, "zip", "torch.onnx.export")
	if !errors.Is(err, ErrNotONNX) {
		t.Errorf("errors.Is(%v, ErrNotONNX) = false", err)
	}
}

func TestCycle(t *testing.T) {
	p := tinyProto()
	p.Graph.Node = []*pb.NodeProto{
		pbNode("A", "Add", []string{"X", "b"}, []string{"a"}),
		pbNode("B", "Add", []string{"a", "W"}, []string{"b"}),
		pbNode("C", "Identity", []string{"b"}, []string{"Y"}),
	}
	_, err := decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, "cycle", `Add node "A"`, `Add node "B"`)
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Errorf("%v is not a *ValidationError", err)
	}

	// A node reading its own output.
	p.Graph.Node = []*pb.NodeProto{pbNode("self", "Add", []string{"X", "Y"}, []string{"Y"})}
	_, err = decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, "cycle", `Add node "self"`)

	// The same through the IR: rewire a valid model into a cycle.
	m, err := Decode(marshal(t, tinyProto()))
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	add := g.Nodes[0]
	relu := g.AddNode("Relu", "relu", []*Value{add.Outputs[0]}, []string{"R"})
	add.Inputs[1] = relu.Outputs[0]
	wantErr(t, m.Validate(), "cycle", `Add node "add"`, `Relu node "relu"`)
	wantErr(t, g.TopoSort(), "cycle", `Add node "add"`, `Relu node "relu"`)
	path := filepath.Join(t.TempDir(), "cycle.onnx")
	wantErr(t, Save(m, path), path, "cycle")
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Save of a cyclic model created %s", path)
	}
}

func TestUndefinedInput(t *testing.T) {
	p := tinyProto()
	p.Graph.Node[0].Input[1] = "nope"
	_, err := decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `Add node "add"`, `"nope"`, "not defined")

	p = tinyProto()
	p.Graph.Output[0].Name = proto.String("ghost")
	_, err = decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `output "ghost"`, "not defined")

	// Unnamed nodes are still identified by their op type.
	p = tinyProto()
	p.Graph.Node[0].Name = nil
	p.Graph.Node[0].Input[0] = "nope"
	_, err = decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, "unnamed Add node", `"nope"`)
}

func TestDuplicateNames(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*pb.GraphProto)
		parts []string
	}{
		{"two nodes, one output", func(g *pb.GraphProto) {
			g.Node = append(g.Node, pbNode("add2", "Add", []string{"X", "X"}, []string{"Y"}))
		}, []string{`"Y"`, `Add node "add2"`, `Add node "add"`, "duplicate"}},
		{"initializer and node output", func(g *pb.GraphProto) {
			g.Node[0].Output[0] = "W"
			g.Output[0].Name = proto.String("W")
		}, []string{`"W"`, `Add node "add"`, "initializer"}},
		{"graph input and node output", func(g *pb.GraphProto) {
			g.Node[0].Output[0] = "X"
		}, []string{`"X"`, `Add node "add"`, "graph input"}},
		{"two initializers", func(g *pb.GraphProto) {
			g.Initializer = append(g.Initializer, pbFloats("W", []int64{2}, 3, 4))
		}, []string{`initializer "W"`, "twice"}},
		{"input listed twice", func(g *pb.GraphProto) {
			g.Input = append(g.Input, pbValue("X", int32(Float), 2))
		}, []string{`input "X"`, "twice"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := tinyProto()
			c.edit(p.Graph)
			_, err := decodeNoPanic(t, marshal(t, p))
			wantErr(t, err, c.parts...)
		})
	}
}

func TestHugeTensorClaim(t *testing.T) {
	cases := []struct {
		name string
		tp   *pb.TensorProto
	}{
		{"raw 10^12", &pb.TensorProto{Dims: []int64{1000000, 1000000}, RawData: make([]byte, 16)}},
		{"raw 10^10", &pb.TensorProto{Dims: []int64{100000, 100000}, RawData: make([]byte, 16)}},
		{"float_data 10^12", &pb.TensorProto{Dims: []int64{1000000, 1000000}, FloatData: []float32{1, 2, 3, 4}}},
		{"float_data 10^10", &pb.TensorProto{Dims: []int64{100000, 100000}, FloatData: []float32{1, 2, 3, 4}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.tp.Name = proto.String("W")
			c.tp.DataType = proto.Int32(int32(Float))
			p := tinyProto()
			p.Graph.Initializer[0] = c.tp
			b := marshal(t, p)
			tb := marshal(t, c.tp)

			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := decodeNoPanic(t, b)
			_, terr := DecodeTensor(tb)
			runtime.ReadMemStats(&after)

			wantErr(t, err, `initializer`, `tensor "W"`)
			wantErr(t, terr, `tensor "W"`)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 100<<20 {
				t.Errorf("decoding allocated %d MB", grew>>20)
			}
		})
	}
}

func TestBadDims(t *testing.T) {
	cases := []struct {
		name  string
		dims  []int64
		parts []string
	}{
		{"overflow", []int64{1 << 32, 1 << 32}, []string{"overflow"}},
		{"overflow max", []int64{math.MaxInt64, 2}, []string{"overflow"}},
		{"overflow after zero", []int64{0, math.MaxInt64, math.MaxInt64}, nil},
		{"negative", []int64{-1, 4}, []string{"negative dimension -1"}},
		{"negative with zero", []int64{0, -4}, []string{"negative dimension -4"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tp := pbFloats("W", c.dims, 1, 2)
			p := tinyProto()
			p.Graph.Initializer[0] = tp
			_, err := decodeNoPanic(t, marshal(t, p))
			wantErr(t, err, append([]string{`tensor "W"`}, c.parts...)...)
			_, err = DecodeTensor(marshal(t, tp))
			wantErr(t, err, append([]string{`tensor "W"`}, c.parts...)...)
		})
	}

	// Negative dimensions in a value's type.
	p := tinyProto()
	p.Graph.Input[0] = pbValue("X", int32(Float), -5)
	_, err := decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `value "X"`, "negative dimension -5")
}

func TestUnknownDataType(t *testing.T) {
	p := tinyProto()
	p.Graph.Initializer[0].DataType = proto.Int32(99)
	_, err := decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `initializer`, `tensor "W"`, "unknown data type 99")

	p = tinyProto()
	p.Graph.Initializer[0].DataType = nil // undefined
	_, err = decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `tensor "W"`, "unknown data type 0")

	p = tinyProto()
	p.Graph.Input[0] = pbValue("X", 99, 2)
	_, err = decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `value "X"`, "unknown element type 99")

	_, err = DecodeTensor(marshal(t, &pb.TensorProto{Name: proto.String("T"), DataType: proto.Int32(99)}))
	wantErr(t, err, `tensor "T"`, "unknown data type 99")
}

func TestBadTensorData(t *testing.T) {
	cases := []struct {
		name  string
		tp    *pb.TensorProto
		parts []string
	}{
		{"raw too short", pbFloats("T", []int64{3}, 1, 2), []string{"needs 12 bytes", "raw_data has 8"}},
		{"raw too long", pbFloats("T", []int64{1}, 1, 2), []string{"needs 4 bytes", "raw_data has 8"}},
		{"float_data short", &pb.TensorProto{Name: proto.String("T"), DataType: proto.Int32(int32(Float)),
			Dims: []int64{3}, FloatData: []float32{1}}, []string{"float_data holds 1"}},
		{"int64_data long", &pb.TensorProto{Name: proto.String("T"), DataType: proto.Int32(int32(Int64)),
			Dims: []int64{1}, Int64Data: []int64{1, 2}}, []string{"int64_data holds 2"}},
		{"string raw", &pb.TensorProto{Name: proto.String("T"), DataType: proto.Int32(int32(String)),
			Dims: []int64{1}, RawData: []byte("x")}, []string{"raw_data"}},
		{"int4 typed", &pb.TensorProto{Name: proto.String("T"), DataType: proto.Int32(int32(Int4)),
			Dims: []int64{2}, Int32Data: []int32{1}}, []string{"raw_data"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeTensor(marshal(t, c.tp))
			wantErr(t, err, append([]string{`tensor "T"`}, c.parts...)...)
			p := tinyProto()
			c.tp.Name = proto.String("W")
			p.Graph.Initializer[0] = c.tp
			_, err = decodeNoPanic(t, marshal(t, p))
			wantErr(t, err, `tensor "W"`)
		})
	}
	_, err := DecodeTensor([]byte{0xff, 0xff})
	wantErr(t, err, "not a TensorProto")
}

func TestBadAttributeTensor(t *testing.T) {
	p := tinyProto()
	p.Graph.Node = append(p.Graph.Node, &pb.NodeProto{
		Name: proto.String("c"), OpType: proto.String("Constant"), Output: []string{"C"},
		Attribute: []*pb.AttributeProto{{Name: proto.String("value"),
			Type: pb.AttributeProto_TENSOR.Enum(), T: pbFloats("", []int64{5}, 1)}},
	})
	_, err := decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `Constant node "c"`, `attribute "value"`, "needs 20 bytes")
}

func TestBadSubgraph(t *testing.T) {
	p := tinyProto()
	then := &pb.GraphProto{
		Name:   proto.String("then"),
		Node:   []*pb.NodeProto{pbNode("inner", "Identity", []string{"missing"}, []string{"T"})},
		Output: []*pb.ValueInfoProto{pbValue("T", int32(Float), 2)},
	}
	p.Graph.Input = append(p.Graph.Input, pbValue("cond", int32(Bool)))
	p.Graph.Node = append(p.Graph.Node, &pb.NodeProto{
		Name: proto.String("if"), OpType: proto.String("If"), Input: []string{"cond"}, Output: []string{"Z"},
		Attribute: []*pb.AttributeProto{
			{Name: proto.String("then_branch"), Type: pb.AttributeProto_GRAPH.Enum(), G: then},
			{Name: proto.String("else_branch"), Type: pb.AttributeProto_GRAPH.Enum(), G: then},
		},
	})
	_, err := decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `subgraph "then"`, `Identity node "inner"`, `"missing"`)

	// Reading the outer graph's values from a subgraph is fine.
	then.Node[0].Input[0] = "Y"
	if _, err := decodeNoPanic(t, marshal(t, p)); err != nil {
		t.Fatal(err)
	}
}

func TestMissingOpset(t *testing.T) {
	p := tinyProto()
	p.OpsetImport = nil
	_, err := decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `Add node "add"`, `"ai.onnx"`, "no opset")

	p = tinyProto()
	p.Graph.Node[0].Domain = proto.String("com.example")
	_, err = decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `"com.example"`, "no opset")

	p = tinyProto()
	p.IrVersion = nil
	_, err = decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, "ir_version")

	p = tinyProto()
	p.Graph = nil
	_, err = decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, "no graph")
	if !errors.Is(err, ErrNotONNX) {
		t.Errorf("errors.Is(%v, ErrNotONNX) = false", err)
	}
}

func TestValidationListsAllProblems(t *testing.T) {
	p := tinyProto()
	p.OpsetImport = nil
	p.Graph.Node[0].Input[1] = "nope"
	p.Graph.Output[0].Name = proto.String("ghost")
	_, err := decodeNoPanic(t, marshal(t, p))
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("%v is not a *ValidationError", err)
	}
	if len(verr.Problems) != 3 {
		t.Errorf("got %d problems, want 3: %q", len(verr.Problems), verr.Problems)
	}
	wantErr(t, err, "nope", "ghost", "no opset")
}

// Save

func loadCNN(t testing.TB) *Model {
	t.Helper()
	m, err := Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestSaveBadPath(t *testing.T) {
	m := loadCNN(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "isdir.onnx"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		filepath.Join(dir, "missing", "model.onnx"), // no such folder
		filepath.Join(file, "model.onnx"),           // a file as folder
		filepath.Join(dir, "isdir.onnx"),            // a folder as target
	} {
		err := Save(m, path)
		wantErr(t, err, path)
		if names := dirNames(t, dir); len(names) != 2 {
			t.Errorf("Save(%s) left files behind: %q", path, names)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Errorf("file changed to %q", b)
	}
	if names := dirNames(t, filepath.Join(dir, "isdir.onnx")); len(names) != 0 {
		t.Errorf("Save wrote into the target folder: %q", names)
	}

	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(ro, "model.onnx")
		wantErr(t, Save(m, path), path)
		if names := dirNames(t, ro); len(names) != 0 {
			t.Errorf("Save left files in a read-only folder: %q", names)
		}
	}
}

func TestSaveInvalidModel(t *testing.T) {
	m := loadCNN(t)
	n := m.Graph.Node("/Relu")
	n.Inputs[0] = &Value{Name: "ghost"}
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	err := Save(m, path)
	wantErr(t, err, path, `Relu node "/Relu"`, `"ghost"`)
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Errorf("%v does not wrap a *ValidationError", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("Save of an invalid model left %q", names)
	}

	// An existing file is left alone.
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if Save(m, path) == nil {
		t.Fatal("Save of an invalid model succeeded")
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("Save of an invalid model overwrote the file with %d bytes", len(b))
	}
}

func TestSaveLoad(t *testing.T) {
	orig, err := os.ReadFile("../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	m := loadCNN(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	if err := Save(m, path); err != nil {
		t.Fatal(err)
	}
	// Overwriting works too.
	if err := Save(m, path); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("Save left %q, want only model.onnx", names)
	}
	saved, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved, orig) {
		t.Errorf("saved file differs from the file loaded (%d bytes vs %d)", len(saved), len(orig))
	}
	m2, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	b1, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := Encode(m2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Errorf("Encode after Save+Load differs")
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("saved file mode: %v %v", st.Mode(), err)
	}
}

func TestOddNames(t *testing.T) {
	// An op type with a line break would split error messages that name
	// the node by it.
	p := tinyProto()
	p.OpsetImport = nil
	p.Graph.Node[0].OpType = proto.String("Add\nrm -rf")
	_, err := decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `node "add"`, `op_type "Add\nrm -rf"`)

	// Other names are quoted wherever they appear.
	p = tinyProto()
	p.OpsetImport = nil
	p.Graph.Name = proto.String("g\n1")
	p.Graph.Node[0].Name = proto.String("a\nb")
	p.Graph.Node[0].Input[1] = "x\ny"
	_, err = decodeNoPanic(t, marshal(t, p))
	wantErr(t, err, `graph "g\n1"`, `"a\nb"`, `"x\ny"`)
}
