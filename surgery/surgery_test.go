package surgery

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"gorgonia.org/tensor"
)

func encode(t *testing.T, m *onnx.Model) []byte {
	t.Helper()
	b, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReplaceHeadGemm(t *testing.T) {
	m := load(t, "../testdata/models/resnet_tiny_op13_folded/model.onnx")
	if err := Apply(m, ReplaceHead(3, HeadOptions{Seed: 1})); err != nil {
		t.Fatal(err)
	}
	h, err := FindHead(m.Graph)
	if err != nil {
		t.Fatal(err)
	}
	if h.Node.OpType != "Gemm" || h.InFeatures != 64 || h.OutFeatures != 3 || h.Weight.Name != "fc.weight" {
		t.Errorf("new head %s %q %d->%d", h.Node.OpType, h.Weight.Name, h.InFeatures, h.OutFeatures)
	}
	if got := m.Graph.Outputs[0].Type.Shape.String(); got != "[batch,3]" {
		t.Errorf("output shape %s, want [batch,3]", got)
	}
	for _, v := range m.Graph.Initializers {
		if strings.Contains(v.Name, "__replaced") {
			t.Errorf("old parameter %q survived cleanup", v.Name)
		}
	}
	// PyTorch's Linear default: U(±1/sqrt(64)).
	w, _ := h.Weight.Const.Float32s()
	for _, x := range w {
		if math.Abs(float64(x)) > 1/8.0 {
			t.Fatalf("weight %g outside ±1/8", x)
		}
	}
}

// The backbone is untouched: the features reaching the new head equal the
// old model's, computed by the runtime.
func TestReplaceHeadKeepsBackbone(t *testing.T) {
	orig := load(t, "../testdata/models/resnet_tiny_op13_folded/model.onnx")
	m, _ := orig.Clone()
	if err := Apply(m, ReplaceHead(5, HeadOptions{Seed: 2})); err != nil {
		t.Fatal(err)
	}
	feats := func(m *onnx.Model) []float32 {
		h, _ := FindHead(m.Graph)
		c, _ := m.Clone()
		if err := Apply(c, Cut(h.Node.Input(0).Name)); err != nil {
			t.Fatal(err)
		}
		p, err := runtime.Compile(c, runtime.Options{})
		if err != nil {
			t.Fatal(err)
		}
		x := tensor.New(tensor.WithShape(2, 3, 64, 64), tensor.Of(tensor.Float32))
		for i, d := 0, x.Data().([]float32); i < len(d); i++ {
			d[i] = float32(i%97) / 97
		}
		out, err := p.Run(x)
		if err != nil {
			t.Fatal(err)
		}
		if got := out[0].Shape(); got[1] != 64 {
			t.Fatalf("features shape %v", got)
		}
		return out[0].Data().([]float32)
	}
	if !slices.Equal(feats(orig), feats(m)) {
		t.Error("replacing the head changed the backbone's features")
	}
}

func TestReplaceHeadMatMulAndConv(t *testing.T) {
	mm := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}}
	mm.Graph = tinyGraph(t, func(g *onnx.Graph, x *onnx.Value) *onnx.Value {
		f := g.AddNode("Flatten", "flat", []*onnx.Value{x}, []string{"f"}).Outputs[0]
		y := g.AddNode("MatMul", "mm", []*onnx.Value{f, weight(t, g, "fc.weight", 128, 7)}, []string{"mm"}).Outputs[0]
		return g.AddNode("Add", "bias", []*onnx.Value{y, weight(t, g, "fc.bias", 7)}, []string{"logits"}).Outputs[0]
	})
	mm.Graph.Outputs[0].Type = onnx.TensorType(onnx.Float, 1, 7)
	if err := Apply(mm, ReplaceHead(4, HeadOptions{})); err != nil {
		t.Fatal(err)
	}
	h, err := FindHead(mm.Graph)
	if err != nil || h.Node.OpType != "MatMul" || h.BiasAdd == nil || h.OutFeatures != 4 || h.InFeatures != 128 {
		t.Fatalf("MatMul head after replace: %+v, %v", h, err)
	}
	if s := mm.Graph.Outputs[0].Type.Shape.String(); s != "[1,4]" {
		t.Errorf("output shape %s", s)
	}

	cv := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}}
	cv.Graph = tinyGraph(t, func(g *onnx.Graph, x *onnx.Value) *onnx.Value {
		c := g.AddNode("Conv", "final_conv", []*onnx.Value{x, weight(t, g, "classifier.weight", 5, 8, 1, 1), weight(t, g, "classifier.bias", 5)}, []string{"c"}).Outputs[0]
		p := g.AddNode("GlobalAveragePool", "pool", []*onnx.Value{c}, []string{"p"}).Outputs[0]
		return g.AddNode("Flatten", "flat", []*onnx.Value{p}, []string{"logits"}).Outputs[0]
	})
	if err := Apply(cv, ReplaceHead(2, HeadOptions{})); err != nil {
		t.Fatal(err)
	}
	h, err = FindHead(cv.Graph)
	if err != nil || h.Node.OpType != "Conv" || h.OutFeatures != 2 || h.InFeatures != 8 {
		t.Fatalf("Conv head after replace: %+v, %v", h, err)
	}
}

