package main

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

// hardening configures training on perturbed inputs: adversarial training
// (a share of each batch replaced by FGSM examples against the model as it
// is at that step) and noise injection (Gaussian noise on every input).
type hardening struct {
	adv      string  // "" or "fgsm"
	advEps   float64 // FGSM step in pixel units
	advRatio float64 // share of each batch made adversarial
	noise    string  // "" or "gaussian"
	noiseStd float64
}

func (h hardening) active() bool { return h.adv != "" || h.noise != "" }

func (h hardening) check() error {
	switch h.adv {
	case "", "fgsm":
	default:
		return usage("--adv %q: want fgsm", h.adv)
	}
	switch h.noise {
	case "", "gaussian":
	default:
		return usage("--noise %q: want gaussian", h.noise)
	}
	if h.adv != "" && (h.advEps <= 0 || h.advEps > 1) {
		return usage("--adv-eps %g: want a pixel step in (0, 1]", h.advEps)
	}
	if h.adv != "" && (h.advRatio <= 0 || h.advRatio > 1) {
		return usage("--adv-ratio %g: want a share in (0, 1]", h.advRatio)
	}
	if h.noise != "" && h.noiseStd <= 0 {
		return usage("--noise-std %g: want a positive standard deviation", h.noiseStd)
	}
	return nil
}

// perturb returns the train.Config.Perturb function for p, the program
// being trained. Inputs must be pixels in [0, 1] (normalisation inside the
// model); perturbed inputs are clamped back to [0, 1].
func (h hardening) perturb(p *runtime.Program, seed int64) func(int, dataset.Batch) (dataset.Batch, error) {
	rng := rand.New(rand.NewSource(seed ^ 0x5eed))
	c, _ := contract.Derive(p.Model())
	loss, on := runtime.LossFor(c.Output)
	clf := &attacks.Classifier{Program: p, Output: c.Output, Loss: loss, LossOn: on}
	return func(epoch int, b dataset.Batch) (dataset.Batch, error) {
		x := b.X.Clone().(*tensor.Dense)
		data, ok := x.Data().([]float32)
		if !ok {
			return b, fmt.Errorf("hardening needs float32 inputs, got %v", x.Dtype())
		}
		if h.adv != "" {
			n := len(b.Labels)
			k := int(math.Round(h.advRatio * float64(n)))
			if k > 0 {
				adv, err := attacks.FGSM{}.Perturb(clf, b.X, attacks.Misclassification(b.Labels), []float64{h.advEps})
				if err != nil {
					return b, fmt.Errorf("adversarial examples: %w", err)
				}
				// The first k examples of the batch become adversarial
				// (batches are shuffled, so which ones varies).
				row := len(data) / n
				copy(data[:k*row], adv[0].Data().([]float32)[:k*row])
			}
		}
		if h.noise != "" {
			for i, v := range data {
				data[i] = float32(min(1, max(0, float64(v)+h.noiseStd*rng.NormFloat64())))
			}
		}
		return dataset.Batch{X: x, Labels: b.Labels}, nil
	}
}
