package finetune

import (
	"fmt"
	"math"
	"math/rand"

	"github.com/graft-dev/graft/attacks"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

// perturber returns train.Config.Perturb for hardening the model compiled
// as p: adversarial training replaces the first round(Ratio*n) examples of
// each batch (batches are shuffled, so which ones varies) by FGSM examples
// against the model as it is at that step; noise injection adds Gaussian
// noise to every input. Inputs are pixels in [0, 1] (Run puts any
// normalisation inside the model) and stay clamped to [0, 1].
func perturber(p *runtime.Program, opts Options) func(int, dataset.Batch) (dataset.Batch, error) {
	rng := rand.New(rand.NewSource(opts.Seed ^ 0x5eed))
	c, err := contract.Derive(p.Model())
	if err != nil {
		return func(int, dataset.Batch) (dataset.Batch, error) { return dataset.Batch{}, err }
	}
	loss, on := runtime.LossFor(c.Output)
	clf := &attacks.Classifier{Program: p, Output: c.Output, Loss: loss, LossOn: on}
	adv, noise := opts.Adversarial, opts.NoiseStd
	return func(epoch int, b dataset.Batch) (dataset.Batch, error) {
		x := b.X.Clone().(*tensor.Dense)
		data, ok := x.Data().([]float32)
		if !ok {
			return b, fmt.Errorf("hardening needs float32 inputs, got %v", x.Dtype())
		}
		if adv.Eps > 0 {
			n := len(b.Labels)
			if k := int(math.Round(adv.Ratio * float64(n))); k > 0 {
				advX, err := attacks.FGSM{}.Perturb(clf, b.X, attacks.Misclassification(b.Labels), []float64{adv.Eps})
				if err != nil {
					return b, fmt.Errorf("adversarial examples: %w", err)
				}
				row := len(data) / n
				copy(data[:k*row], advX[0].Data().([]float32)[:k*row])
			}
		}
		if noise > 0 {
			for i, v := range data {
				data[i] = float32(min(1, max(0, float64(v)+noise*rng.NormFloat64())))
			}
		}
		return dataset.Batch{X: x, Labels: b.Labels}, nil
	}
}
