package finetune

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/train"
	"gorgonia.org/tensor"
)

// The demo's embedded model (a small ResNet trained on Fashion-MNIST
// clothes, classes 0-4) and data (classes 5-9), read from the files.
const demoDir = "../../cmd/graft/demo/"

func demoModel(t testing.TB) *onnx.Model {
	t.Helper()
	m, err := onnx.Load(demoDir + "pretrained.onnx")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// demoData returns perClass training and validation examples of each of
// the demo's five classes.
func demoData(t testing.TB, perClass int) (trainData, valData *dataset.Dataset) {
	t.Helper()
	read := func(split string) *dataset.Dataset {
		ds, err := dataset.IDX(demoDir+split+"-images-idx3-ubyte.gz", demoDir+split+"-labels-idx1-ubyte.gz")
		if err != nil {
			t.Fatal(err)
		}
		if ds, err = ds.PerClass(perClass, 1); err != nil {
			t.Fatal(err)
		}
		return ds
	}
	return read("train"), read("val")
}

// quick returns options for a short head-only run writing into dir.
func quick(dir string) Options {
	o := DefaultOptions()
	o.Out = filepath.Join(dir, "model.onnx")
	o.Freeze = []string{"backbone"}
	o.Epochs, o.LR, o.Batch = 3, 0.01, 16
	return o
}

func run(t *testing.T, m *onnx.Model, trainData, valData *dataset.Dataset, o Options) *Result {
	t.Helper()
	res, err := Run(context.Background(), m, trainData, valData, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A head-only run replaces the head, caches the features, learns, and
// writes the model with its contract and class names, the metrics, the
// plot, the report and a checkpoint.
func TestRunHeadOnly(t *testing.T) {
	dir := t.TempDir()
	trainData, valData := demoData(t, 40)
	trainData, _ = trainData.WithClassNames("sandal", "shirt", "sneaker", "bag", "boot")
	valData, _ = valData.WithClassNames("sandal", "shirt", "sneaker", "bag", "boot")
	o := quick(dir)
	o.ModelPath = demoDir + "pretrained.onnx"
	res := run(t, demoModel(t), trainData, valData, o)
	h := res.History
	if !res.Cached || len(h.Epochs) != 3 || h.Epochs[2].Loss >= h.Epochs[0].Loss || h.BestAccuracy < 0.5 {
		t.Errorf("cached %v, history %+v", res.Cached, h)
	}
	if !slices.Equal(res.Trainable, []string{"fc.weight", "fc.bias"}) || res.Head.OutFeatures != 5 {
		t.Errorf("trainable %v, head %+v", res.Trainable, res.Head)
	}
	for _, f := range []string{"model.onnx", MetricsFile, PlotFile, ReportFile, CheckpointDir + "/current"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	saved, err := onnx.Load(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	c, err := contract.Derive(saved)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Notes) != 0 || !slices.Equal(c.Output.Classes, trainData.Classes()) || c.Input.Channels != 1 || c.Input.Resize != 28 || c.Input.Mean != nil {
		t.Errorf("saved contract %+v %+v, notes %q", c.Input, c.Output, c.Notes)
	}
	// The file holds the best epoch: evaluated again, it scores what the
	// history says.
	if acc := evaluate(t, saved, valData); math.Abs(acc-h.BestAccuracy) > 1e-9 {
		t.Errorf("saved model: accuracy %.4f, history's best %.4f", acc, h.BestAccuracy)
	}
	report, _ := os.ReadFile(filepath.Join(dir, ReportFile))
	if !strings.Contains(string(report), "sandal, shirt, sneaker, bag, boot") || !strings.Contains(string(report), "computed once and cached") {
		t.Errorf("report.md:\n%s", report)
	}
}

// evaluate returns m's accuracy on ds, fed as m's contract says, without
// augmentation.
func evaluate(t *testing.T, m *onnx.Model, ds *dataset.Dataset) float64 {
	t.Helper()
	c, err := contract.Derive(m)
	if err != nil {
		t.Fatal(err)
	}
	pre, err := dataset.PreprocessingFor(c.Input)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pre.Config(ds, 64, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := dataset.NewLoader(ds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, acc, _, err := train.Evaluate(p, l, 0)
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

// Validation sees the images as evaluation does, whatever the training
// augmentation: the best epoch's validation loss is that of the saved
// model on unaugmented validation images.
func TestValidationIsNotAugmented(t *testing.T) {
	dir := t.TempDir()
	trainData, valData := demoData(t, 12)
	o := quick(dir)
	o.Epochs, o.Augment = 2, true
	res := run(t, demoModel(t), trainData, valData, o)
	if res.Cached {
		t.Fatal("an augmented run used the feature cache")
	}
	saved, err := onnx.Load(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	best := bestEpoch(res.History)
	p, err := runtime.Compile(saved, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pre := dataset.ForInput(1, 28, 28)
	cfg, _ := pre.Config(valData, 16, false, 0)
	l, _ := dataset.NewLoader(valData, cfg)
	loss, _, _, err := train.Evaluate(p, l, 0)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(loss-best.Val.Loss) > 1e-6*loss {
		t.Errorf("validation loss in the history %.7f, of the saved model on plain images %.7f", best.Val.Loss, loss)
	}
}

// Full fine-tuning trains BatchNormalization in training mode, and the
// running statistics it updates are in the saved model.
func TestFullFineTuneSavesBatchNormStatistics(t *testing.T) {
	dir := t.TempDir()
	trainData, valData := demoData(t, 8)
	m := demoModel(t)
	before := initializer(t, m, "bn1.running_mean") // the stem's BatchNormalization
	o := quick(dir)
	o.Freeze, o.Unfreeze, o.Epochs = nil, []string{"all"}, 1
	res := run(t, m, trainData, valData, o)
	if res.Cached || len(res.Trainable) < 20 {
		t.Fatalf("cached %v, %d trainable", res.Cached, len(res.Trainable))
	}
	saved, err := onnx.Load(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	after := initializer(t, saved, "bn1.running_mean")
	if slices.Equal(before, after) {
		t.Errorf("the saved model has the pretrained running mean %v", before[:3])
	}
}

func initializer(t *testing.T, m *onnx.Model, name string) []float32 {
	t.Helper()
	v := m.Graph.Value(name)
	if v == nil || v.Const == nil {
		var names []string
		for _, v := range m.Graph.Initializers {
			names = append(names, v.Name)
		}
		t.Fatalf("no initializer %s among %v", name, names)
	}
	f, err := v.Const.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Two runs with the same seed write the same bytes: with the feature
// cache, and training everything with augmentation and shuffles.
func TestRerunsAreBitIdentical(t *testing.T) {
	trainData, valData := demoData(t, 8)
	for _, full := range []bool{false, true} {
		var files [][]byte
		for range 2 {
			o := quick(t.TempDir())
			o.Epochs, o.Seed = 2, 5
			if full {
				o.Freeze, o.Augment = nil, true
			}
			run(t, demoModel(t), trainData, valData, o)
			b, err := os.ReadFile(o.Out)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, b)
		}
		if !bytes.Equal(files[0], files[1]) {
			t.Errorf("full training %v: two runs wrote different models", full)
		}
	}
}

// appendActivation makes op the model's last node, reading the old output.
func appendActivation(m *onnx.Model, op string) {
	g := m.Graph
	n := g.AddNode(op, "final_"+op, []*onnx.Value{g.Outputs[0]}, []string{"probabilities"})
	n.Outputs[0].Type = g.Outputs[0].Type
	g.Outputs[0] = n.Outputs[0]
}

// A model ending in Softmax or Sigmoid trains through its logits: the same
// losses, step by step, as the network ending in logits.
func TestProbabilityModelsTrainOnLogits(t *testing.T) {
	trainData, valData := demoData(t, 16)
	logits := run(t, demoModel(t), trainData, valData, quick(t.TempDir())).History
	for _, op := range []string{"Softmax", "Sigmoid"} {
		m := demoModel(t)
		appendActivation(m, op)
		h := run(t, m, trainData, valData, quick(t.TempDir())).History
		for i := range h.Epochs {
			a, b := logits.Epochs[i], h.Epochs[i]
			if math.Abs(a.Loss-b.Loss) > 1e-6 || math.Abs(a.Val.Loss-b.Val.Loss) > 1e-6 || a.Val.Accuracy != b.Val.Accuracy {
				t.Errorf("%s, epoch %d: loss %.6f val %.6f (%.4f), logits model %.6f val %.6f (%.4f)", op, i+1,
					b.Loss, b.Val.Loss, b.Val.Accuracy, a.Loss, a.Val.Loss, a.Val.Accuracy)
			}
		}
	}
}

// Resume continues a run exactly, and refuses a checkpoint of another run.
func TestResume(t *testing.T) {
	trainData, valData := demoData(t, 16)
	straight := quick(t.TempDir())
	straight.Epochs = 4
	want := run(t, demoModel(t), trainData, valData, straight)

	dir := t.TempDir()
	o := quick(dir)
	o.Epochs = 2
	run(t, demoModel(t), trainData, valData, o)
	o.Epochs, o.Resume = 4, true
	got := run(t, demoModel(t), trainData, valData, o)
	for i := range want.History.Epochs {
		a, b := want.History.Epochs[i], got.History.Epochs[i]
		if a.Loss != b.Loss || *a.Val != *b.Val {
			t.Errorf("epoch %d: straight %+v, resumed %+v", i+1, a, b)
		}
	}
	straightModel, _ := os.ReadFile(straight.Out)
	resumedModel, _ := os.ReadFile(o.Out)
	if !bytes.Equal(straightModel, resumedModel) {
		t.Errorf("a resumed run wrote another model than the straight one")
	}

	other, _ := demoData(t, 15)
	for _, tc := range []struct {
		change func(*Options, **dataset.Dataset, **onnx.Model)
		want   string
	}{
		{func(o *Options, _ **dataset.Dataset, _ **onnx.Model) { o.LR = 0.02 }, "it was made with lr 0.01, this run has 0.02"},
		{func(o *Options, _ **dataset.Dataset, _ **onnx.Model) { o.Seed = 9 }, "it was made with seed 0, this run has 9"},
		{func(_ *Options, d **dataset.Dataset, _ **onnx.Model) { *d = other }, "its training data differs"},
		{func(_ *Options, _ **dataset.Dataset, m **onnx.Model) { appendActivation(*m, "Softmax") }, "it was made from another model"},
	} {
		o2, d, m := o, trainData, demoModel(t)
		tc.change(&o2, &d, &m)
		_, err := Run(context.Background(), m, d, valData, o2)
		if err == nil || !strings.Contains(err.Error(), "the checkpoint comes from another run: "+tc.want) {
			t.Errorf("%v, want %q", err, tc.want)
		}
	}
	o3 := quick(t.TempDir())
	o3.Resume = true
	if _, err := Run(context.Background(), demoModel(t), trainData, valData, o3); err == nil || !strings.Contains(err.Error(), "no checkpoint to resume") {
		t.Errorf("resume without a checkpoint: %v", err)
	}
}

// Outputs that would replace an input are refused before any work.
func TestOutputsThatReplaceInputs(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "pretrained.onnx")
	raw, _ := os.ReadFile(demoDir + "pretrained.onnx")
	if err := os.WriteFile(model, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	folder, err := dataset.ImageFolder("../../testdata/images/fashion")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ out, want string }{
		{model, "is the same file as model"},
		{"../../testdata/images/fashion/model.onnx", "inside"},
	} {
		o := quick(dir)
		o.ModelPath, o.Out = model, tc.out
		_, err := Run(context.Background(), demoModel(t), folder, nil, o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("-o %s: %v, want %q", tc.out, err, tc.want)
		}
		if b, _ := os.ReadFile(model); !bytes.Equal(b, raw) {
			t.Errorf("-o %s: the model file changed", tc.out)
		}
		if _, err := os.Stat(filepath.Join(dir, MetricsFile)); err == nil {
			t.Errorf("-o %s: work started", tc.out)
		}
	}
}

// Stopping before the first epoch ends writes nothing and says so, in
// every phase: a cancelled context before training, or during the
// feature cache.
func TestStopBeforeFirstEpoch(t *testing.T) {
	trainData, valData := demoData(t, 40)
	for _, when := range []string{"before", "caching"} {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		o := quick(dir)
		if when == "before" {
			cancel()
		} else {
			o.OnPhase = func(string) { cancel() }
		}
		res, err := Run(ctx, demoModel(t), trainData, valData, o)
		if !errors.Is(err, ErrNothingSaved) || res == nil {
			t.Errorf("%s: %v", when, err)
		}
		if _, err := os.Stat(o.Out); err == nil {
			t.Errorf("%s: a model was written", when)
		}
		cancel()
	}
}

// Hardening perturbs what it says: FGSM on a share Ratio of each batch,
// the rest as it was; noise of the given deviation on every input.
func TestPerturber(t *testing.T) {
	m := demoModel(t)
	trainData, _ := demoData(t, 2)
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := dataset.ForInput(1, 28, 28).Config(trainData, 10, false, 0)
	l, _ := dataset.NewLoader(trainData, cfg)
	var b dataset.Batch
	for b = range l.Batches(0) {
		break
	}
	row := 28 * 28
	x := b.X.Data().([]float32)
	changed := func(y *tensor.Dense) (rows []int, maxStep float64) {
		d := y.Data().([]float32)
		for i := range len(b.Labels) {
			moved := false
			for j := i * row; j < (i+1)*row; j++ {
				step := math.Abs(float64(d[j] - x[j]))
				maxStep = math.Max(maxStep, step)
				moved = moved || step > 0
			}
			if moved {
				rows = append(rows, i)
			}
		}
		return rows, maxStep
	}

	o := DefaultOptions()
	o.Adversarial = Adversarial{Eps: 0.1, Ratio: 0.3}
	adv, err := perturber(p, o)(0, b)
	if err != nil {
		t.Fatal(err)
	}
	rows, step := changed(adv.X)
	if !slices.Equal(rows, []int{0, 1, 2}) || math.Abs(step-0.1) > 1e-6 {
		t.Errorf("FGSM on 30%% of 10 examples: rows %v changed, by up to %g", rows, step)
	}

	o = DefaultOptions()
	o.NoiseStd = 0.05
	noisy, err := perturber(p, o)(0, b)
	if err != nil {
		t.Fatal(err)
	}
	d := noisy.X.Data().([]float32)
	var sum, sq float64
	n := 0
	for i, v := range x {
		if v > 0.25 && v < 0.75 { // away from the clamp
			e := float64(d[i] - v)
			sum, sq, n = sum+e, sq+e*e, n+1
		}
	}
	mean := sum / float64(n)
	std := math.Sqrt(sq/float64(n) - mean*mean)
	if n < 500 || math.Abs(std-0.05) > 0.005 || math.Abs(mean) > 0.005 {
		t.Errorf("noise on %d pixels: mean %.4f, std %.4f, want 0 and 0.05", n, mean, std)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		change func(*Options)
		option string
	}{
		{func(o *Options) { o.Out = "" }, "Out"},
		{func(o *Options) { o.Epochs = 0 }, "Epochs"},
		{func(o *Options) { o.LR = math.NaN() }, "LR"},
		{func(o *Options) { o.Momentum = math.NaN() }, "Momentum"},
		{func(o *Options) { o.WeightDecay = -1 }, "WeightDecay"},
		{func(o *Options) { o.ValSplit = 1 }, "ValSplit"},
		{func(o *Options) { o.Optimizer = "rmsprop" }, "Optimizer"},
		{func(o *Options) { o.Schedule = "step:0,0.1" }, "Schedule"},
		{func(o *Options) { o.Schedule = "step:3,NaN" }, "Schedule"},
		{func(o *Options) { o.Adversarial.Eps = 2 }, "Adversarial.Eps"},
		{func(o *Options) { o.Adversarial = Adversarial{Eps: 0.1, Ratio: 0} }, "Adversarial.Ratio"},
		{func(o *Options) { o.NoiseStd = math.Inf(1) }, "NoiseStd"},
		{func(o *Options) { o.Freeze = []string{""} }, "Freeze"},
	} {
		o := DefaultOptions()
		o.Out = "x.onnx"
		tc.change(&o)
		var oe *OptionError
		if err := o.Validate(); !errors.As(err, &oe) || oe.Option != tc.option {
			t.Errorf("%s: %v", tc.option, err)
		}
	}
}

// Hardening works on pixels: a model normalised outside (ImageNet's
// default for 3 channels, or one value given for all channels) gets its
// normalisation put inside, and the saved contract says so.
func TestHardeningPutsTheNormalisationInside(t *testing.T) {
	photos, err := dataset.ImageFolder("../../testdata/images/fashion")
	if err != nil {
		t.Fatal(err)
	}
	for _, over := range []contract.Overrides{{}, {Mean: []float32{0.5}, Std: []float32{0.25}}} {
		m, err := onnx.Load("../../testdata/models/resnet_tiny_op13_bn/model.onnx")
		if err != nil {
			t.Fatal(err)
		}
		o := quick(t.TempDir())
		o.Epochs, o.NoiseStd, o.Overrides = 1, 0.05, over
		run(t, m, photos, nil, o)
		saved, err := onnx.Load(o.Out)
		if err != nil {
			t.Fatal(err)
		}
		c, err := contract.Derive(saved)
		if err != nil {
			t.Fatal(err)
		}
		want := contract.ImageNetMean
		if over.Mean != nil {
			want = []float32{0.5, 0.5, 0.5}
		}
		if !c.Input.NormalizedInside || !slices.Equal(c.Input.Mean, want) {
			t.Errorf("overrides %+v: saved input contract %+v", over, c.Input)
		}
		if mean, _ := c.Input.PixelNormalization(); mean != nil {
			t.Errorf("overrides %+v: the saved model still wants normalised inputs", over)
		}
	}
}

// Refused before any work, leaving nothing behind: a model whose weights
// are not finite, an output folder another run holds, a metrics file that
// cannot be replaced.
func TestRefusedBeforeWork(t *testing.T) {
	trainData, valData := demoData(t, 4)

	m := demoModel(t)
	w := m.Graph.Value("fc.weight").Const
	raw := slices.Clone(w.Raw())
	copy(raw[8:], []byte{0, 0, 0xc0, 0x7f}) // element 2: NaN
	if err := w.SetRaw(raw); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err := Run(context.Background(), m, trainData, valData, quick(dir))
	if err == nil || !strings.Contains(err.Error(), `initializer "fc.weight" holds NaN at element 2`) {
		t.Errorf("NaN weights: %v", err)
	}

	held, err := fileio.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), demoModel(t), trainData, valData, quick(dir))
	held.Unlock()
	if !errors.Is(err, fileio.ErrLocked) || !strings.Contains(err.Error(), "is writing to "+dir) {
		t.Errorf("a held folder: %v", err)
	}

	metrics := filepath.Join(dir, MetricsFile)
	if err := os.WriteFile(metrics, []byte("{}"), 0o444); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), demoModel(t), trainData, valData, quick(dir))
	if err == nil || !strings.Contains(err.Error(), "metrics.json is read-only") {
		t.Errorf("a read-only metrics.json: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != MetricsFile && e.Name() != fileio.LockName {
			t.Errorf("a refused run left %s", e.Name())
		}
	}
}
