package onnx

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/graft-dev/graft/onnx/internal/pb"
	"google.golang.org/protobuf/proto"
)

const resnetPath = "../testdata/models/resnet_tiny_op17_bn/model.onnx"

func loadResnet(t testing.TB) (*Model, []byte) {
	t.Helper()
	b := readFile(t, resnetPath)
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return m, b
}

// checkOrder fails unless every node comes after the producers of its inputs.
func checkOrder(t *testing.T, g *Graph) {
	t.Helper()
	pos := map[*Node]int{}
	for i, n := range g.Nodes {
		pos[n] = i
	}
	for i, n := range g.Nodes {
		for _, v := range n.Inputs {
			if v == nil || v.Producer() == nil {
				continue
			}
			if j, ok := pos[v.Producer()]; !ok || j >= i {
				t.Errorf("%s (at %d) reads %q before %s (at %d) writes it", n, i, v.Name, v.Producer(), j)
			}
		}
	}
}

func TestTopoSort(t *testing.T) {
	m, orig := loadResnet(t)
	g := m.Graph
	sorted := slices.Clone(g.Nodes)

	// A sorted graph keeps its order.
	if err := g.TopoSort(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.Nodes, sorted) {
		t.Error("TopoSort reordered an already sorted graph")
	}

	for seed := uint64(1); seed <= 5; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		r.Shuffle(len(g.Nodes), func(i, j int) { g.Nodes[i], g.Nodes[j] = g.Nodes[j], g.Nodes[i] })
		if slices.Equal(g.Nodes, sorted) {
			t.Fatal("shuffle did not change the order")
		}
		// A shuffled graph is still valid (ONNX requires order, graft sorts).
		if err := g.TopoSort(); err != nil {
			t.Fatal(err)
		}
		checkOrder(t, g)
		if len(g.Nodes) != len(sorted) {
			t.Fatalf("TopoSort changed the node count from %d to %d", len(sorted), len(g.Nodes))
		}
		for _, n := range sorted {
			if !slices.Contains(g.Nodes, n) {
				t.Errorf("TopoSort lost %s", n)
			}
		}
		if err := m.Validate(); err != nil {
			t.Error(err)
		}
	}

	// An unsorted file decodes, and sorting it gives a valid order.
	p := &pb.ModelProto{}
	if err := proto.Unmarshal(orig, p); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(p.Graph.Node)
	m2, err := Decode(marshal(t, p))
	if err != nil {
		t.Fatalf("reversed graph: %v", err)
	}
	if err := m2.Graph.TopoSort(); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, m2.Graph)
}

func TestCleanup(t *testing.T) {
	m, orig := loadResnet(t)
	g := m.Graph
	nodes := slices.Clone(g.Nodes)
	inits := slices.Clone(g.Initializers)

	// A dangling branch: two nodes whose outputs nobody reads, one of them
	// reading an initializer nobody else reads, plus an unused initializer.
	relu := g.Value("/relu/Relu_output_0")
	w, err := FromFloat32("dangling.w", []int64{1}, []float32{2})
	if err != nil {
		t.Fatal(err)
	}
	wv := g.AddInitializer(w)
	mul := g.AddNode("Mul", "dangling_mul", []*Value{relu, wv}, []string{"dangling_1"})
	neg := g.AddNode("Neg", "dangling_neg", []*Value{mul.Outputs[0]}, []string{"dangling_2"})
	unused, _ := FromFloat32("unused.w", []int64{2}, []float32{1, 2})
	g.AddInitializer(unused)
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}

	g.Cleanup()
	if !slices.Equal(g.Nodes, nodes) {
		t.Errorf("Cleanup left %d nodes, want the %d reachable ones", len(g.Nodes), len(nodes))
	}
	if !slices.Equal(g.Initializers, inits) {
		t.Errorf("Cleanup left %d initializers, want %d", len(g.Initializers), len(inits))
	}
	for _, n := range []*Node{mul, neg} {
		if g.Node(n.Name) != nil {
			t.Errorf("%s survived Cleanup", n)
		}
	}
	if len(g.Consumers(relu)) != 1 {
		t.Errorf("%q has consumers %v after Cleanup", relu.Name, g.Consumers(relu))
	}
	if err := m.Validate(); err != nil {
		t.Error(err)
	}
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, orig) {
		t.Error("after adding and cleaning up a dangling branch the model differs from the original")
	}

	// Graph inputs are kept even if unused; so is an initializer listed
	// as an input.
	in := g.AddInput("extra", TensorType(Float, 1))
	g.Cleanup()
	if !g.isInput(in) {
		t.Error("Cleanup removed a graph input")
	}
}

