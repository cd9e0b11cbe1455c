package surgery

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
)

// Replacing the head together with freezing or unfreezing stores a set of
// parameters the edited model has, whatever the order of the edits: the
// selectors see the graph after the replacement (issue 8 §3, where
// "--replace-head 3 --unfreeze all" stored "fc2.weight__replaced").
func TestReplaceHeadWithFreezeStoresExistingNames(t *testing.T) {
	cnnAll := []string{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
	cases := []struct {
		model string
		edits []Edit
		want  []string
	}{
		{"cnn", []Edit{Unfreeze(All())}, cnnAll},
		{"cnn", []Edit{Freeze(OpType("Conv"))}, []string{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}},
		{"cnn", []Edit{Unfreeze(HeadParams())}, cnnAll},
		{"cnn", []Edit{Freeze(Backbone())}, []string{"fc2.weight", "fc2.bias"}},
		{"cnn", []Edit{Freeze(Glob("fc1.*"))}, []string{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc2.weight", "fc2.bias"}},
		{"cnn", []Edit{Freeze(HeadParams())}, []string{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias"}},
		{"cnn", []Edit{Freeze(All()), Unfreeze(Glob("fc?.bias"))}, []string{"fc1.bias", "fc2.bias"}},
		{"resnet_tiny_op17_bn", []Edit{Freeze(Backbone()), Unfreeze(OpType("BatchNormalization"))}, nil},
	}
	for _, c := range cases {
		path := filepath.Join("../testdata/models", c.model, "model.onnx")
		var stored [2][]string
		for order := range 2 {
			m := load(t, path)
			nParams := len(Params(m))
			edits := append([]Edit{ReplaceHead(3, HeadOptions{Seed: 1})}, c.edits...)
			if order == 1 {
				edits = append(slices.Clone(c.edits), ReplaceHead(3, HeadOptions{Seed: 1}))
			}
			if err := Apply(m, edits...); err != nil {
				t.Fatalf("%s %d: %v", c.model, order, err)
			}
			if n := len(Params(m)); n != nParams {
				t.Errorf("%s: %d parameters after replacing the head, want %d", c.model, n, nParams)
			}
			// The set survives a save and load, and the runtime has every
			// parameter it names.
			b := encode(t, m)
			m2, err := onnx.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Trainable(m2)
			if err != nil {
				t.Fatalf("%s %d: %v", c.model, order, err)
			}
			p, err := runtime.Compile(m2, runtime.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range got {
				if p.Param(n) == nil {
					t.Errorf("%s %d: the trainable set names %q, which the compiled model lacks", c.model, order, n)
				}
			}
			stored[order] = got
		}
		if c.want != nil && !slices.Equal(stored[0], c.want) {
			t.Errorf("%s, head replaced first: trainable %v, want %v", c.model, stored[0], c.want)
		}
		if !slices.Equal(stored[0], stored[1]) {
			t.Errorf("%s: the order of the edits matters: %v with the head replaced first, %v last", c.model, stored[0], stored[1])
		}
	}
	// ResNet: the head and the 20 BatchNormalization scales and biases,
	// never their running statistics.
	m := load(t, "../testdata/models/resnet_tiny_op17_bn/model.onnx")
	if err := Apply(m, ReplaceHead(3, HeadOptions{}), Freeze(Backbone()), Unfreeze(OpType("BatchNormalization"))); err != nil {
		t.Fatal(err)
	}
	got, _ := Trainable(m)
	if len(got) != 42 || got[0] != "bn1.weight" || got[1] != "bn1.bias" || got[40] != "fc.weight" || got[41] != "fc.bias" {
		t.Errorf("resnet: %d trainable %v, want 42: the 40 BatchNormalization scales and biases and fc.weight, fc.bias", len(got), got)
	}
}

// A set written before the head was replaced keeps the head's names, in
// or out of it as the old head was.
func TestReplaceHeadKeepsStoredSet(t *testing.T) {
	m := load(t, "../testdata/models/cnn/model.onnx")
	if err := Apply(m, Freeze(HeadParams())); err != nil {
		t.Fatal(err)
	}
	if err := Apply(m, ReplaceHead(4, HeadOptions{})); err != nil {
		t.Fatal(err)
	}
	want := []string{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias"}
	if got, err := Trainable(m); err != nil || !slices.Equal(got, want) {
		t.Errorf("frozen head replaced: %v (%v), want %v", got, err, want)
	}
	if err := Apply(m, Freeze(Backbone()), Unfreeze(HeadParams())); err != nil {
		t.Fatal(err)
	}
	if err := Apply(m, ReplaceHead(5, HeadOptions{})); err != nil {
		t.Fatal(err)
	}
	if got, err := Trainable(m); err != nil || !slices.Equal(got, []string{"fc2.weight", "fc2.bias"}) {
		t.Errorf("trained head replaced: %v (%v), want [fc2.weight fc2.bias]", got, err)
	}
}

// A stored set naming a missing parameter cannot be written, and one read
// from a file is an error naming it.
func TestTrainableSetNamesOnlyParameters(t *testing.T) {
	m := load(t, "../testdata/models/cnn/model.onnx")
	if err := SetTrainable(m, []string{"fc2.weight", "fc2.weight__replaced"}); err == nil || err.Error() != `trainable set: "fc2.weight__replaced" is not a parameter of the model` {
		t.Errorf("SetTrainable with a missing name: %v", err)
	}
	if _, ok := m.MetadataValue(TrainableKey); ok {
		t.Error("a refused SetTrainable stored a set")
	}
	// What graft wrote before the fix.
	m.SetMetadata(TrainableKey, `["fc2.weight","fc2.bias","fc2.weight__replaced"]`)
	want := `the model's trainable set (metadata graft.trainable) names "fc2.weight__replaced", which is not a parameter of the model; redo the surgery that stored it`
	if _, err := Trainable(m); err == nil || err.Error() != want {
		t.Errorf("Trainable: %v, want %s", err, want)
	}
	if err := Apply(m, Unfreeze(All())); err == nil || err.Error() != "surgery: edit 1 of 1: "+want {
		t.Errorf("Unfreeze on the broken set: %v", err)
	}
	// An edit that leaves the set naming something missing is refused.
	m = load(t, "../testdata/models/cnn/model.onnx")
	err := Apply(m, func(m *onnx.Model) error {
		m.SetMetadata(TrainableKey, `["fc2.weight","ghost"]`)
		return nil
	})
	if err == nil || err.Error() != `surgery: the trainable set names "ghost", which is not a parameter of the edited model` {
		t.Errorf("an edit storing a missing name: %v", err)
	}
}

// Cut drops the parameters after the cut from a stored set.
func TestCutPrunesTrainableSet(t *testing.T) {
	m := load(t, "../testdata/models/cnn/model.onnx")
	if err := Apply(m, Freeze(OpType("Conv"))); err != nil {
		t.Fatal(err)
	}
	h, _ := FindHead(m.Graph)
	if err := Apply(m, Cut(h.Node.Input(0).Name)); err != nil {
		t.Fatal(err)
	}
	if got, err := Trainable(m); err != nil || !slices.Equal(got, []string{"fc1.weight", "fc1.bias"}) {
		t.Errorf("after the cut: %v (%v), want [fc1.weight fc1.bias]", got, err)
	}
}

// The constants Normalize puts in are part of the model's interface: not
// trained by default, not by "all", not re-initialised.
func TestNormalizationNeverTrains(t *testing.T) {
	m := load(t, "../testdata/models/cnn/model.onnx")
	if err := Apply(m, Normalize("input", []float32{0.5}, []float32{0.25})); err != nil {
		t.Fatal(err)
	}
	want := []string{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
	if got, _ := Trainable(m); !slices.Equal(got, want) {
		t.Errorf("default trainable set with normalisation: %v", got)
	}
	if err := Apply(m, Unfreeze(All()), Initialize([]Rule{{Init: Constant{3}}}, All(), 1)); err != nil {
		t.Fatal(err)
	}
	if got, _ := Trainable(m); !slices.Equal(got, want) {
		t.Errorf("after unfreezing all: %v", got)
	}
	for _, name := range []string{"input_mean", "input_std"} {
		v, _ := m.Graph.Value(name).Const.Float32s()
		if v[0] == 3 {
			t.Errorf("%s re-initialised", name)
		}
	}
}

// A head without a bias gets one, which trains if the weight did.
func TestReplaceHeadNewBiasJoinsTrainableSet(t *testing.T) {
	for _, trainHead := range []bool{true, false} {
		m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}}
		m.Graph = tinyGraph(t, func(g *onnx.Graph, x *onnx.Value) *onnx.Value {
			c := g.AddNode("Conv", "conv", []*onnx.Value{x, weight(t, g, "conv.weight", 4, 8, 1, 1)}, []string{"c"}).Outputs[0]
			f := g.AddNode("Flatten", "flat", []*onnx.Value{c}, []string{"f"}).Outputs[0]
			return g.AddNode("MatMul", "mm", []*onnx.Value{f, weight(t, g, "fc.weight", 64, 7)}, []string{"logits"}).Outputs[0]
		})
		sel := Backbone()
		if !trainHead {
			sel = HeadParams()
		}
		if err := Apply(m, Freeze(sel), ReplaceHead(3, HeadOptions{})); err != nil {
			t.Fatal(err)
		}
		want := []string{"fc.weight", "fc.bias"}
		if !trainHead {
			want = []string{"conv.weight"}
		}
		if got, err := Trainable(m); err != nil || !slices.Equal(got, want) {
			t.Errorf("head trained %v: %v (%v), want %v", trainHead, got, err, want)
		}
	}
}

// A malformed glob is an invalid pattern, not one that matches nothing.
func TestParseSelectorPatterns(t *testing.T) {
	for _, c := range []struct{ sel, err string }{
		{"[", `invalid pattern "[": "[" is not closed by "]"`},
		{"fc[12", `invalid pattern "fc[12": "[12" is not closed by "]"`},
		{"fc[]", `invalid pattern "fc[]": "[]" is not closed by "]"`},
		{"fc[2-1].weight", `invalid pattern "fc[2-1].weight": the range "2-1" runs backwards`},
		{`fc\`, `invalid pattern "fc\\": it ends in a lone \`},
		{"op:", `selector "op:" names no op type (op:Conv, op:Gemm, ...)`},
		{"prefix:", `selector "prefix:" names no prefix`},
		{"", "empty selector"},
	} {
		if _, err := ParseSelector(c.sel); err == nil || err.Error() != c.err {
			t.Errorf("ParseSelector(%q): %v, want %s", c.sel, err, c.err)
		}
	}
	m := load(t, "../testdata/models/cnn/model.onnx")
	for _, c := range []struct {
		sel  string
		want []string
	}{
		{"fc[12].weight", []string{"fc1.weight", "fc2.weight"}},
		{"fc[!1].*", []string{"fc2.weight", "fc2.bias"}},
		{"fc[^1].*", []string{"fc2.weight", "fc2.bias"}},
		{"conv[1-2].bias", []string{"conv1.bias", "conv2.bias"}},
		{`fc2\.b*`, []string{"fc2.bias"}},
		{"*.b?as", []string{"conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias"}},
		{"fc2.weight[", nil},
	} {
		sel, err := ParseSelector(c.sel)
		if c.want == nil {
			if err == nil {
				t.Errorf("ParseSelector(%q) accepted", c.sel)
			}
			if Glob(c.sel)(Params(m)[0]) || len(Find(m.Graph, Query{Name: c.sel})) != 0 {
				t.Errorf("the malformed glob %q matched", c.sel)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ParseSelector(%q): %v", c.sel, err)
		}
		var got []string
		for _, p := range Params(m) {
			if sel(p) {
				got = append(got, p.Name)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%q selects %v, want %v", c.sel, got, c.want)
		}
	}
	// Classes with the characters a regexp class treats specially.
	for _, c := range []struct {
		glob, name string
		match      bool
	}{
		{"a[]]b", "a]b", true},
		{"a[-x]b", "a-b", true},
		{`a[\-x]b`, "a-b", true},
		{`a[\-x]b`, "awb", false},
		{"a[x^]b", "a^b", true},
		{`a[\\]b`, `a\b`, true},
		{"/layer4/*", "/layer4/layer4.0/conv1/Conv", true},
	} {
		if got := Glob(c.glob)(Param{Name: c.name}); got != c.match {
			t.Errorf("Glob(%q) on %q: %v", c.glob, c.name, got)
		}
	}
}
