package contract_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/surgery"
)

func load(t *testing.T, name string) *onnx.Model {
	t.Helper()
	m, err := onnx.Load("../../testdata/models/" + name + "/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func derive(t *testing.T, m *onnx.Model) *contract.Contract {
	t.Helper()
	c, err := contract.Derive(m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// What the graph says, with the documented defaults for the rest.
func TestDeriveFromGraph(t *testing.T) {
	for _, tc := range []struct {
		model      string
		kind       contract.Kind
		activation string
		channels   int
		size       int
		resize     int
		mean       []float32
	}{
		{"lenet_mnist", contract.LogProbabilities, "LogSoftmax", 1, 28, 28, nil},
		{"cnn", contract.Logits, "", 1, 28, 28, nil},
		{"resnet_tiny_op13_bn", contract.Logits, "", 3, 64, 73, contract.ImageNetMean},
	} {
		c := derive(t, load(t, tc.model))
		in, out := c.Input, c.Output
		if in.Name != "input" || in.Layout != contract.NCHW || in.Channels != tc.channels || in.Height != tc.size || in.Width != tc.size ||
			in.Resize != tc.resize || in.PixelScale != 1 || !slices.Equal(in.Mean, tc.mean) || in.NormalizedInside {
			t.Errorf("%s: input %+v", tc.model, in)
		}
		if out.Name != "output" || out.Kind != tc.kind || out.Activation != tc.activation || out.NumClasses != 10 || out.Classes != nil {
			t.Errorf("%s: output %+v", tc.model, out)
		}
		if len(c.Notes) == 0 {
			t.Errorf("%s: no notes on what was inferred", tc.model)
		}
		if err := in.Check(); err != nil {
			t.Errorf("%s: %v", tc.model, err)
		}
	}
}

// A stored contract is what Derive returns, graph facts aside.
func TestStoreThenDerive(t *testing.T) {
	m := load(t, "resnet_tiny_op13_bn")
	c := derive(t, m)
	c.Input.Resize = 80
	c.Input.Mean, c.Input.Std = []float32{0.5}, []float32{0.25}
	c.Input.PixelScale = 255
	c.Output.Classes = strings.Fields("a b c d e f g h i j")
	if err := contract.Store(m, c); err != nil {
		t.Fatal(err)
	}
	back := derive(t, m)
	if back.Input.Resize != 80 || !slices.Equal(back.Input.Mean, []float32{0.5}) || !slices.Equal(back.Input.Std, []float32{0.25}) ||
		back.Input.PixelScale != 255 || !slices.Equal(back.Output.Classes, c.Output.Classes) || len(back.Notes) != 0 {
		t.Errorf("stored %+v %+v, derived %+v %+v (notes %q)", c.Input, c.Output, back.Input, back.Output, back.Notes)
	}
	// Scale 255 with mean 0.5, std 0.25 on 0-255 values is (p*255-0.5)/0.25
	// on [0, 1] pixels: mean 0.5/255, std 0.25/255.
	mean, std := back.Input.PixelNormalization()
	if math.Abs(float64(mean[0])-0.5/255) > 1e-9 || math.Abs(float64(std[0])-0.25/255) > 1e-9 {
		t.Errorf("pixel normalisation %v %v", mean, std)
	}

	// A contract that contradicts the graph is refused when stored.
	bad := *c
	bad.Output.Classes = []string{"a", "b"}
	if err := contract.Store(m, &bad); err == nil || !strings.Contains(err.Error(), `output "output": 2 class names for 10 classes`) {
		t.Errorf("mismatched classes stored: %v", err)
	}
	bad.Output.NumClasses = 0 // the graph still knows
	if err := contract.Store(m, &bad); err == nil || !strings.Contains(err.Error(), `2 class names, but output "output" has 10 classes`) {
		t.Errorf("mismatched classes stored: %v", err)
	}
	bad = *c
	bad.Input.Height = 32
	if err := contract.Store(m, &bad); err == nil || !strings.Contains(err.Error(), `input is 3x32x64, but input "input" has shape [batch,3,64,64]`) {
		t.Errorf("mismatched size stored: %v", err)
	}
}

func TestStoredContractErrors(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{`{`, "metadata graft.contract is not a graft contract"},
		{`{"version":2,"input":{},"output":{"kind":"logits"}}`, "version 2; this graft reads version 1"},
		{`{"version":1,"input":{"layout":"NCHW","channels":3,"height":64,"width":64,"resize":73,"pixel_scale":1},"output":{"kind":"odds"}}`, `kind "odds"`},
		{`{"version":1,"input":{"layout":"NCHW","channels":3,"height":64,"width":64,"resize":73,"pixel_scale":1,"mean":[0.5],"std":[0]},"output":{"kind":"logits"}}`, "std[0] is 0"},
		{`{"version":1,"input":{"layout":"NCHW","channels":3,"height":64,"width":64,"resize":73,"pixel_scale":1},"output":{"kind":"logits"},"extra":1}`, `unknown field "extra"`},
		// The graph fixes 64x64 and 3 channels.
		{`{"version":1,"input":{"layout":"NCHW","channels":1,"height":64,"width":64,"resize":73,"pixel_scale":1},"output":{"kind":"logits"}}`, "says the input's channels is 1, but input \"input\" has shape [batch,3,64,64]"},
	} {
		m := load(t, "resnet_tiny_op13_bn")
		m.SetMetadata(contract.Key, tc.value)
		if _, err := contract.Derive(m); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want %q", tc.value, err, tc.want)
		}
	}
	// Class names stored for another class count are set aside, with a
	// warning.
	m := load(t, "cnn")
	m.SetMetadata(contract.Key, `{"version":1,"input":{"layout":"NCHW","channels":1,"height":28,"width":28,"resize":28,"pixel_scale":1},"output":{"kind":"logits","classes":["x","y"]}}`)
	c := derive(t, m)
	if c.Output.Classes != nil || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "names 2 classes, but output \"output\" has 10") {
		t.Errorf("classes %q, warnings %q", c.Output.Classes, c.Warnings)
	}
}

