package bench

import (
	"context"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
)

// Every mode runs and reports what it timed; a bad mode is an error.
func TestModes(t *testing.T) {
	m, err := onnx.Load("../../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range Modes {
		r, err := Run(context.Background(), m, Options{Mode: mode, Batch: 2, Iters: 3, Warmup: 1, Threads: 1})
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if r.Mode != mode || len(r.Times) != 3 || r.Min > r.Median || r.Median > r.Max || r.Threads != 1 ||
			r.ImagesPerSec <= 0 || r.PeakRSS <= 0 {
			t.Errorf("%s: %+v", mode, r)
		}
	}
	if _, err := Run(context.Background(), m, Options{Mode: "sing"}); err == nil || !strings.Contains(err.Error(), `mode "sing"`) {
		t.Errorf("bad mode: %v", err)
	}
}

// The head-only step trains the head's two parameters; the full step every
// parameter but BatchNormalization statistics.
func TestTrainedParameters(t *testing.T) {
	m, err := onnx.Load("../../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	head, err := trained(m, TrainHead)
	if err != nil || len(head) != 2 || head[0] != "fc.weight" || head[1] != "fc.bias" {
		t.Errorf("head-only: %v, %v", head, err)
	}
	all, err := trained(m, Train)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range all {
		if strings.HasSuffix(name, "running_mean") || strings.HasSuffix(name, "running_var") {
			t.Errorf("full training trains the statistic %s", name)
		}
	}
	if len(all) != 62 {
		t.Errorf("full training trains %d parameters, want the 62 weights, biases and BatchNorm scales and shifts", len(all))
	}
}
