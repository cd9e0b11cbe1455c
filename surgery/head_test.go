package surgery

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
)

func load(t *testing.T, path string) *onnx.Model {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFindHeadOnExportedModels(t *testing.T) {
	cases := []struct {
		model   string
		node    string
		in, out int64
	}{
		{"cnn", "/fc2/Gemm", 32, 10},
		{"stn", "/fc2/Gemm", 50, 10},
		{"resnet_tiny_op13_folded", "/fc/Gemm", 64, 10},
		{"resnet_tiny_op13_bn", "/fc/Gemm", 64, 10},
		{"resnet_tiny_op17_folded", "/fc/Gemm", 64, 10},
		{"resnet_tiny_op17_bn", "/fc/Gemm", 64, 10},
	}
	check := func(t *testing.T, path, node string, in, out int64) {
		m := load(t, path)
		h, err := FindHead(m.Graph)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return
		}
		if h.Node.Name != node || h.InFeatures != in || h.OutFeatures != out {
			t.Errorf("%s: head %q %d->%d, want %q %d->%d", path, h.Node.Name, h.InFeatures, h.OutFeatures, node, in, out)
		}
	}
	for _, c := range cases {
		check(t, filepath.Join("../testdata/models", c.model, "model.onnx"), c.node, c.in, c.out)
	}
	t.Run("big", func(t *testing.T) {
		for _, path := range testenv.Big.Glob(t, "resnet18_*/model.onnx", 4) {
			check(t, path, "/fc/Gemm", 512, 1000)
		}
	})
}

// tiny builds input -> Flatten -> op(s) -> output graphs for the head shapes
// PyTorch does not give us in the test models.
func tinyGraph(t *testing.T, build func(g *onnx.Graph, x *onnx.Value) *onnx.Value) *onnx.Graph {
	g := &onnx.Graph{Name: "g"}
	x := g.AddInput("x", onnx.TensorType(onnx.Float, 1, 8, 4, 4))
	g.Outputs = []*onnx.Value{build(g, x)}
	return g
}

func weight(t *testing.T, g *onnx.Graph, name string, dims ...int64) *onnx.Value {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	w, err := onnx.FromFloat32(name, dims, make([]float32, n))
	if err != nil {
		t.Fatal(err)
	}
	return g.AddInitializer(w)
}

func TestFindHeadMatMulAdd(t *testing.T) {
	g := tinyGraph(t, func(g *onnx.Graph, x *onnx.Value) *onnx.Value {
		f := g.AddNode("Flatten", "flat", []*onnx.Value{x}, []string{"f"}).Outputs[0]
		mm := g.AddNode("MatMul", "mm", []*onnx.Value{f, weight(t, g, "W", 128, 7)}, []string{"mm"}).Outputs[0]
		add := g.AddNode("Add", "bias", []*onnx.Value{mm, weight(t, g, "b", 7)}, []string{"logits"}).Outputs[0]
		return g.AddNode("Softmax", "sm", []*onnx.Value{add}, []string{"probs"}).Outputs[0]
	})
	h, err := FindHead(g)
	if err != nil {
		t.Fatal(err)
	}
	if h.Node.Name != "mm" || h.BiasAdd == nil || h.BiasAdd.Name != "bias" || h.InFeatures != 128 || h.OutFeatures != 7 || len(h.Tail) != 1 {
		t.Errorf("got head %q bias %v %d->%d tail %d", h.Node.Name, h.BiasAdd, h.InFeatures, h.OutFeatures, len(h.Tail))
	}
}

func TestFindHeadSqueezenetStyle(t *testing.T) {
	g := tinyGraph(t, func(g *onnx.Graph, x *onnx.Value) *onnx.Value {
		c := g.AddNode("Conv", "final_conv", []*onnx.Value{x, weight(t, g, "W", 5, 8, 1, 1)}, []string{"c"}).Outputs[0]
		r := g.AddNode("Relu", "relu", []*onnx.Value{c}, []string{"r"}).Outputs[0]
		p := g.AddNode("GlobalAveragePool", "pool", []*onnx.Value{r}, []string{"p"}).Outputs[0]
		return g.AddNode("Flatten", "flat", []*onnx.Value{p}, []string{"logits"}).Outputs[0]
	})
	h, err := FindHead(g)
	if err != nil {
		t.Fatal(err)
	}
	if h.Node.Name != "final_conv" || h.InFeatures != 8 || h.OutFeatures != 5 {
		t.Errorf("got head %q %d->%d", h.Node.Name, h.InFeatures, h.OutFeatures)
	}
}

func TestNoHeadListsCandidates(t *testing.T) {
	g := tinyGraph(t, func(g *onnx.Graph, x *onnx.Value) *onnx.Value {
		f := g.AddNode("Flatten", "flat", []*onnx.Value{x}, []string{"f"}).Outputs[0]
		mm := g.AddNode("Gemm", "fc", []*onnx.Value{f, weight(t, g, "W", 128, 16)}, []string{"h"}).Outputs[0]
		return g.AddNode("Tanh", "squash", []*onnx.Value{mm}, []string{"y"}).Outputs[0]
	})
	_, err := FindHead(g)
	if err == nil {
		t.Fatal("found a head behind a Tanh")
	}
	for _, want := range []string{`Tanh node "squash"`, `"fc" (Gemm 128->16)`, "--head"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	h, err := HeadAt(g, "fc")
	if err != nil || h.OutFeatures != 16 {
		t.Errorf("HeadAt(fc) = %v, %v", h, err)
	}
	if _, err := HeadAt(g, "nope"); err == nil || !strings.Contains(err.Error(), `no node named "nope"`) {
		t.Errorf("HeadAt(nope) error = %v", err)
	}
}