func TestConsumersProducer(t *testing.T) {
	m, _ := loadResnet(t)
	g := m.Graph
	names := func(ns []*Node) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.Name)
		}
		return out
	}
	cases := []struct {
		value     string
		producer  string
		consumers []string
	}{
		{"input", "", []string{"/conv1/Conv"}},
		{"conv1.weight", "", []string{"/conv1/Conv"}},
		{"/relu/Relu_output_0", "/relu/Relu", []string{"/maxpool/MaxPool"}},
		{"/maxpool/MaxPool_output_0", "/maxpool/MaxPool", []string{"/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/Add"}},
		{"output", "/fc/Gemm", nil},
	}
	for _, c := range cases {
		v := g.Value(c.value)
		if v == nil {
			t.Errorf("no value %q", c.value)
			continue
		}
		var prod string
		if p := v.Producer(); p != nil {
			prod = p.Name
		}
		if prod != c.producer {
			t.Errorf("Producer(%q) = %q, want %q", c.value, prod, c.producer)
		}
		if got := names(g.Consumers(v)); !slices.Equal(got, c.consumers) {
			t.Errorf("Consumers(%q) = %q, want %q", c.value, got, c.consumers)
		}
	}
	if !g.IsOutput(g.Value("output")) || g.IsOutput(g.Value("input")) {
		t.Error("IsOutput is wrong")
	}
	if !g.Value("conv1.weight").IsConst() || g.Value("input").IsConst() {
		t.Error("IsConst is wrong")
	}
	if g.Value("nope") != nil || g.Node("nope") != nil {
		t.Error("lookup of a missing name found something")
	}
}

func TestRenameOutput(t *testing.T) {
	m, _ := loadResnet(t)
	out := m.Graph.Outputs[0]
	prod := out.Producer()
	out.Name = "logits"
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	g := m2.Graph
	if g.Outputs[0].Name != "logits" {
		t.Errorf("output is %q, want logits", g.Outputs[0].Name)
	}
	n := g.Node(prod.Name)
	if n == nil || n.Outputs[0].Name != "logits" || g.Outputs[0].Producer() != n {
		t.Errorf("%s does not write logits", prod)
	}
	if g.Value("output") != nil {
		t.Error(`value "output" still exists`)
	}
	// The type recorded for the output is kept.
	if g.Outputs[0].Type == nil || g.Outputs[0].Type.Shape.String() != "[batch,10]" {
		t.Errorf("output type %v", g.Outputs[0].Type)
	}

	// Renaming an initializer renames its tensor and its readers.
	w := g.Value("fc.weight")
	w.Name = "head.weight"
	b, err = Encode(m2)
	if err != nil {
		t.Fatal(err)
	}
	m3, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if v := m3.Graph.Value("head.weight"); v == nil || v.Const == nil || v.Const.Name != "head.weight" ||
		len(m3.Graph.Consumers(v)) != 1 || m3.Graph.Consumers(v)[0].Name != prod.Name {
		t.Error("renamed initializer is not read by the head")
	}
}

