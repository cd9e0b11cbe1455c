package surgery

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"gorgonia.org/tensor"
)

// gemmLayer adds y = x·Wᵀ + b with random W [out, in] and b [out].
func gemmLayer(t *testing.T, g *onnx.Graph, rng *rand.Rand, name string, x *onnx.Value, in, out int) *onnx.Value {
	t.Helper()
	w := make([]float32, in*out)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.1)
	}
	b := make([]float32, out)
	for i := range b {
		b[i] = float32(rng.NormFloat64() * 0.1)
	}
	wt, err := onnx.FromFloat32(name+".weight", []int64{int64(out), int64(in)}, w)
	if err != nil {
		t.Fatal(err)
	}
	bt, err := onnx.FromFloat32(name+".bias", []int64{int64(out)}, b)
	if err != nil {
		t.Fatal(err)
	}
	n := g.AddNode("Gemm", name, []*onnx.Value{x, g.AddInitializer(wt), g.AddInitializer(bt)}, []string{name + "_out"},
		&onnx.Attribute{Name: "transB", Type: onnx.AttrInt, Int: 1})
	return n.Outputs[0]
}

func newModel(g *onnx.Graph, opset int64) *onnx.Model {
	return &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: opset}}, Graph: g}
}

// tinyGen maps z [N,4] to images [N,1,2,3] in (0, 1). Its names are the
// same as tinyDisc's, so composing them needs the prefix.
func tinyGen(t *testing.T) *onnx.Model {
	rng := rand.New(rand.NewSource(1))
	g := &onnx.Graph{Name: "gen"}
	z := g.AddInput("x", &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("N"), onnx.Fixed(4)}})
	h := gemmLayer(t, g, rng, "fc1", z, 4, 6)
	s := g.AddNode("Sigmoid", "act", []*onnx.Value{h}, []string{"act_out"}).Outputs[0]
	shape, err := onnx.FromInt64("shape", []int64{4}, []int64{-1, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	y := g.AddNode("Reshape", "reshape", []*onnx.Value{s, g.AddInitializer(shape)}, []string{"y"}).Outputs[0]
	g.Outputs = []*onnx.Value{y}
	m := newModel(g, 13)
	if err := Apply(m); err != nil {
		t.Fatal(err)
	}
	return m
}

// tinyDisc maps images [N,1,2,3] to two logits.
func tinyDisc(t *testing.T, opset int64) *onnx.Model {
	rng := rand.New(rand.NewSource(2))
	g := &onnx.Graph{Name: "disc"}
	x := g.AddInput("x", &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("batch"), onnx.Fixed(1), onnx.Fixed(2), onnx.Fixed(3)}})
	f := g.AddNode("Flatten", "flat", []*onnx.Value{x}, []string{"flat_out"}).Outputs[0]
	h := gemmLayer(t, g, rng, "fc1", f, 6, 5)
	a := g.AddNode("LeakyRelu", "act", []*onnx.Value{h}, []string{"act_out"},
		&onnx.Attribute{Name: "alpha", Type: onnx.AttrFloat, Float: 0.2}).Outputs[0]
	y := gemmLayer(t, g, rng, "fc2", a, 5, 2)
	y.Name = "y"
	g.Outputs = []*onnx.Value{y}
	m := newModel(g, opset)
	if err := Apply(m); err != nil {
		t.Fatal(err)
	}
	return m
}

func run(t *testing.T, m *onnx.Model, x *tensor.Dense) []float32 {
	t.Helper()
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(x)
	if err != nil {
		t.Fatal(err)
	}
	return out[0].Data().([]float32)
}

