package train

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/memlimit"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

func loadModel(t *testing.T, name string) *onnx.Model {
	t.Helper()
	m, err := onnx.Load("../../testdata/models/" + name + "/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// images returns n seeded images [n, 3, 64, 64] in [0, 1) and labels in 0..9.
func images(n int, seed int64) (*tensor.Dense, []int) {
	rng := rand.New(rand.NewSource(seed))
	d := make([]float32, n*3*64*64)
	for i := range d {
		d[i] = rng.Float32()
	}
	labels := make([]int, n)
	for i := range labels {
		labels[i] = rng.Intn(10)
	}
	return tensor.New(tensor.WithShape(n, 3, 64, 64), tensor.WithBacking(d)), labels
}

// Training the head on cached features is training the whole model with
// the backbone frozen: the same loss at every step, the same weights after.
func TestFitHeadOnFeaturesEqualsFrozenBackbone(t *testing.T) {
	head := []string{"fc.weight", "fc.bias"}
	x, labels := images(12, 1)
	vx, vlabels := images(6, 2)
	cfg := func(losses *[]float64) Config {
		opt, _ := NewSGD(SGDOptions{LR: 0.05, Momentum: 0.9, Nesterov: true, WeightDecay: 1e-3})
		return Config{Epochs: 2, Optimizer: opt, Params: head, Schedule: StepLR{StepSize: 1, Gamma: 0.5},
			OnBatch: func(s BatchStats) { *losses = append(*losses, s.Loss) }}
	}

	// The whole model, backbone frozen.
	whole := compile(t, loadModel(t, "resnet_tiny_op13_bn"))
	var want []float64
	hw, err := Fit(context.Background(), whole, memory(t, x, labels, 4, true, 3), memory(t, vx, vlabels, 4, false, 0), cfg(&want))
	if err != nil {
		t.Fatal(err)
	}

	// Split, cache, train the head.
	full := compile(t, loadModel(t, "resnet_tiny_op13_bn"))
	ext, hm, err := SplitAtHead(full.Model(), head)
	if err != nil {
		t.Fatal(err)
	}
	extractor, headProg := compile(t, ext), compile(t, hm)
	var progress []int
	feats, err := CacheFeatures(context.Background(), extractor, memory(t, x, labels, 4, true, 3), func(done, total int) {
		if total != 12 {
			t.Errorf("progress total %d", total)
		}
		progress = append(progress, done)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(progress, []int{4, 8, 12}) {
		t.Errorf("progress %v", progress)
	}
	vfeats, err := CacheFeatures(context.Background(), extractor, memory(t, vx, vlabels, 4, false, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []float64
	checkpoints := 0
	c := cfg(&got)
	c.Checkpoint = func(epoch int, s EpochStats, best bool) error {
		checkpoints++
		// The whole model's program already holds the trained head.
		if !slices.Equal(full.Param("fc.weight").Value.Data().([]float32), headProg.Param("fc.weight").Value.Data().([]float32)) {
			t.Error("at a checkpoint the whole model does not hold the head's weights")
		}
		return nil
	}
	hh, err := FitHeadOnFeatures(context.Background(), full, headProg, feats, vfeats, c)
	if err != nil {
		t.Fatal(err)
	}
	if checkpoints != 2 || len(got) != 6 || len(want) != 6 {
		t.Fatalf("%d checkpoints, %d and %d steps", checkpoints, len(got), len(want))
	}
	worst := 0.0
	for i := range got {
		rel := math.Abs(got[i]-want[i]) / math.Abs(want[i])
		worst = max(worst, rel)
		if rel > 1e-5 {
			t.Errorf("step %d: loss %.7g on features, %.7g on the whole model", i+1, got[i], want[i])
		}
	}
	t.Logf("max relative loss difference over %d steps: %.3g", len(got), worst)
	for e := range hw.Epochs {
		a, b := hw.Epochs[e], hh.Epochs[e]
		if a.Accuracy != b.Accuracy || math.Abs(a.Val.Loss-b.Val.Loss) > 1e-5*a.Val.Loss || a.Val.Accuracy != b.Val.Accuracy {
			t.Errorf("epoch %d: whole %+v %+v, features %+v %+v", e, a, *a.Val, b, *b.Val)
		}
	}
	for _, name := range head {
		a, b := whole.Param(name).Value.Data().([]float32), full.Param(name).Value.Data().([]float32)
		for i := range a {
			if math.Abs(float64(a[i]-b[i])) > 1e-5 {
				t.Fatalf("%s[%d]: %g trained whole, %g trained on features", name, i, a[i], b[i])
			}
		}
	}
	// Features computed batch by batch (StreamFeatures) train the same.
	sfull := compile(t, loadModel(t, "resnet_tiny_op13_bn"))
	sext, shm, err := SplitAtHead(sfull.Model(), head)
	if err != nil {
		t.Fatal(err)
	}
	sextractor, err := runtime.Compile(sext, runtime.Options{FixedWeights: true})
	if err != nil {
		t.Fatal(err)
	}
	var streamedLosses []float64
	hs, err := FitHeadOnFeatures(context.Background(), sfull, compile(t, shm),
		StreamFeatures(memory(t, x, labels, 4, true, 3), sextractor), StreamFeatures(memory(t, vx, vlabels, 4, false, 0), sextractor), cfg(&streamedLosses))
	if err != nil {
		t.Fatal(err)
	}
	if len(streamedLosses) != len(want) {
		t.Fatalf("%d steps streamed, %d whole", len(streamedLosses), len(want))
	}
	for i := range want {
		if rel := math.Abs(streamedLosses[i]-want[i]) / math.Abs(want[i]); rel > 1e-5 {
			t.Errorf("step %d: loss %.7g on streamed features, %.7g on the whole model", i+1, streamedLosses[i], want[i])
		}
	}
	for e := range hw.Epochs {
		if a, b := hw.Epochs[e], hs.Epochs[e]; a.Accuracy != b.Accuracy || a.Val.Accuracy != b.Val.Accuracy {
			t.Errorf("epoch %d: whole %+v, streamed features %+v", e, a, b)
		}
	}
	// The backbone is untouched in both.
	orig := compile(t, loadModel(t, "resnet_tiny_op13_bn"))
	for _, prm := range orig.Params() {
		if strings.HasPrefix(prm.Name, "fc.") {
			continue
		}
		if !slices.Equal(prm.Value.Data().([]float32), full.Param(prm.Name).Value.Data().([]float32)) ||
			!slices.Equal(prm.Value.Data().([]float32), whole.Param(prm.Name).Value.Data().([]float32)) {
			t.Errorf("%s changed", prm.Name)
		}
	}
}

// unordered hides a source's Order method.
type unordered struct{ dataset.Source }

// A source that is not dataset.Ordered is cached in the order it yields, and
// replayed in that order every epoch.
func TestCacheFeaturesUnordered(t *testing.T) {
	x, labels := images(5, 4)
	ext, _, err := SplitAtHead(loadModel(t, "resnet_tiny_op13_bn"), nil)
	if err != nil {
		t.Fatal(err)
	}
	extractor := compile(t, ext)
	src := unordered{memory(t, x, labels, 2, true, 9)}
	feats, err := CacheFeatures(context.Background(), extractor, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	for epoch := range 2 {
		var gotLabels []int
		var got []float32
		for b, err := range feats.Batches(epoch) {
			if err != nil {
				t.Fatal(err)
			}
			if s := b.X.Shape(); s[1] != 64 {
				t.Fatalf("features of shape %v", s)
			}
			gotLabels = append(gotLabels, b.Labels...)
			got = append(got, b.X.Data().([]float32)...)
		}
		var wantLabels []int
		var want []float32
		for b := range src.Batches(0) {
			out, err := extractor.Run(b.X)
			if err != nil {
				t.Fatal(err)
			}
			wantLabels = append(wantLabels, b.Labels...)
			want = append(want, out[0].Data().([]float32)...)
		}
		if !slices.Equal(gotLabels, wantLabels) || !slices.Equal(got, want) {
			t.Errorf("epoch %d: cached features or labels differ from the source's first epoch", epoch)
		}
	}
}

func TestSplitAtHeadRefuses(t *testing.T) {
	if _, _, err := SplitAtHead(loadModel(t, "resnet_tiny_op13_bn"), []string{"fc.weight", "layer4.1.bn2.weight"}); err == nil ||
		!strings.Contains(err.Error(), `"layer4.1.bn2.weight" is trained but is not a parameter of the head`) {
		t.Errorf("a backbone parameter: %v", err)
	}
	// Dropout before the head draws new masks at every step.
	m := mlp(t, 1, false)
	g := m.Graph
	fc2 := g.Node("fc2")
	drop := g.AddNode("Dropout", "drop", []*onnx.Value{fc2.Inputs[0]}, []string{"dropped"})
	fc2.Inputs[0] = drop.Outputs[0]
	if err := g.TopoSort(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := SplitAtHead(m, []string{"fc2.weight"}); err == nil || !strings.Contains(err.Error(), "Dropout") {
		t.Errorf("Dropout in the frozen part: %v", err)
	}
	// ... but not one whose ratio is the constant 0 (Swin's attention
	// Dropout, exported in training form from an eval-mode model).
	for _, c := range []struct {
		ratio float32
		ok    bool
	}{{0, true}, {0.1, false}} {
		r, err := onnx.FromFloat32(fmt.Sprintf("ratio%g", c.ratio), nil, []float32{c.ratio})
		if err != nil {
			t.Fatal(err)
		}
		tm, _ := onnx.NewTensor(fmt.Sprintf("train%g", c.ratio), onnx.Bool, nil, []byte{1})
		drop.Inputs = []*onnx.Value{drop.Inputs[0], g.AddInitializer(r), g.AddInitializer(tm)}
		_, _, err = SplitAtHead(m, []string{"fc2.weight"})
		if (err == nil) != c.ok {
			t.Errorf("Dropout of constant ratio %g in the frozen part: error %v", c.ratio, err)
		}
	}
}

// The features' memory is checked after the first batch, before the rest
// are computed.
func TestCacheFeaturesMemory(t *testing.T) {
	x, labels := images(5, 4)
	ext, _, err := SplitAtHead(loadModel(t, "resnet_tiny_op13_bn"), nil)
	if err != nil {
		t.Fatal(err)
	}
	extractor := compile(t, ext)
	src := unordered{memory(t, x, labels, 1, true, 9)}
	// Compile the session for batches of 1 first: it needs more than the
	// limit below.
	for b := range src.Batches(0) {
		if _, err := extractor.Run(b.X); err != nil {
			t.Fatal(err)
		}
		break
	}
	defer memlimit.Set(0, "")
	memlimit.Set(2*5*64*4-1, "--memory-limit")
	batches := 0
	_, err = CacheFeatures(context.Background(), extractor, src, func(int, int) { batches++ })
	want := "cache features: the features of 5 examples ([64] each) needs 2.5 KiB, over graft's memory limit of 2.5 KiB (--memory-limit); set GRAFT_MEMORY_LIMIT or --memory-limit to change it"
	if err == nil || err.Error() != want || batches != 0 {
		t.Errorf("after %d batches: got %v\nwant %s", batches, err, want)
	}
}