func TestEditReencodes(t *testing.T) {
	m, _ := loadResnet(t)
	g := m.Graph
	out := g.Outputs[0]
	sm := g.AddNode("Softmax", "probs", []*Value{out}, []string{"probs"},
		&Attribute{Name: "axis", Type: AttrInt, Int: 1})
	g.Outputs[0] = sm.Outputs[0]
	sm.Outputs[0].Type = out.Type
	m.ProducerName = "graft"
	m.SetMetadata("edited", "yes")
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Validate(); err != nil {
		t.Fatal(err)
	}
	g2 := m2.Graph
	if len(g2.Nodes) != len(g.Nodes) || g2.Nodes[len(g2.Nodes)-1].OpType != "Softmax" {
		t.Errorf("edited model has %d nodes, want %d ending with Softmax", len(g2.Nodes), len(g.Nodes))
	}
	if n := g2.Node("probs"); n == nil || n.AttrInt("axis", -1) != 1 || n.Inputs[0].Name != "output" {
		t.Error("Softmax node lost its input or attribute")
	}
	if g2.Outputs[0].Name != "probs" || m2.ProducerName != "graft" {
		t.Errorf("output %q producer %q", g2.Outputs[0].Name, m2.ProducerName)
	}
	if v, ok := m2.MetadataValue("edited"); !ok || v != "yes" {
		t.Error("metadata lost")
	}
	// Encoding is stable.
	b2, err := Encode(m2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Error("re-encoding the edited model changed it")
	}
}

// Typed-field tensors

type typedCase struct {
	dt    DType
	typed *pb.TensorProto // with the data in its typed field
	raw   []byte          // the same data as raw_data
	check func(t *testing.T, x *Tensor)
}

func le16(vs ...uint16) []byte {
	b := make([]byte, 2*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	return b
}

func le32(vs ...uint32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return b
}

func le64(vs ...uint64) []byte {
	b := make([]byte, 8*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint64(b[8*i:], v)
	}
	return b
}

func wantInts(want ...int64) func(*testing.T, *Tensor) {
	return func(t *testing.T, x *Tensor) {
		got, err := x.Int64s()
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Int64s = %v, %v; want %v", got, err, want)
		}
	}
}

func wantRaw(want []byte) func(*testing.T, *Tensor) {
	return func(t *testing.T, x *Tensor) {
		if !bytes.Equal(x.Raw(), want) {
			t.Errorf("Raw = % x, want % x", x.Raw(), want)
		}
	}
}