func TestApplyIsAllOrNothing(t *testing.T) {
	m := load(t, "../testdata/models/cnn/model.onnx")
	before := encode(t, m)
	boom := errors.New("boom")
	err := Apply(m,
		ReplaceHead(3, HeadOptions{}),
		func(m *onnx.Model) error { m.Graph.Nodes = nil; return boom })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "edit 2 of 2") {
		t.Errorf("error %v", err)
	}
	if !bytes.Equal(before, encode(t, m)) {
		t.Error("a failed patch changed the model")
	}
	// An edit that leaves the graph invalid is refused the same way.
	err = Apply(m, func(m *onnx.Model) error {
		m.Graph.Nodes[1].Inputs[0] = &onnx.Value{Name: "nowhere"}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("invalid result accepted: %v", err)
	}
	if !bytes.Equal(before, encode(t, m)) {
		t.Error("a refused patch changed the model")
	}
	if err := Apply(m, ReplaceHead(0, HeadOptions{})); err == nil || !strings.Contains(err.Error(), "k = 0") {
		t.Errorf("k = 0 accepted: %v", err)
	}
}

func TestFreezeBackbone(t *testing.T) {
	m := load(t, "../testdata/models/resnet_tiny_op13_bn/model.onnx")
	all, err := Trainable(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		if strings.Contains(n, "running_") {
			t.Errorf("default trainable set holds the buffer %q", n)
		}
	}
	if err := Apply(m, ReplaceHead(4, HeadOptions{}), Freeze(Backbone())); err != nil {
		t.Fatal(err)
	}
	got, _ := Trainable(m)
	if !slices.Equal(got, []string{"fc.weight", "fc.bias"}) {
		t.Errorf("after freezing the backbone: %v", got)
	}
	if err := Apply(m, Unfreeze(OpType("BatchNormalization"))); err != nil {
		t.Fatal(err)
	}
	got, _ = Trainable(m)
	if len(got) != 2+2*20 {
		t.Errorf("after unfreezing BN: %d trainable (want 42: head + 20 scales and biases)", len(got))
	}
	if err := Apply(m, Freeze(Glob("nothing.*"))); err == nil || !strings.Contains(err.Error(), "matches no parameter") {
		t.Errorf("a selector matching nothing: %v", err)
	}
	// The set survives a save and load.
	b := encode(t, m)
	m2, err := onnx.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Trainable(m2)
	if !slices.Equal(again, got) {
		t.Error("trainable set lost in a round trip")
	}
}

func stats(v []float32) (mean, std float64) {
	for _, x := range v {
		mean += float64(x)
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (float64(x) - mean) * (float64(x) - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)))
}

