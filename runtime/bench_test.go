package runtime

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

// BenchmarkResNet18Inference times a forward pass of the full-size
// torchvision ResNet-18 (BatchNorm folded, as PyTorch exports by default),
// with the weights fixed as graft run has them, and reports allocations
// per run: the activations come from the session's pool, so what a run
// allocates is bookkeeping and its output. testdata/gen/benchmarks.py
// times graft bench beside onnxruntime-node for the ratio.
func BenchmarkResNet18Inference(b *testing.B) {
	path := testenv.Big.Files(b, "resnet18_op13_folded/model.onnx")[0]
	m, err := onnx.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	p, err := Compile(m, Options{FixedWeights: true})
	if err != nil {
		b.Fatal(err)
	}
	for _, batch := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) {
			b.ReportAllocs()
			x := tensor.New(tensor.WithShape(batch, 3, 224, 224), tensor.Of(tensor.Float32))
			data := x.Data().([]float32)
			for i := range data {
				data[i] = float32(i%255) / 255
			}
			if _, err := p.Run(x); err != nil { // compile this batch size once
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := p.Run(x); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/run")
		})
	}
	_ = filepath.Base(path)
}

// BenchmarkResNet18Gradients times the two backward passes graft runs on
// a full-size ResNet-18 (BatchNorm kept) at batch 8: a training step's
// gradients for every parameter, with BatchNormalization on batch
// statistics, and the input gradient an FGSM step takes (weights fixed),
// and reports what a step allocates once the session exists.
func BenchmarkResNet18Gradients(b *testing.B) {
	path := testenv.Big.Files(b, "resnet18_op13_bn/model.onnx")[0]
	m, err := onnx.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 8
	x := tensor.New(tensor.WithShape(batch, 3, 224, 224), tensor.Of(tensor.Float32))
	data := x.Data().([]float32)
	for i := range data {
		data[i] = float32(i%255) / 255
	}
	for _, c := range []struct {
		name string
		opts Options
	}{{"train", Options{}}, {"input", Options{FixedWeights: true}}} {
		b.Run(c.name, func(b *testing.B) {
			p, err := Compile(m, c.opts)
			if err != nil {
				b.Fatal(err)
			}
			targets, err := p.OneHot([]int{0, 1, 2, 3, 4, 5, 6, 7}, 1000)
			if err != nil {
				b.Fatal(err)
			}
			req := &Request{Inputs: []*tensor.Dense{x}, Targets: targets, Loss: CrossEntropy}
			if c.opts.FixedWeights {
				req.InputGrads = true
			} else {
				req.Train = true
				for _, prm := range p.Params() {
					if !strings.Contains(prm.Name, "running_") {
						req.Params = append(req.Params, prm.Name)
					}
				}
			}
			b.ReportAllocs()
			if _, err := p.Step(req); err != nil { // compile once
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := p.Step(req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/step")
		})
	}
}