func typedCases() []typedCase {
	tp := func(dt DType, n int64) *pb.TensorProto {
		return &pb.TensorProto{Name: proto.String("t"), DataType: proto.Int32(int32(dt)), Dims: []int64{n}}
	}
	with := func(p *pb.TensorProto, f func(*pb.TensorProto)) *pb.TensorProto { f(p); return p }
	floats := []float32{1.5, -2, 0, float32(math.Inf(1)), 3.25}
	doubles := []float64{1.5, -2, 0, math.MaxFloat64, 1e-300}
	f32bits := make([]uint32, len(floats))
	for i, f := range floats {
		f32bits[i] = math.Float32bits(f)
	}
	f64bits := make([]uint64, len(doubles))
	for i, f := range doubles {
		f64bits[i] = math.Float64bits(f)
	}
	return []typedCase{
		{Float, with(tp(Float, 5), func(p *pb.TensorProto) { p.FloatData = floats }), le32(f32bits...),
			func(t *testing.T, x *Tensor) {
				got, err := x.Float32s()
				if err != nil || !slices.Equal(got, floats) {
					t.Errorf("Float32s = %v, %v", got, err)
				}
				g64, err := x.Float64s()
				if err != nil || len(g64) != 5 || g64[0] != 1.5 || g64[4] != 3.25 {
					t.Errorf("Float64s = %v, %v", g64, err)
				}
			}},
		{Double, with(tp(Double, 5), func(p *pb.TensorProto) { p.DoubleData = doubles }), le64(f64bits...),
			func(t *testing.T, x *Tensor) {
				got, err := x.Float64s()
				if err != nil || !slices.Equal(got, doubles) {
					t.Errorf("Float64s = %v, %v", got, err)
				}
			}},
		// 1.0, -2.0, 65504 (max), smallest subnormal
		{Float16, with(tp(Float16, 4), func(p *pb.TensorProto) { p.Int32Data = []int32{0x3C00, 0xC000, 0x7BFF, 1} }),
			le16(0x3C00, 0xC000, 0x7BFF, 1), wantRaw(le16(0x3C00, 0xC000, 0x7BFF, 1))},
		{BFloat16, with(tp(BFloat16, 3), func(p *pb.TensorProto) { p.Int32Data = []int32{0x3F80, 0xC000, 0xFF80} }),
			le16(0x3F80, 0xC000, 0xFF80), wantRaw(le16(0x3F80, 0xC000, 0xFF80))},
		{Int8, with(tp(Int8, 4), func(p *pb.TensorProto) { p.Int32Data = []int32{-128, -1, 0, 127} }),
			[]byte{0x80, 0xff, 0, 0x7f}, wantInts(-128, -1, 0, 127)},
		{Int16, with(tp(Int16, 4), func(p *pb.TensorProto) { p.Int32Data = []int32{-32768, -1, 0, 32767} }),
			le16(0x8000, 0xffff, 0, 0x7fff), wantInts(-32768, -1, 0, 32767)},
		{Int32, with(tp(Int32, 4), func(p *pb.TensorProto) { p.Int32Data = []int32{math.MinInt32, -1, 0, math.MaxInt32} }),
			le32(0x80000000, 0xffffffff, 0, 0x7fffffff), wantInts(math.MinInt32, -1, 0, math.MaxInt32)},
		{Int64, with(tp(Int64, 4), func(p *pb.TensorProto) { p.Int64Data = []int64{math.MinInt64, -1, 0, math.MaxInt64} }),
			le64(1<<63, math.MaxUint64, 0, math.MaxInt64), wantInts(math.MinInt64, -1, 0, math.MaxInt64)},
		{Uint8, with(tp(Uint8, 3), func(p *pb.TensorProto) { p.Int32Data = []int32{0, 1, 255} }),
			[]byte{0, 1, 255}, wantInts(0, 1, 255)},
		{Uint16, with(tp(Uint16, 3), func(p *pb.TensorProto) { p.Int32Data = []int32{0, 1, 65535} }),
			le16(0, 1, 65535), wantInts(0, 1, 65535)},
		{Uint32, with(tp(Uint32, 3), func(p *pb.TensorProto) { p.Uint64Data = []uint64{0, 1, math.MaxUint32} }),
			le32(0, 1, math.MaxUint32), wantInts(0, 1, math.MaxUint32)},
		{Uint64, with(tp(Uint64, 3), func(p *pb.TensorProto) { p.Uint64Data = []uint64{0, 1, math.MaxUint64} }),
			le64(0, 1, math.MaxUint64), wantRaw(le64(0, 1, math.MaxUint64))},
		{Bool, with(tp(Bool, 3), func(p *pb.TensorProto) { p.Int32Data = []int32{1, 0, 1} }),
			[]byte{1, 0, 1}, wantInts(1, 0, 1)},
		{String, with(tp(String, 3), func(p *pb.TensorProto) { p.StringData = [][]byte{[]byte("a"), {}, []byte("héllo\x00")} }),
			nil, func(t *testing.T, x *Tensor) {
				got, err := x.Strings()
				want := [][]byte{[]byte("a"), {}, []byte("héllo\x00")}
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("Strings = %q, %v", got, err)
				}
				if x.Bytes() != 8 {
					t.Errorf("Bytes = %d, want 8", x.Bytes())
				}
			}},
		// Scalars and empty tensors.
		{Float, &pb.TensorProto{Name: proto.String("s"), DataType: proto.Int32(int32(Float)), FloatData: []float32{7}},
			le32(math.Float32bits(7)), func(t *testing.T, x *Tensor) {
				if x.NumElements() != 1 || len(x.Dims) != 0 {
					t.Errorf("scalar has %d elements, dims %v", x.NumElements(), x.Dims)
				}
			}},
		{Int64, tp(Int64, 0), []byte{}, wantInts()},
		// 4-bit types have no typed field, but an empty one is accepted.
		{Uint4, tp(Uint4, 0), []byte{}, wantRaw(nil)},
		{Int4, &pb.TensorProto{Name: proto.String("t"), DataType: proto.Int32(int32(Int4)), Dims: []int64{2, 0}},
			[]byte{}, wantRaw(nil)},
	}
}

