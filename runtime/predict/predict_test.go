package predict_test

import (
	"context"
	"errors"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime/data"
	"github.com/graft-dev/graft/runtime/predict"
	"github.com/graft-dev/graft/surgery"
)

const (
	models     = "../../testdata/models/"
	tinyResNet = models + "resnet_tiny_op13_bn/model.onnx"
	photo      = "../data/testdata/shapes_317x211.jpg"
)

func load(t *testing.T, path string) *onnx.Model {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func predictPath(t *testing.T, m *onnx.Model, opts predict.Options, path string) *predict.Result {
	t.Helper()
	p, err := predict.New(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Path(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func scores(t *testing.T, r *predict.Result) []float32 {
	t.Helper()
	v, err := r.Scores.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A model that normalises its input itself (surgery.Normalize, as graft
// surgery --normalize makes it) gets pixels, normalised once: on the same
// photo it gives what the original model gives with the normalisation
// outside, whether the contract saying so is stored or read off the graph.
func TestNormalisedModelIsNormalisedOnce(t *testing.T) {
	orig := load(t, tinyResNet)
	want := predictPath(t, orig, predict.Options{}, photo)
	if p := want.Preprocessing; p == nil || !slices.Equal(p.Mean, contract.ImageNetMean) {
		t.Fatalf("the original model's preprocessing %+v: want ImageNet's normalisation outside", p)
	}
	inside := load(t, tinyResNet)
	if err := surgery.Apply(inside, surgery.Normalize("input", contract.ImageNetMean, contract.ImageNetStd)); err != nil {
		t.Fatal(err)
	}
	unstored := load(t, tinyResNet)
	if err := surgery.Apply(unstored, surgery.Normalize("input", contract.ImageNetMean, contract.ImageNetStd)); err != nil {
		t.Fatal(err)
	}
	unstored.Metadata = slices.DeleteFunc(unstored.Metadata, func(p onnx.Property) bool { return p.Key == contract.Key })
	for name, m := range map[string]*onnx.Model{"stored contract": inside, "graph": unstored} {
		got := predictPath(t, m, predict.Options{}, photo)
		if p := got.Preprocessing; p == nil || p.Mean != nil || p.Std != nil {
			t.Errorf("%s: preprocessing %+v: want pixels, no normalisation", name, p)
		}
		a, b := scores(t, got), scores(t, want)
		for i := range a {
			if math.Abs(float64(a[i]-b[i])) > 1e-5 {
				t.Errorf("%s: score %d is %v, the original model's %v", name, i, a[i], b[i])
			}
		}
		for i, c := range got.Examples[0].Top {
			w := want.Examples[0].Top[i]
			if c.Class != w.Class || math.Abs(c.Probability-w.Probability) > 1e-6 {
				t.Errorf("%s: top %d: %+v, the original model's %+v", name, i+1, c, w)
			}
		}
	}
}

// batchDependent makes the cnn's output depend on the batch it runs in:
// scores + their mean over the batch.
func batchDependent(t *testing.T) *onnx.Model {
	m := load(t, models+"cnn/model.onnx")
	g := m.Graph
	out := g.Outputs[0]
	mean := g.AddNode("ReduceMean", "batch_mean", []*onnx.Value{out}, []string{"batch_mean"},
		&onnx.Attribute{Name: "axes", Type: onnx.AttrInts, Ints: []int64{0}})
	add := g.AddNode("Add", "plus_batch_mean", []*onnx.Value{out, mean.Outputs[0]}, []string{"scores"})
	add.Outputs[0].Type = out.Type
	g.Outputs[0] = add.Outputs[0]
	return m
}

func writeTensor(t *testing.T, path string, dims []int64, v []float32) {
	t.Helper()
	x, err := onnx.FromFloat32("x", dims, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(x, path); err != nil {
		t.Fatal(err)
	}
}

// A tensor [N, ...] runs in batches of Options.Batch, not all at once, and
// in the model's own batch size when its input fixes one (the last batch
// padded): the scores of a model whose output depends on its batch show
// which examples ran together.
func TestTensorRunsInBatches(t *testing.T) {
	const n = 5
	x := make([]float32, n*28*28)
	for i := range x {
		x[i] = float32(i%251) / 251
	}
	path := filepath.Join(t.TempDir(), "x.pb")
	writeTensor(t, path, []int64{n, 1, 28, 28}, x)
	one := predictPath(t, batchDependent(t), predict.Options{Batch: 1}, path)
	logits := scores(t, one) // each example alone: logits + logits
	for i := range logits {
		logits[i] /= 2
	}
	fixed := batchDependent(t)
	fixed.Graph.Inputs[0].Type.Shape[0] = onnx.Fixed(2)
	for _, c := range []struct {
		name  string
		m     *onnx.Model
		batch int
	}{{"batch 2", batchDependent(t), 2}, {"fixed batch size 2", fixed, 0}, {"fixed, over batch 3", fixed, 3}} {
		name := c.name
		run := predictPath(t, c.m, predict.Options{Batch: c.batch}, path)
		got := scores(t, run)
		if !slices.Equal(run.Scores.Dims, []int64{n, 10}) || len(run.Examples) != n || run.Examples[3].Source != path+"[3]" {
			t.Fatalf("%s: scores %v, %d examples", name, run.Scores.Dims, len(run.Examples))
		}
		for i := range n {
			lo := i / 2 * 2
			hi := min(lo+2, n)
			for k := range 10 {
				// The last example runs alone, or padded with a copy of
				// itself: either way the mean is its own scores.
				var mean float32
				for j := lo; j < hi; j++ {
					mean += logits[j*10+k] / float32(hi-lo)
				}
				if want := logits[i*10+k] + mean; math.Abs(float64(got[i*10+k]-want)) > 1e-5 {
					t.Fatalf("%s: example %d class %d: %v, want %v (the example's scores plus the mean over its batch of 2)", name, i, k, got[i*10+k], want)
				}
			}
		}
	}
}

// nanModel divides the cnn's scores by the sum of the input's pixels: an
// all-black example gets no finite score.
func nanModel(t *testing.T) *onnx.Model {
	m := load(t, models+"cnn/model.onnx")
	g := m.Graph
	axes, _ := onnx.FromInt64("sum_axes", []int64{3}, []int64{1, 2, 3})
	sum := g.AddNode("ReduceSum", "pixel_sum", []*onnx.Value{g.Inputs[0], g.AddInitializer(axes)}, []string{"pixel_sum"})
	flat := g.AddNode("Flatten", "pixel_sum_flat", []*onnx.Value{sum.Outputs[0]}, []string{"pixel_sum_flat"})
	div := g.AddNode("Div", "scores_per_pixel", []*onnx.Value{g.Outputs[0], flat.Outputs[0]}, []string{"scores"})
	div.Outputs[0].Type = g.Outputs[0].Type
	g.Outputs[0] = div.Outputs[0]
	return m
}

func writePNG(t *testing.T, path string, level uint8) {
	t.Helper()
	im := image.NewGray(image.Rect(0, 0, 28, 28))
	for i := range im.Pix {
		im.Pix[i] = level
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, im); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// A score that is NaN or infinite is an error naming the example, and no
// result comes back.
func TestNonFiniteScoresNameTheExample(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "a.png"), 200)
	writePNG(t, filepath.Join(dir, "b.png"), 0)
	writePNG(t, filepath.Join(dir, "c.png"), 90)
	p, err := predict.New(nanModel(t), predict.Options{Batch: 2})
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Path(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "b.png")+": output \"scores\" is ") || r != nil {
		t.Errorf("an all-black image: %v", err)
	}
	x := make([]float32, 3*28*28)
	for i := range 28 * 28 {
		x[i], x[2*28*28+i] = 0.5, 0.25
	}
	path := filepath.Join(dir, "x.pb")
	writeTensor(t, path, []int64{3, 1, 28, 28}, x)
	if _, err := p.Path(context.Background(), path); err == nil || !strings.Contains(err.Error(), path+"[1]: output") {
		t.Errorf("an all-zero example of a tensor: %v", err)
	}
}

// Labels are the class names stored in the model's contract, unless the
// options name the classes; names for another number of classes are
// refused.
func TestLabels(t *testing.T) {
	names := []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
	m := load(t, models+"lenet_mnist/model.onnx")
	c, err := contract.Derive(m)
	if err != nil {
		t.Fatal(err)
	}
	c.Output.Classes = names
	if err := contract.Store(m, c); err != nil {
		t.Fatal(err)
	}
	input := models + "lenet_mnist/test_data_set_0/input_0.pb"
	r := predictPath(t, m, predict.Options{TopK: 2}, input)
	if top := r.Examples[0].Top; len(top) != 2 || top[0].Label != names[top[0].Class] || r.Examples[1].Source != input+"[1]" {
		t.Errorf("stored names: %+v", r.Examples)
	}
	upper := make([]string, 10)
	for i, n := range names {
		upper[i] = strings.ToUpper(n)
	}
	r = predictPath(t, m, predict.Options{Overrides: contract.Overrides{Classes: upper}}, input)
	if top := r.Examples[0].Top[0]; top.Label != upper[top.Class] || len(r.Examples[0].Top) != predict.DefaultTopK {
		t.Errorf("given names: %+v", r.Examples[0])
	}
	if _, err := predict.New(m, predict.Options{Overrides: contract.Overrides{Classes: names[:3]}}); err == nil || !strings.Contains(err.Error(), "3 class names for the 10 classes") {
		t.Errorf("3 names for 10 classes: %v", err)
	}
	// Probabilities follow the output kind: the LeNet's are the exp of its
	// log-probabilities, and they sum to 1.
	var sum float64
	all := predictPath(t, m, predict.Options{TopK: 10}, input)
	for _, c := range all.Examples[0].Top {
		sum += c.Probability
		if math.Abs(c.Probability-math.Exp(c.Score)) > 1e-12 {
			t.Errorf("class %d: probability %v, score %v", c.Class, c.Probability, c.Score)
		}
	}
	if math.Abs(sum-1) > 1e-5 {
		t.Errorf("probabilities sum to %v", sum)
	}
}

// Bad input is an error naming what and where.
func TestErrors(t *testing.T) {
	p, err := predict.New(load(t, tinyResNet), predict.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.png")
	os.WriteFile(bad, []byte("\x89PNG\r\n\x1a\nnot really"), 0o644)
	ctx := context.Background()
	for _, c := range []struct {
		path string
		want string
	}{
		{filepath.Join(dir, "missing.jpg"), "missing.jpg: no such file"},
		{dir + "/..", "no images"},
		{bad, "image " + bad},
	} {
		if _, err := p.Path(ctx, c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.path, err, c.want)
		}
	}
	var de *data.Error
	if _, err := p.Images(ctx, []string{photo, bad}); !errors.As(err, &de) || de.File != bad {
		t.Errorf("a bad image among good ones: %v", err)
	}
	if _, err := predict.New(load(t, tinyResNet), predict.Options{Overrides: contract.Overrides{Crop: 32}}); err == nil || !strings.Contains(err.Error(), "32x32 crop") {
		t.Errorf("a crop for a fixed size: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Images(cancelled, []string{photo}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
