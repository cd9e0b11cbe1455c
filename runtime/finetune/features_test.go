package finetune

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

// shardFeatures computes the features of ds in count shards, each written
// to a file and read back, and merges them.
func shardFeatures(t *testing.T, ds *dataset.Dataset, count int, fo FeatureOptions) *Features {
	t.Helper()
	var parts []*Features
	for i := count - 1; i >= 0; i-- {
		o := fo
		o.Shard = dataset.Shard{Index: i, Count: count}
		f, err := ComputeFeatures(context.Background(), demoModel(t), ds, o)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), FeaturesFile)
		if err := f.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		back, err := ReadFeatures(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, back)
	}
	all, err := MergeFeatures(parts...)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func encode(t *testing.T, f *Features) []byte {
	t.Helper()
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Features computed in shards and merged are the features of one run, bit
// for bit (the files are byte-identical), and are Run's own cache:
// training on them writes the model Run writes with its cache, byte for
// byte, with the validation split made from the features as Run makes it
// from the images.
func TestShardedFeaturesTrainAsRunsCache(t *testing.T) {
	trainData, _ := demoData(t, 30) // 150 real Fashion-MNIST images, 5 classes
	o := quick(t.TempDir())
	o.Batch = 16
	fo := FeatureOptions{Batch: o.Batch, Data: "demo"}
	single, err := ComputeFeatures(context.Background(), demoModel(t), trainData, fo)
	if err != nil {
		t.Fatal(err)
	}
	if single.Examples != 150 || len(single.Index) != 150 || !slices.Equal(single.Values.Shape(), tensor.Shape{150, 64}) || single.SplitAt == "" {
		t.Fatalf("features: %d of %d examples, shape %v, split at %q", len(single.Index), single.Examples, single.Values.Shape(), single.SplitAt)
	}
	want := encode(t, single)
	for _, n := range []int{3, 7} {
		if got := encode(t, shardFeatures(t, trainData, n, fo)); !bytes.Equal(got, want) {
			t.Errorf("%d shards merged: the features file differs from the single run's", n)
		}
	}

	// Run caches these features: the model it writes is the one trained
	// on them.
	res := run(t, demoModel(t), trainData, nil, o)
	if !res.Cached {
		t.Fatal("Run did not use its cache")
	}
	wantModel, _ := os.ReadFile(o.Out)
	o2 := quick(t.TempDir())
	o2.Batch = 16
	res2, err := RunOnFeatures(context.Background(), demoModel(t), shardFeatures(t, trainData, 3, fo), nil, o2)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(o2.Out)
	if !bytes.Equal(got, wantModel) {
		t.Error("the model trained on the merged features differs from Run's")
	}
	if !slices.Equal(res2.TrainFeatures.Labels, res.TrainFeatures.Labels) || !res2.TrainFeatures.Values.Eq(res.TrainFeatures.Values) || len(res2.History.Epochs) != 3 {
		t.Error("the features trained on differ from Run's cache")
	}
	report, _ := os.ReadFile(filepath.Join(filepath.Dir(o2.Out), ReportFile))
	if !bytes.Contains(report, []byte("| training / validation images | 120 / 30 |")) {
		t.Errorf("report.md:\n%s", report)
	}
}

// An image folder: decoded, resized and fed as the contract says, in
// shards, the features are the same.
func TestShardedFeaturesOfAnImageFolder(t *testing.T) {
	photos, err := dataset.ImageFolder("../../testdata/images/fashion")
	if err != nil {
		t.Fatal(err)
	}
	fo := FeatureOptions{Batch: 10, Overrides: contract.Overrides{Resize: 32}}
	single, err := ComputeFeatures(context.Background(), demoModel(t), photos, fo)
	if err != nil {
		t.Fatal(err)
	}
	if got := shardFeatures(t, photos, 3, fo); !bytes.Equal(encode(t, got), encode(t, single)) {
		t.Error("3 shards of the image folder differ from the single run")
	}
	if single.Preprocessing.Resize != 32 || !slices.Equal(single.Classes, []string{"bag", "sandal", "sneaker"}) {
		t.Errorf("preprocessing %+v, classes %v", single.Preprocessing, single.Classes)
	}
}

// Features that do not go with the model or the run, or with each other,
// are refused, naming the difference.
func TestFeaturesRefused(t *testing.T) {
	trainData, valData := demoData(t, 8)
	ctx := context.Background()
	fo := FeatureOptions{Batch: 8}
	compute := func(ds *dataset.Dataset, fo FeatureOptions) *Features {
		f, err := ComputeFeatures(ctx, demoModel(t), ds, fo)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	all := compute(trainData, fo)
	shard := func(i, n int, ds *dataset.Dataset, fo FeatureOptions) *Features {
		fo.Shard = dataset.Shard{Index: i, Count: n}
		return compute(ds, fo)
	}
	other := demoModel(t)
	w := other.Graph.Initializers[0].Const
	raw := slices.Clone(w.Raw())
	raw[0] ^= 1 // another backbone
	if err := w.SetRaw(raw); err != nil {
		t.Fatal(err)
	}
	otherFeatures, err := ComputeFeatures(ctx, other, trainData, fo)
	if err != nil {
		t.Fatal(err)
	}
	fewer, _ := trainData.PerClass(7, 1)
	for _, tc := range []struct {
		name  string
		parts []*Features
		want  string
	}{
		{"another model", []*Features{shard(0, 2, trainData, fo), func() *Features {
			o := fo
			o.Shard = dataset.Shard{Index: 1, Count: 2}
			f, _ := ComputeFeatures(ctx, other, trainData, o)
			return f
		}()}, "model sha256"},
		{"other data", []*Features{shard(0, 2, trainData, fo), shard(1, 2, fewer, fo)}, "data fingerprint"},
		{"another batch size", []*Features{shard(0, 2, trainData, fo), shard(1, 2, trainData, FeatureOptions{Batch: 4})}, "batch size 8 and 4"},
		{"other preprocessing", []*Features{shard(0, 2, trainData, fo), shard(1, 2, trainData, FeatureOptions{Batch: 8, Overrides: contract.Overrides{Mean: []float32{0.5}, Std: []float32{0.5}}})}, "preprocessing"},
		{"a missing shard", []*Features{shard(0, 3, trainData, fo), shard(2, 3, trainData, fo)}, "2 of 3 shards given; missing 1/3"},
		{"a shard twice", []*Features{shard(1, 2, trainData, fo), shard(1, 2, trainData, fo)}, "shard 1/2 is given twice"},
		{"another count", []*Features{shard(0, 2, trainData, fo), shard(1, 3, trainData, fo)}, "splits into 2 and 3 shards"},
	} {
		if _, err := MergeFeatures(tc.parts...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("merge %s: %v, want %q", tc.name, err, tc.want)
		}
	}

	train := func(f, v *Features, change func(*Options)) error {
		o := quick(t.TempDir())
		o.Batch = 8
		if change != nil {
			change(&o)
		}
		_, err := RunOnFeatures(ctx, demoModel(t), f, v, o)
		return err
	}
	for _, tc := range []struct {
		name   string
		f, v   *Features
		change func(*Options)
		want   string
	}{
		{"another model's features", otherFeatures, nil, nil, "come from another model"},
		{"one shard", shard(1, 2, trainData, fo), nil, nil, "hold shard 1/2 only (16 of 40 examples)"},
		{"the backbone training", all, nil, func(o *Options) { o.Freeze = nil }, "trains the head alone"},
		{"augmentation", all, nil, func(o *Options) { o.Augment = true }, "cannot augment"},
		{"hardening", all, nil, func(o *Options) { o.NoiseStd = 0.1 }, "cannot harden"},
		{"other preprocessing", all, nil, func(o *Options) { o.Overrides.Mean, o.Overrides.Std = []float32{0.5}, []float32{0.5} }, "this model's contract (with the overrides) feeds"},
		{"validation of other preprocessing", all, compute(valData, FeatureOptions{Batch: 8, Overrides: contract.Overrides{Resize: 30}}), nil, "the validation features as"},
	} {
		if err := train(tc.f, tc.v, tc.change); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := train(all, compute(valData, fo), nil); err != nil {
		t.Errorf("training and validation features: %v", err)
	}
}

// A features file that is cut short, or whose metadata or tensors are
// wrong, is refused in one line; none is trusted before it is checked.
func TestReadFeaturesRefusesBadFiles(t *testing.T) {
	trainData, _ := demoData(t, 4)
	f, err := ComputeFeatures(context.Background(), demoModel(t), trainData, FeatureOptions{Batch: 4})
	if err != nil {
		t.Fatal(err)
	}
	good := encode(t, f)
	decode := func(b []byte) error {
		_, err := DecodeFeatures(bytes.NewReader(b), int64(len(b)))
		return err
	}
	if err := decode(good); err != nil {
		t.Fatal(err)
	}
	// edit replaces old by new in the header, keeping the file framed.
	hlen := binary.LittleEndian.Uint64(good)
	edit := func(old, new string) []byte {
		h := string(good[8 : 8+hlen])
		if !strings.Contains(h, old) {
			t.Fatalf("no %s in the header %s", old, h)
		}
		h = strings.Replace(h, old, new, 1)
		out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
		return append(append(out, h...), good[8+hlen:]...)
	}
	nan := slices.Clone(good)
	copy(nan[len(nan)-4:], []byte{0, 0, 0xc0, 0x7f})
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"cut short":         {good[:len(good)-1], "data offsets [320 5440]"},
		"no header":         {good[:7], "shorter than its header length"},
		"another format":    {edit(`"format":"graft.features"`, `"format":"graft.featurez"`), `format "graft.featurez"`},
		"a later version":   {edit(`"version":"1"`, `"version":"2"`), `version "2"`},
		"a bad shard":       {edit(`"shard":"0/1"`, `"shard":"1/1"`), "shard 1/1"},
		"a label too big":   {edit(`"classes":"[\"0\",\"1\",\"2\",\"3\",\"4\"]"`, `"classes":"[\"0\",\"1\"]"`), "is not one of the 2 classes"},
		"a non-finite":      {nan, "not finite"},
		"a wrong dtype":     {edit(`"dtype":"F32"`, `"dtype":"I32"`), "dtypes: index I64, labels I64, features I32"},
		"an extra tensor":   {edit(`"labels":`, `"labelz":`), `unexpected tensor "labelz"`},
		"a short data size": {edit(`"examples":"20"`, `"examples":"2"`), "of a data set of 2"},
	} {
		if err := decode(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// The reader never panics and never trusts a size it has not checked; what
// it accepts, it writes back byte for byte.
func FuzzReadFeatures(f *testing.F) {
	for _, values := range []*tensor.Dense{
		tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float32{1, 2, 3, 4, 5, 6})),
		tensor.New(tensor.WithShape(2, 1, 2), tensor.WithBacking([]float64{0.5, -1, 1e-300, 7})),
	} {
		feats := &Features{ModelSHA256: strings.Repeat("ab", 32), SplitAt: "x", Data: "d", DataFingerprint: "f",
			Preprocessing: dataset.Preprocessing{Channels: 1, Height: 2, Width: 2, Resize: 2}, Examples: 5, Classes: []string{"a", "b"},
			Block: 2, Shard: dataset.Shard{Index: 1, Count: 2}, Index: []int{2, 3}, Labels: []int{1, 0}, Values: values}
		good, err := feats.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(good)
		f.Add(good[:len(good)/2])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeFeatures(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		again, err := got.Encode()
		if err != nil {
			t.Fatalf("accepted features do not encode: %v", err)
		}
		back, err := DecodeFeatures(bytes.NewReader(again), int64(len(again)))
		if err != nil {
			t.Fatalf("re-encoded features do not decode: %v", err)
		}
		if b2, _ := back.Encode(); !bytes.Equal(b2, again) {
			t.Fatal("features change when written again")
		}
	})
}

// A batch the backbone cannot run within graft's memory limit is refused
// before any image is read, naming the tensor and the bytes.
func TestComputeFeaturesChecksMemory(t *testing.T) {
	trainData, _ := demoData(t, 4)
	m := demoModel(t)
	t.Cleanup(func() { memlimit.Set(0, "") })
	memlimit.Set(64<<20, "the test")
	_, err := ComputeFeatures(context.Background(), m, trainData, FeatureOptions{Batch: 100000})
	if err == nil || !strings.Contains(err.Error(), "over graft's memory limit of 64.0 MiB") || !strings.HasPrefix(err.Error(), "features: running the model on input [100000,1,28,28]") {
		t.Errorf("got %v", err)
	}
}

// A head-only run never holds a training step of the whole model, cached
// or not, so only the extractor's inference is held to the memory limit:
// under a limit between the two, both train and a whole-model run is
// refused.
func TestHeadOnlyRunIsNotHeldToATrainingStep(t *testing.T) {
	load := func() *onnx.Model {
		m, err := onnx.Load("../../cmd/graft/demo/pretrained.onnx")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	p, err := runtime.Compile(load(), runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := [][]int{{8, 1, 28, 28}}
	var all []string
	for _, prm := range p.Params() {
		if !strings.Contains(prm.Name, "running_") {
			all = append(all, prm.Name)
		}
	}
	step, err := p.Estimate(runtime.Plan{Inputs: in, Loss: runtime.CrossEntropy, Train: true, Params: all})
	if err != nil {
		t.Fatal(err)
	}
	infer, err := p.Estimate(runtime.Plan{Inputs: in})
	if err != nil {
		t.Fatal(err)
	}
	limit := (step.Total + infer.Total) / 2
	if !(infer.Total < limit && limit < step.Total) {
		t.Fatalf("inference %d, training step %d: no limit between", infer.Total, step.Total)
	}
	t.Cleanup(func() { memlimit.Set(0, "") })
	memlimit.Set(limit, "the test")
	photos, err := dataset.ImageFolder("../../testdata/images/fashion")
	if err != nil {
		t.Fatal(err)
	}
	// Head-only runs, cached or streaming their features (NoCache), run
	// the backbone as inference; training the whole model needs the step.
	for _, c := range []struct {
		name          string
		freeze        []string
		noCache, fits bool
	}{
		{"cached", []string{"backbone"}, false, true},
		{"streamed", []string{"backbone"}, true, true},
		{"whole model", nil, true, false},
	} {
		opts := DefaultOptions()
		opts.Freeze = c.freeze
		opts.Epochs, opts.LR, opts.Batch, opts.NoCache = 1, 0.01, 8, c.noCache
		opts.Out = filepath.Join(t.TempDir(), "model.onnx")
		_, err := Run(context.Background(), load(), photos, nil, opts)
		switch {
		case c.fits && err != nil:
			t.Errorf("%s run under a limit below a training step: %v", c.name, err)
		case !c.fits && (err == nil || !strings.Contains(err.Error(), "a training step")):
			t.Errorf("%s run under a limit below a training step: %v, want a refusal", c.name, err)
		}
	}
}