func TestCompose(t *testing.T) {
	gen, disc := tinyGen(t), tinyDisc(t, 11)
	genBefore, discBefore := encode(t, gen), encode(t, disc)
	m, err := Compose(gen, disc, "D/")
	if err != nil {
		t.Fatal(err)
	}
	if string(encode(t, gen)) != string(genBefore) || string(encode(t, disc)) != string(discBefore) {
		t.Error("Compose changed its arguments")
	}
	g := m.Graph
	if len(g.Inputs) != 1 || g.Inputs[0].Name != "x" || g.Inputs[0].Type.Shape.String() != "[N,4]" {
		t.Errorf("inputs: %v", g.Inputs)
	}
	if len(g.Outputs) != 1 || g.Outputs[0].Name != "D/y" {
		t.Fatalf("outputs: %v", g.Outputs)
	}
	if s := g.Outputs[0].Type; s == nil || s.Shape.String() != "[N,2]" {
		t.Errorf("output type %v, want float32[N,2]", s)
	}
	if v := m.OpsetVersion(""); v != 13 {
		t.Errorf("opset %d, want the higher, 13", v)
	}
	// Both models' parameters, second's prefixed; nodes too.
	for _, name := range []string{"fc1.weight", "fc1.bias", "D/fc1.weight", "D/fc1.bias", "D/fc2.weight", "D/fc2.bias"} {
		if v := g.Value(name); v == nil || !v.IsConst() {
			t.Errorf("parameter %q missing", name)
		}
	}
	if g.Node("act") == nil || g.Node("D/act") == nil || g.Node("D/flat") == nil {
		t.Error("nodes not kept or not prefixed")
	}
	if flat := g.Node("D/flat"); flat == nil || flat.Inputs[0] != g.Value("y") {
		t.Error("the second model does not read the first's output")
	}

	// The result is a model like any other: it encodes and decodes.
	again, err := onnx.Decode(encode(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Validate(); err != nil {
		t.Fatal(err)
	}

	// Numerically: disc(gen(z)).
	rng := rand.New(rand.NewSource(3))
	z := make([]float32, 5*4)
	for i := range z {
		z[i] = float32(rng.NormFloat64())
	}
	zt := tensor.New(tensor.WithShape(5, 4), tensor.WithBacking(z))
	img := run(t, gen, zt)
	want := run(t, disc, tensor.New(tensor.WithShape(5, 1, 2, 3), tensor.WithBacking(img)))
	got := run(t, m, zt)
	if len(got) != len(want) {
		t.Fatalf("%d outputs, want %d", len(got), len(want))
	}
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) > 1e-6 {
			t.Fatalf("output %d: composed %g, disc(gen(z)) %g", i, got[i], want[i])
		}
	}
}

func TestComposeErrors(t *testing.T) {
	gen := tinyGen(t)
	// Without a prefix the two models' names collide.
	if _, err := Compose(gen, tinyDisc(t, 13), ""); err == nil || !strings.Contains(err.Error(), "collide") || !strings.Contains(err.Error(), "fc1.weight") {
		t.Errorf("no prefix: %v", err)
	}
	// A second model expecting [N,1,3,2] cannot read [N,1,2,3].
	bad := tinyDisc(t, 13)
	bad.Graph.Inputs[0].Type.Shape[2], bad.Graph.Inputs[0].Type.Shape[3] = onnx.Fixed(3), onnx.Fixed(2)
	if _, err := Compose(gen, bad, "D/"); err == nil || !strings.Contains(err.Error(), "shape mismatch") || !strings.Contains(err.Error(), "[N,1,2,3]") {
		t.Errorf("shape mismatch: %v", err)
	}
	// Nor one of another rank or element type.
	rank := tinyDisc(t, 13)
	rank.Graph.Inputs[0].Type.Shape = rank.Graph.Inputs[0].Type.Shape[:3]
	if _, err := Compose(gen, rank, "D/"); err == nil || !strings.Contains(err.Error(), "shape mismatch") {
		t.Errorf("rank mismatch: %v", err)
	}
	elem := tinyDisc(t, 13)
	elem.Graph.Inputs[0].Type.Elem = onnx.Double
	if _, err := Compose(gen, elem, "D/"); err == nil || !strings.Contains(err.Error(), "float64") {
		t.Errorf("element type mismatch: %v", err)
	}
	// A custom domain at two versions.
	a, b := tinyGen(t), tinyDisc(t, 13)
	a.Opsets = append(a.Opsets, onnx.Opset{Domain: "com.example", Version: 1})
	b.Opsets = append(b.Opsets, onnx.Opset{Domain: "com.example", Version: 2})
	if _, err := Compose(a, b, "D/"); err == nil || !strings.Contains(err.Error(), "incompatible opsets") {
		t.Errorf("opsets: %v", err)
	}
	// One output cannot feed two inputs.
	twoIn := tinyDisc(t, 13)
	twoIn.Graph.AddInput("extra", onnx.TensorType(onnx.Float, 1))
	if _, err := Compose(gen, twoIn, "D/"); err == nil || !strings.Contains(err.Error(), "2 inputs") {
		t.Errorf("two inputs: %v", err)
	}
	// Two outputs cannot feed one input.
	two := tinyGen(t)
	two.Graph.Outputs = append(two.Graph.Outputs, two.Graph.Value("act_out"))
	if _, err := Compose(two, tinyDisc(t, 13), "D/"); err == nil || !strings.Contains(err.Error(), "2 outputs") {
		t.Errorf("two outputs: %v", err)
	}
}

func TestComposeTrainable(t *testing.T) {
	gen, disc := tinyGen(t), tinyDisc(t, 13)
	if err := Apply(disc, Freeze(HeadParams())); err != nil {
		t.Fatal(err)
	}
	m, err := Compose(gen, disc, "D/")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Trainable(m)
	if err != nil {
		t.Fatal(err)
	}
	want := "fc1.weight fc1.bias D/fc1.weight D/fc1.bias"
	if strings.Join(got, " ") != want {
		t.Errorf("trainable %q, want %q", got, want)
	}
}
