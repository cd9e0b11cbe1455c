package runtime

import (
	"fmt"
	"path/filepath"
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
