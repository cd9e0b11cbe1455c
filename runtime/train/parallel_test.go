package train

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/data"
	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

// fitWorkers trains a fresh MLP for 3 epochs with the given workers and
// returns the history and the final parameters.
func fitWorkers(t *testing.T, workers int) (*History, [][]float32) {
	t.Helper()
	p := compile(t, mlp(t, 1, false))
	x, labels := clusters(60, 2)
	opt, err := NewSGD(SGDOptions{LR: 0.1, Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	h, err := Fit(context.Background(), p, memory(t, x, labels, 10, true, 3), nil,
		Config{Epochs: 3, Optimizer: opt, Params: mlpParams, Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	var params [][]float32
	for _, name := range mlpParams {
		params = append(params, slices.Clone(p.Param(name).Value.Data().([]float32)))
	}
	return h, params
}

// Data-parallel training is the same training: with 1, 2 or 3 workers the
// losses and the trained weights agree up to float rounding, and for a
// fixed number of workers reruns agree bit for bit.
func TestWorkersTrainTheSame(t *testing.T) {
	h1, p1 := fitWorkers(t, 1)
	for _, workers := range []int{2, 3} {
		h, p := fitWorkers(t, workers)
		for e := range h1.Epochs {
			if d := math.Abs(h.Epochs[e].Loss - h1.Epochs[e].Loss); d > 1e-6*h1.Epochs[e].Loss {
				t.Errorf("%d workers, epoch %d: loss %.9f, one worker %.9f", workers, e+1, h.Epochs[e].Loss, h1.Epochs[e].Loss)
			}
		}
		for i := range p1 {
			for j := range p1[i] {
				if d := math.Abs(float64(p[i][j] - p1[i][j])); d > 1e-5 {
					t.Fatalf("%d workers: %s[%d] = %g, one worker %g", workers, mlpParams[i], j, p[i][j], p1[i][j])
				}
			}
		}
		_, again := fitWorkers(t, workers)
		for i := range p {
			if !slices.Equal(p[i], again[i]) {
				t.Errorf("%d workers: two runs trained %s differently", workers, mlpParams[i])
			}
		}
	}
}

// With BatchNormalization in training, each shard normalises with its own
// statistics, and only the first shard updates the running statistics, as
// nn.DataParallel does.
func TestWorkersBatchNormPerShard(t *testing.T) {
	load := func() *runtime.Program {
		m, err := onnx.Load("../../cmd/graft/demo/pretrained.onnx")
		if err != nil {
			t.Fatal(err)
		}
		return compile(t, m)
	}
	im, err := data.ReadIDXImages("../../cmd/graft/demo/train-images-idx3-ubyte.gz")
	if err != nil {
		t.Fatal(err)
	}
	all, err := data.ReadIDXLabels("../../cmd/graft/demo/train-labels-idx1-ubyte.gz")
	if err != nil {
		t.Fatal(err)
	}
	x, labels := im.Tensor(0, 8), all[:8]
	var params []string
	for _, prm := range load().Params() {
		if s := suffix(prm.Name); s != "running_mean" && s != "running_var" {
			params = append(params, prm.Name)
		}
	}
	cfg := Config{Classes: 5, Loss: runtime.CrossEntropy, Params: params}
	p := load()
	res, err := step(p, []*runtime.Program{p.Replica(1)}, dataset.Batch{X: x, Labels: labels}, tensor.Float32, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Each half alone, on its own program.
	var losses []float64
	var first *runtime.Program
	for i := range 2 {
		q := load()
		r, err := step(q, nil, dataset.Batch{X: rows(x, 4*i, 4*i+4), Labels: labels[4*i : 4*i+4]}, tensor.Float32, cfg)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, r.Loss)
		if i == 0 {
			first = q
		}
	}
	if want := (losses[0] + losses[1]) / 2; math.Abs(res.Loss-want) > 1e-6 {
		t.Errorf("2 workers: loss %.8f, the mean of the shards' losses %.8f", res.Loss, want)
	}
	for _, name := range bnStats {
		got, want := p.Param(name).Value.Data().([]float32), first.Param(name).Value.Data().([]float32)
		if !slices.Equal(got, want) {
			t.Errorf("%s after 2 workers: %v, after the first shard alone %v", name, got[:3], want[:3])
		}
	}
}

// bnStats are the stem's BatchNormalization statistics in the demo model.
var bnStats = []string{"bn1.running_mean", "bn1.running_var"}

func suffix(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '.' {
			return name[i+1:]
		}
	}
	return name
}
