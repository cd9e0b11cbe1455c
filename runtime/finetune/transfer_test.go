package finetune

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/train"
	"github.com/graft-dev/graft/surgery"
)

// fashionRef is the part of testdata/gen/fashion_finetune_ref.json the
// tests use: PyTorch's results on the same model, data and settings.
type fashionRef struct {
	Settings map[string]struct {
		Train struct {
			Indices []int `json:"indices"`
		} `json:"train"`
		Summary struct {
			FinalMean float64 `json:"final_mean"`
			BestMean  float64 `json:"best_mean"`
		} `json:"summary"`
	} `json:"settings"`
	Exact struct {
		InitialHead map[string]any `json:"initial_head"`
		FinalHead   map[string]any `json:"final_head"`
		TrainLoss   float64        `json:"train_loss"`
		ValCorrect  int            `json:"val_correct"`
	} `json:"exact_check"`
}

// flat flattens nested JSON number lists (a [5][64] weight) row-major.
func flat(v any) []float64 {
	switch x := v.(type) {
	case float64:
		return []float64{x}
	case []any:
		var out []float64
		for _, e := range x {
			out = append(out, flat(e)...)
		}
		return out
	}
	return nil
}

func loadFashionRef(t *testing.T) *fashionRef {
	t.Helper()
	b, err := os.ReadFile("../../testdata/gen/fashion_finetune_ref.json")
	if err != nil {
		t.Fatal(err)
	}
	var r fashionRef
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// Real transfer learning, graft against PyTorch on the same split: the
// clothes-pretrained model, head replaced, backbone frozen, 15 epochs of
// SGD on 1,000 images per class of Fashion-MNIST classes 5-9, validated on
// all 5,000 test images of those classes. Three head seeds on each side;
// the mean final accuracies must agree within 1 point.
func TestTransferLearningMatchesPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("15 epochs, three times (-short)")
	}
	f := testenv.FashionMNIST.Files(t, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
	ref := loadFashionRef(t)
	b := ref.Settings["b"]
	all, err := dataset.IDX(f[0], f[1])
	if err != nil {
		t.Fatal(err)
	}
	trainDS, err := all.Subset(b.Train.Indices).Select(5, 6, 7, 8, 9)
	if err != nil {
		t.Fatal(err)
	}
	test, err := dataset.IDX(f[2], f[3])
	if err != nil {
		t.Fatal(err)
	}
	valDS, err := test.Select(5, 6, 7, 8, 9)
	if err != nil {
		t.Fatal(err)
	}
	if trainDS.Len() != 5000 || valDS.Len() != 5000 {
		t.Fatalf("split: %d train, %d val; PyTorch used 5000 and 5000", trainDS.Len(), valDS.Len())
	}
	var final, best float64
	seeds := []int64{0, 1, 2}
	for _, seed := range seeds {
		o := DefaultOptions()
		o.Out = filepath.Join(t.TempDir(), "model.onnx")
		o.ReplaceHead, o.Freeze = 5, []string{"backbone"}
		o.Epochs, o.LR, o.Momentum, o.Seed = 15, 0.01, 0.9, seed
		res, err := Run(context.Background(), demoModel(t), trainDS, valDS, o)
		if err != nil {
			t.Fatal(err)
		}
		h := res.History
		final += h.Epochs[len(h.Epochs)-1].Val.Accuracy / float64(len(seeds))
		best += h.BestAccuracy / float64(len(seeds))
		t.Logf("seed %d: final %.4f, best %.4f", seed, h.Epochs[len(h.Epochs)-1].Val.Accuracy, h.BestAccuracy)
	}
	t.Logf("graft: final %.4f, best %.4f; PyTorch: final %.4f, best %.4f", final, best, b.Summary.FinalMean, b.Summary.BestMean)
	if d := math.Abs(final - b.Summary.FinalMean); d > 0.01 {
		t.Errorf("mean final accuracy %.4f, PyTorch %.4f: %.2f points apart (want <= 1)", final, b.Summary.FinalMean, 100*d)
	}
}

// The same training step by step: from PyTorch's recorded head, one epoch
// in file order on the demo data gives PyTorch's weights, loss and
// validation count.
func TestFinetuneStepsMatchPyTorchExactly(t *testing.T) {
	ref := loadFashionRef(t)
	m := demoModel(t)
	if err := surgery.Apply(m, surgery.ReplaceHead(5, surgery.HeadOptions{}), surgery.Freeze(surgery.Backbone())); err != nil {
		t.Fatal(err)
	}
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, nested := range ref.Exact.InitialHead {
		v := flat(nested)
		dst := p.Param(name).Value.Data().([]float32)
		if len(dst) != len(v) {
			t.Fatalf("%s: %d values, reference has %d", name, len(dst), len(v))
		}
		for i := range v {
			dst[i] = float32(v[i])
		}
	}
	trainData, valData := demoData(t, 1000)
	source := func(ds *dataset.Dataset, batch int) *dataset.Loader {
		cfg, err := dataset.ForInput(1, 28, 28).Config(ds, batch, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		l, err := dataset.NewLoader(ds, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	trainSrc, valSrc := source(trainData, 32), source(valData, 500)
	opt, _ := train.NewSGD(train.SGDOptions{LR: 0.01, Momentum: 0.9})
	h, err := train.Fit(context.Background(), p, trainSrc, valSrc, train.Config{Epochs: 1, Optimizer: opt, Params: []string{"fc.weight", "fc.bias"}})
	if err != nil {
		t.Fatal(err)
	}
	e := h.Epochs[0]
	if math.Abs(e.Loss-ref.Exact.TrainLoss) > 1e-5*ref.Exact.TrainLoss {
		t.Errorf("epoch loss %.7f, PyTorch %.7f", e.Loss, ref.Exact.TrainLoss)
	}
	if got := int(math.Round(e.Val.Accuracy * 500)); got != ref.Exact.ValCorrect {
		t.Errorf("%d of 500 validation images right, PyTorch %d", got, ref.Exact.ValCorrect)
	}
	worst := 0.0
	for name, nested := range ref.Exact.FinalHead {
		want := flat(nested)
		got := p.Param(name).Value.Data().([]float32)
		for i := range want {
			worst = math.Max(worst, math.Abs(float64(got[i])-want[i]))
		}
	}
	if worst > 1e-5 {
		t.Errorf("head weights after one epoch differ from PyTorch's by up to %g", worst)
	}
	t.Logf("loss %.7f (PyTorch %.7f), weights within %.2g", e.Loss, ref.Exact.TrainLoss, worst)
}