func TestInitializeDCGANAndReproducibility(t *testing.T) {
	m := load(t, "../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err := Apply(m, Initialize(DCGAN(), All(), 42)); err != nil {
		t.Fatal(err)
	}
	var convW, bnScale, bnBias []float32
	for _, p := range Params(m) {
		v, _ := p.Value.Const.Float32s()
		switch {
		case p.Op == "Conv" && p.Role == Weight:
			convW = append(convW, v...)
		case p.Op == "BatchNormalization" && p.Role == Scale:
			bnScale = append(bnScale, v...)
		case p.Op == "BatchNormalization" && p.Role == Bias:
			bnBias = append(bnBias, v...)
		}
	}
	if mu, sd := stats(convW); math.Abs(mu) > 0.002 || math.Abs(sd-0.02) > 0.001 {
		t.Errorf("conv weights: mean %g std %g, want N(0, 0.02)", mu, sd)
	}
	if mu, sd := stats(bnScale); math.Abs(mu-1) > 0.01 || math.Abs(sd-0.02) > 0.006 {
		t.Errorf("BN scale: mean %g std %g, want N(1, 0.02)", mu, sd)
	}
	for _, x := range bnBias {
		if x != 0 {
			t.Fatalf("BN bias %g, want 0", x)
		}
	}
	again := load(t, "../testdata/models/resnet_tiny_op13_bn/model.onnx")
	Apply(again, Initialize(DCGAN(), All(), 42))
	if !bytes.Equal(encode(t, m), encode(t, again)) {
		t.Error("the same seed gave different weights")
	}
	other := load(t, "../testdata/models/resnet_tiny_op13_bn/model.onnx")
	Apply(other, Initialize(DCGAN(), All(), 43))
	if bytes.Equal(encode(t, m), encode(t, other)) {
		t.Error("different seeds gave the same weights")
	}
}

func TestInitializersMatchTheirFormulas(t *testing.T) {
	// fan_in = 8*3*3 = 72, fan_out = 16*9 = 144 for a Conv weight [16, 8, 3, 3].
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}}
	m.Graph = tinyGraph(t, func(g *onnx.Graph, x *onnx.Value) *onnx.Value {
		w := weight(t, g, "w", 16, 8, 3, 3)
		w.Const, _ = onnx.FromFloat32("w", []int64{16, 8, 3, 3}, make([]float32, 16*8*9))
		return g.AddNode("Conv", "c", []*onnx.Value{x, w}, []string{"y"}).Outputs[0]
	})
	for _, c := range []struct {
		init Init
		std  float64
	}{
		{XavierUniform{}, math.Sqrt(2.0 / (72 + 144))},
		{XavierNormal{}, math.Sqrt(2.0 / (72 + 144))},
		{KaimingNormal{}, math.Sqrt(2.0 / 72)},
		{KaimingNormal{Mode: FanOut}, math.Sqrt(2.0 / 144)},
		{KaimingUniform{A: math.Sqrt(5)}, 1 / math.Sqrt(72) / math.Sqrt(3)},
		{LinearDefault{}, 1 / math.Sqrt(72) / math.Sqrt(3)},
	} {
		c2, _ := m.Clone()
		if err := Apply(c2, Initialize([]Rule{{Init: c.init}}, All(), 5)); err != nil {
			t.Fatal(err)
		}
		v, _ := c2.Graph.Initializers[0].Const.Float32s()
		if _, sd := stats(v); math.Abs(sd-c.std)/c.std > 0.08 {
			t.Errorf("%v: std %g, want %g", c.init, sd, c.std)
		}
	}
}

