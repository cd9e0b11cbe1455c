package train

import (
	"context"
	"slices"
	"testing"
)

// The best epoch is the first with the highest validation accuracy: an
// epoch that only ties it is not better, and does not replace the saved
// model.
func TestBestEpochKeepsTheFirstOfATie(t *testing.T) {
	p := compile(t, mlp(t, 1, false))
	x, labels := clusters(30, 3)
	vx, vlabels := clusters(30, 4)
	// A rate so small that no prediction changes: every epoch ties.
	opt, err := NewSGD(SGDOptions{LR: 1e-12})
	if err != nil {
		t.Fatal(err)
	}
	var best []bool
	h, err := Fit(context.Background(), p, memory(t, x, labels, 10, false, 0), memory(t, vx, vlabels, 10, false, 0), Config{
		Epochs: 3, Optimizer: opt, Params: mlpParams,
		Checkpoint: func(_ int, _ EpochStats, b bool) error { best = append(best, b); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if h.Epochs[0].Val.Accuracy != h.Epochs[2].Val.Accuracy {
		t.Fatalf("the accuracy changed: %+v", h.Epochs)
	}
	if !slices.Equal(best, []bool{true, false, false}) || h.BestEpoch != 0 {
		t.Errorf("best flags %v, best epoch %d", best, h.BestEpoch)
	}
}