// appendNode makes op the model's new last node, reading the old output.
func appendNode(t *testing.T, m *onnx.Model, op string, attrs ...*onnx.Attribute) {
	t.Helper()
	g := m.Graph
	n := g.AddNode(op, "appended_"+op, []*onnx.Value{g.Outputs[0]}, []string{"out_" + op}, attrs...)
	n.Outputs[0].Type = g.Outputs[0].Type
	g.Outputs[0] = n.Outputs[0]
}

// The output kind comes from the last node, looking through ops that keep
// the scores.
func TestOutputKind(t *testing.T) {
	for _, tc := range []struct {
		ops  []string
		kind contract.Kind
		act  string
	}{
		{[]string{"Softmax"}, contract.Probabilities, "Softmax"},
		{[]string{"Sigmoid"}, contract.Probabilities, "Sigmoid"},
		{[]string{"LogSoftmax", "Identity"}, contract.LogProbabilities, "LogSoftmax"},
		{[]string{"Softmax", "Flatten", "Identity"}, contract.Probabilities, "Softmax"},
		{[]string{"Softmax", "Relu"}, contract.Logits, ""},
	} {
		m := load(t, "cnn")
		logits := m.Graph.Outputs[0].Name
		for _, op := range tc.ops {
			appendNode(t, m, op)
		}
		c := derive(t, m)
		if c.Output.Kind != tc.kind || c.Output.Activation != tc.act || (tc.act != "" && c.Output.Logits != logits) {
			t.Errorf("%v: %+v", tc.ops, c.Output)
		}
	}
	// A softmax over the batch axis does not make class probabilities.
	m := load(t, "cnn")
	appendNode(t, m, "Softmax", &onnx.Attribute{Name: "axis", Type: onnx.AttrInt, Int: 0})
	if c := derive(t, m); c.Output.Kind != contract.Logits {
		t.Errorf("softmax over axis 0: %+v", c.Output)
	}
}

// A model that normalises its input (surgery.Normalize, or an exporter's
// Sub and Div) takes pixels.
func TestNormalizationInside(t *testing.T) {
	m := load(t, "resnet_tiny_op13_bn")
	mean, std := []float32{0.1, 0.2, 0.3}, []float32{0.4, 0.5, 0.6}
	if err := surgery.Apply(m, surgery.Normalize("input", mean, std)); err != nil {
		t.Fatal(err)
	}
	for _, stored := range []bool{true, false} {
		if !stored {
			// Without the stored contract the graph still says it.
			var kept []onnx.Property
			for _, p := range m.Metadata {
				if p.Key != contract.Key {
					kept = append(kept, p)
				}
			}
			m.Metadata = kept
		}
		c := derive(t, m)
		if !c.Input.NormalizedInside || !slices.Equal(c.Input.Mean, mean) || !slices.Equal(c.Input.Std, std) {
			t.Errorf("stored %v: %+v", stored, c.Input)
		}
		if pm, ps := c.Input.PixelNormalization(); pm != nil || ps != nil {
			t.Errorf("stored %v: pixels get normalised again: %v %v", stored, pm, ps)
		}
	}
	// Any reader besides the Sub means the input is also used raw: no.
	m = load(t, "cnn")
	g := m.Graph
	g.AddNode("Identity", "other_reader", []*onnx.Value{g.Inputs[0]}, []string{"raw"})
	if c := derive(t, m); c.Input.NormalizedInside {
		t.Errorf("an input read twice counts as normalised inside")
	}
}

