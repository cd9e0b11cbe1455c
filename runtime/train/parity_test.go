package train

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

// parityRefs are the PyTorch losses testdata/gen/finetune_refs.py records.
type parityRefs struct {
	Frozen   []float64 `json:"frozen"`
	Full     []float64 `json:"full"`
	Full64   []float64 `json:"full_float64"`
	LR       float64   `json:"lr"`
	Momentum float64   `json:"momentum"`
	Batch    int       `json:"batch"`
	Steps    int       `json:"steps"`
	Classes  int       `json:"classes"`
}

func loadParity(t *testing.T) (string, *parityRefs) {
	const folder = "finetune_parity" // by testdata/gen/finetune_refs.py
	testenv.Big.Files(t, folder+"/losses.json", folder+"/inputs.pb", folder+"/labels.pb", folder+"/model.onnx")
	dir := testenv.Big.Path(folder)
	b, err := os.ReadFile(filepath.Join(dir, "losses.json"))
	if err != nil {
		t.Fatal(err)
	}
	var refs parityRefs
	if err := json.Unmarshal(b, &refs); err != nil {
		t.Fatal(err)
	}
	if len(refs.Frozen) != refs.Steps || len(refs.Full) != refs.Steps || len(refs.Full64) != refs.Steps || refs.Steps < 3 {
		testenv.Missing(t, "stale PyTorch fine-tuning references in %s; rerun testdata/gen/finetune_refs.py", dir)
	}
	return dir, &refs
}

// Fine-tuning the tiny ResNet with SGD and momentum gives PyTorch's loss at
// every step: (a) with the backbone frozen in eval mode, (b) with everything
// trained and BatchNorm on batch statistics.
//
// (b) cannot be compared over 20 steps in float32. Its trajectory crosses
// points where the gradient jumps (a ReLU or MaxPool tie flipping: in
// float64, parameters 1e-7 apart give gradients 0.7% apart), and which side
// a float32 run lands on is down to rounding. PyTorch's own float32 run is
// 1e-3 away from its float64 run by step 14 and 6% by step 19; graft's
// float32 runs part from float64 at step 12 with gonum's SGEMM and at step 4
// with a blocked SGEMM, both with step gradients as accurate as PyTorch's.
// So (b) is checked over all 20 steps in float64 against PyTorch in float64,
// and in float32 over the first 3 steps.
func TestParityWithPyTorch(t *testing.T) {
	dir, refs := loadParity(t)
	xt, err := onnx.LoadTensor(filepath.Join(dir, "inputs.pb"))
	if err != nil {
		t.Fatal(err)
	}
	xs, err := xt.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	lt, err := onnx.LoadTensor(filepath.Join(dir, "labels.pb"))
	if err != nil {
		t.Fatal(err)
	}
	l64, _ := lt.Int64s()
	labels := make([]int, len(l64))
	for i, l := range l64 {
		labels[i] = int(l)
	}
	x := tensor.New(tensor.WithShape(int(xt.Dims[0]), 3, 64, 64), tensor.WithBacking(xs))
	src, err := dataset.NewMemory(x, labels, refs.Batch, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		want    []float64
		float64 bool
		all     bool
		steps   int
		tol     float64
	}{
		{"frozen", refs.Frozen, false, false, refs.Steps, 1e-4},
		{"full_float64", refs.Full64, true, true, refs.Steps, 1e-3},
		{"full_float32", refs.Full, false, true, 3, 1e-3},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := onnx.Load(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			p, err := runtime.Compile(m, runtime.Options{Float64: c.float64})
			if err != nil {
				t.Fatal(err)
			}
			params := []string{"fc.weight", "fc.bias"}
			if c.all {
				params = nil
				for _, prm := range p.Params() {
					if !strings.Contains(prm.Name, "running_") {
						params = append(params, prm.Name)
					}
				}
			}
			opt, err := NewSGD(SGDOptions{LR: refs.LR, Momentum: refs.Momentum})
			if err != nil {
				t.Fatal(err)
			}
			var got []float64
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			_, err = Fit(ctx, p, src, nil, Config{
				Epochs: 1, Optimizer: opt, Params: params, Classes: refs.Classes,
				OnBatch: func(s BatchStats) {
					if got = append(got, s.Loss); len(got) == c.steps {
						stop()
					}
				},
			})
			if err != nil && !(errors.Is(err, ErrStopped) && len(got) == c.steps) {
				t.Fatal(err)
			}
			if len(got) != c.steps {
				t.Fatalf("%d steps, want %d", len(got), c.steps)
			}
			worst := 0.0
			for i := range got {
				rel := math.Abs(got[i]-c.want[i]) / math.Abs(c.want[i])
				worst = max(worst, rel)
				if rel > c.tol {
					t.Errorf("step %d: loss %.7g, PyTorch %.7g (relative difference %.2g > %g)", i+1, got[i], c.want[i], rel, c.tol)
				}
			}
			t.Logf("%s: max relative loss difference over %d steps: %.3g", c.name, len(got), worst)
		})
	}
}