// Normalisation inside the model: feeding x gives what the original model
// gives for (x - mean) / std.
func TestNormalizeMatchesManualNormalisation(t *testing.T) {
	orig := load(t, "../testdata/models/resnet_tiny_op13_folded/model.onnx")
	m, _ := orig.Clone()
	mean, std := []float32{0.485, 0.456, 0.406}, []float32{0.229, 0.224, 0.225}
	if err := Apply(m, Normalize("input", mean, std)); err != nil {
		t.Fatal(err)
	}
	if m.Graph.Inputs[0].Name != "input" || m.Graph.Inputs[0].Type.Shape.String() != "[batch,3,64,64]" {
		t.Fatalf("input after normalize: %q %v", m.Graph.Inputs[0].Name, m.Graph.Inputs[0].Type)
	}
	run := func(m *onnx.Model, x []float32) []float32 {
		p, err := runtime.Compile(m, runtime.Options{})
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.Run(tensor.New(tensor.WithShape(1, 3, 64, 64), tensor.WithBacking(x)))
		if err != nil {
			t.Fatal(err)
		}
		return out[0].Data().([]float32)
	}
	x := make([]float32, 3*64*64)
	xn := make([]float32, len(x))
	for i := range x {
		x[i] = float32(i%251) / 251
		c := i / (64 * 64)
		xn[i] = (x[i] - mean[c]) / std[c]
	}
	a, b := run(m, x), run(orig, xn)
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-5 {
			t.Fatalf("output %d: %g with normalisation inside, %g outside", i, a[i], b[i])
		}
	}
}

func TestCutAndFind(t *testing.T) {
	m := load(t, "../testdata/models/resnet_tiny_op13_bn/model.onnx")
	chains := FindChains(m.Graph, "Conv", "BatchNormalization", "Relu")
	if len(chains) != 9 { // stem + the first conv of each of the 8 blocks
		t.Errorf("Conv-BN-Relu chains: %d, want 9", len(chains))
	}
	if n := len(Find(m.Graph, Query{Name: "/layer4/*", Op: "Conv"})); n != 5 {
		t.Errorf("layer4 convs: %d, want 5", n)
	}
	h, _ := FindHead(m.Graph)
	feat := h.Node.Input(0).Name
	if err := Apply(m, Cut(feat)); err != nil {
		t.Fatal(err)
	}
	if s := m.Graph.Outputs[0].Type.Shape.String(); s != "[batch,64]" {
		t.Errorf("cut output shape %s", s)
	}
	if len(Find(m.Graph, Query{Op: "Gemm"})) != 0 {
		t.Error("the head survived the cut")
	}
	if err := Apply(m, Cut("no-such-value")); err == nil {
		t.Error("cut at a missing value accepted")
	}
}

// InsertAfter routes readers through new nodes; a graph output keeps its
// name. Here: a Softmax after the logits of the CNN.
func TestInsertAfterOutput(t *testing.T) {
	m := load(t, "../testdata/models/cnn/model.onnx")
	logits := m.Graph.Outputs[0].Name
	err := Apply(m, InsertAfter(logits, func(g *onnx.Graph, v *onnx.Value) (*onnx.Value, error) {
		sm := g.AddNode("Softmax", "probs", []*onnx.Value{v}, []string{"probs"},
			&onnx.Attribute{Name: "axis", Type: onnx.AttrInt, Int: 1})
		return sm.Outputs[0], nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	out := m.Graph.Outputs[0]
	if out.Name != logits || out.Producer() == nil || out.Producer().OpType != "Softmax" {
		t.Fatalf("output %q made by %v", out.Name, out.Producer())
	}
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Run(tensor.New(tensor.WithShape(2, 1, 28, 28), tensor.Of(tensor.Float32)))
	if err != nil {
		t.Fatal(err)
	}
	probs := res[0].Data().([]float32)
	for r := 0; r < 2; r++ {
		var s float32
		for _, v := range probs[r*10 : r*10+10] {
			s += v
		}
		if math.Abs(float64(s-1)) > 1e-5 {
			t.Errorf("row %d sums to %g after the inserted Softmax", r, s)
		}
	}
	if err := Apply(m, InsertAfter("nope", nil)); err == nil || !strings.Contains(err.Error(), `"nope": no such value`) {
		t.Errorf("missing value: %v", err)
	}
}