func TestReplaceHeadForgetsClassNames(t *testing.T) {
	m := load(t, "cnn")
	c := derive(t, m)
	c.Output.Classes = strings.Fields("0 1 2 3 4 5 6 7 8 9")
	if err := contract.Store(m, c); err != nil {
		t.Fatal(err)
	}
	if err := surgery.Apply(m, surgery.ReplaceHead(3, surgery.HeadOptions{})); err != nil {
		t.Fatal(err)
	}
	if c := derive(t, m); c.Output.NumClasses != 3 || c.Output.Classes != nil || len(c.Warnings) != 0 {
		t.Errorf("after a new 3-class head: %+v, warnings %q", c.Output, c.Warnings)
	}
}

func TestChannelsLast(t *testing.T) {
	m := load(t, "cnn")
	m.Graph.Inputs[0].Type = onnx.TensorType(onnx.Float, 1, 28, 28, 3)
	c := derive(t, m)
	err := c.Input.Check()
	if c.Input.Layout != contract.NHWC || err == nil || !strings.Contains(err.Error(), "channels last (NHWC)") {
		t.Errorf("layout %q, %v", c.Input.Layout, err)
	}
}

func TestOverride(t *testing.T) {
	c := derive(t, load(t, "cnn"))
	if err := c.Override(contract.Overrides{Crop: 32}); err == nil || !strings.Contains(err.Error(), "a 32x32 crop, but input \"input\" has shape [batch,1,28,28]") {
		t.Errorf("crop: %v", err)
	}
	if err := c.Override(contract.Overrides{Classes: []string{"a"}}); err == nil || !strings.Contains(err.Error(), "1 class names for the 10 classes") {
		t.Errorf("classes: %v", err)
	}
	if err := c.Override(contract.Overrides{Mean: []float32{0.5}}); err == nil {
		t.Errorf("a mean without a std")
	}
	if err := c.Override(contract.Overrides{Mean: []float32{0.5}, Std: []float32{0.5}, Resize: 40}); err != nil || c.Input.Resize != 40 || c.Input.Mean[0] != 0.5 {
		t.Errorf("%v: %+v", err, c.Input)
	}

	// A free size takes the crop, and its default resize.
	m := load(t, "cnn")
	m.Graph.Inputs[0].Type = onnx.TensorType(onnx.Float, 1, 1, -1, -1)
	m.Graph.Inputs[0].Type.Shape[2], m.Graph.Inputs[0].Type.Shape[3] = onnx.Symbolic("h"), onnx.Symbolic("w")
	c = derive(t, m)
	if c.Input.Height != contract.DefaultSize {
		t.Errorf("free size: %+v", c.Input)
	}
	if err := c.Override(contract.Overrides{Crop: 100}); err != nil || c.Input.Height != 100 || c.Input.Resize != 114 {
		t.Errorf("%v: %+v", err, c.Input)
	}

	// A normalisation given for a model that normalises itself is kept,
	// with a warning.
	m = load(t, "cnn")
	if err := surgery.Apply(m, surgery.Normalize("input", []float32{0.1}, []float32{0.3})); err != nil {
		t.Fatal(err)
	}
	c = derive(t, m)
	if err := c.Override(contract.Overrides{Mean: []float32{0.5}, Std: []float32{0.5}}); err != nil || len(c.Warnings) != 1 || c.Input.NormalizedInside {
		t.Errorf("%v, warnings %q, %+v", err, c.Warnings, c.Input)
	}
}

func TestProbabilities(t *testing.T) {
	scores := []float64{1, 3, 2}
	soft := contract.Output{Kind: contract.Logits}.Probabilities(scores)
	sum := 0.0
	for _, p := range soft {
		sum += p
	}
	if math.Abs(sum-1) > 1e-12 || !(soft[1] > soft[2] && soft[2] > soft[0]) || math.Abs(soft[1]-math.Exp(3)/(math.Exp(1)+math.Exp(2)+math.Exp(3))) > 1e-12 {
		t.Errorf("softmax %v", soft)
	}
	logp := []float64{math.Log(0.2), math.Log(0.5), math.Log(0.3)}
	if p := (contract.Output{Kind: contract.LogProbabilities}).Probabilities(logp); math.Abs(p[1]-0.5) > 1e-12 {
		t.Errorf("exp %v", p)
	}
	if p := (contract.Output{Kind: contract.Probabilities}).Probabilities([]float64{0.9, 0.8}); p[0] != 0.9 || p[1] != 0.8 {
		t.Errorf("as is %v", p)
	}
	if i := contract.Argmax([]float32{1, 5, 5, 2}); i != 1 {
		t.Errorf("argmax ties: %d", i)
	}
	if i := contract.Argmax([]float64{math.NaN(), 1, 3}); i != 2 {
		t.Errorf("argmax after NaN: %d", i)
	}
}