func TestTypedTensorRoundTrip(t *testing.T) {
	for _, c := range typedCases() {
		t.Run(c.dt.String(), func(t *testing.T) {
			variants := map[string]*pb.TensorProto{"typed": c.typed}
			if c.dt != String {
				r := &pb.TensorProto{Name: c.typed.Name, DataType: c.typed.DataType, Dims: c.typed.Dims, RawData: c.raw}
				variants["raw"] = r
			}
			for name, p := range variants {
				b := marshal(t, p)
				x, err := DecodeTensor(b)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if x.DType != c.dt {
					t.Errorf("%s: dtype %s", name, x.DType)
				}
				if c.dt != String && !bytes.Equal(x.Raw(), c.raw) {
					t.Errorf("%s: Raw = % x, want % x", name, x.Raw(), c.raw)
				}
				c.check(t, x)
				out, err := EncodeTensor(x)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !bytes.Equal(out, b) {
					t.Errorf("%s: re-encoded tensor differs:\n in % x\nout % x", name, b, out)
				}
			}
		})
	}
}

// A tensor saved and loaded through a file keeps its bytes.
func TestSaveLoadTensor(t *testing.T) {
	for _, c := range typedCases() {
		x, err := DecodeTensor(marshal(t, c.typed))
		if err != nil {
			t.Fatal(err)
		}
		path := t.TempDir() + "/t.pb"
		if err := SaveTensor(x, path); err != nil {
			t.Fatal(err)
		}
		y, err := LoadTensor(path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(x.Raw(), y.Raw()) || x.DType != y.DType || !slices.Equal(x.Dims, y.Dims) {
			t.Errorf("%s: tensor changed through SaveTensor/LoadTensor", c.dt)
		}
	}
	// The ONNX test data files decode.
	x, err := LoadTensor("../testdata/models/cnn/test_data_set_0/input_0.pb")
	if err != nil {
		t.Fatal(err)
	}
	if x.DType != Float || x.NumElements() == 0 {
		t.Errorf("input_0.pb: %s%v", x.DType, x.Dims)
	}
	_, err = LoadTensor("../testdata/models/cnn/model.onnx")
	wantErr(t, err, "model.onnx")
}

func TestTensorAccessorsWrongType(t *testing.T) {
	x, _ := FromInt64("i", []int64{2}, []int64{1, 2})
	if _, err := x.Float32s(); err == nil {
		t.Error("Float32s of int64")
	}
	if _, err := x.Float64s(); err == nil {
		t.Error("Float64s of int64")
	}
	if _, err := x.Strings(); err == nil {
		t.Error("Strings of int64")
	}
	f, _ := FromFloat32("f", []int64{2}, []float32{1, 2})
	_, err := f.Int64s()
	wantErr(t, err, `tensor "f"`, "float32")
	empty, _ := FromFloat32("e", []int64{0}, nil)
	if _, err := empty.Int64s(); err == nil {
		t.Error("Int64s of an empty float32 tensor succeeded")
	}
	// Dims edited in place do not make the accessors read past the data.
	x.Dims = []int64{5}
	if v, err := x.Int64s(); err != nil || !slices.Equal(v, []int64{1, 2}) {
		t.Errorf("Int64s after editing Dims = %v, %v", v, err)
	}
	if _, err := FromFloat32("bad", []int64{3}, []float32{1, 2}); err == nil {
		t.Error("FromFloat32 accepted 2 values for 3 elements")
	}
	if _, err := NewTensor("neg", Float, []int64{-1}, nil); err == nil {
		t.Error("NewTensor accepted a negative dimension")
	}
}

// An empty 4-bit initializer (no data field at all) survives a round trip.
func TestEmpty4BitInitializer(t *testing.T) {
	p := tinyProto()
	p.Graph.Initializer = append(p.Graph.Initializer,
		&pb.TensorProto{Name: proto.String("E"), DataType: proto.Int32(int32(Uint4)), Dims: []int64{0}})
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
		t.Error("model with an empty uint4 initializer changed in a round trip")
	}
}
