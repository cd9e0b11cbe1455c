package runtime

import (
	"fmt"
	"math"

	"github.com/graft-dev/graft/onnx"
)

// registerActivation adds the activations of modern classifiers:
// MobileNetV3's HardSigmoid and HardSwish, the transformers' exact GELU
// (Erf, or Gelu from opset 20) and Softplus. Each is computed in float64
// and rounded once, and differentiated as PyTorch does at its kinks.
func registerActivation[T Float](r registry[T]) {
	act := func(name string, f, df func(x float64) float64) opBuilder[T] {
		return func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
			x, err := input0(in)
			if err != nil {
				return nil, err
			}
			return one(b.apply(&unary[T]{name: name, shape: x.shape,
				f:  func(x T) T { return T(f(float64(x))) },
				df: func(x, _ T) T { return T(df(float64(x))) }}, x))
		}
	}
	r["Erf"] = act("Erf", math.Erf, func(x float64) float64 { return 2 / math.Sqrt(math.Pi) * math.Exp(-x*x) })
	r["Softplus"] = act("Softplus",
		// log(1 + e^x) without overflow for large x or loss for very negative x.
		func(x float64) float64 { return max(x, 0) + math.Log1p(math.Exp(-math.Abs(x))) },
		func(x float64) float64 { return float64(sigmoid(x)) })
	// PyTorch's hardswish: x * relu6(x + 3) / 6. Its gradient is x/3 + 1/2
	// on [-3, 3), 1 from 3 on: PyTorch 1.13's vectorised CPU kernel, which
	// computes all but the few elements past a tensor's last full vector
	// (its scalar tail gives 3/2 at exactly 3).
	r["HardSwish"] = act("HardSwish",
		func(x float64) float64 { return x * min(max(x+3, 0), 6) / 6 },
		func(x float64) float64 {
			switch {
			case x < -3:
				return 0
			case x < 3:
				return x/3 + 0.5
			}
			return 1
		})
	r["HardSigmoid"] = func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
		alpha, beta := float64(n.AttrFloat("alpha", 0.2)), float64(n.AttrFloat("beta", 0.5))
		// The gradient is alpha strictly inside the linear part, as
		// PyTorch's hardsigmoid (alpha 1/6, beta 1/2) gives it.
		return act(fmt.Sprintf("HardSigmoid(%g,%g)", alpha, beta),
			func(x float64) float64 { return min(max(alpha*x+beta, 0), 1) },
			func(x float64) float64 {
				if y := alpha*x + beta; y > 0 && y < 1 {
					return alpha
				}
				return 0
			})(b, n, in)
	}
	r["Gelu"] = func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
		switch a := n.AttrString("approximate", "none"); a {
		case "none":
			return act("Gelu", gelu, dGelu)(b, n, in)
		case "tanh":
			return act("Gelu(tanh)", geluTanh, dGeluTanh)(b, n, in)
		default:
			return nil, fmt.Errorf("attribute approximate=%q is not one of \"none\", \"tanh\"", a)
		}
	}
}

// gelu is x * Phi(x), Phi the standard normal distribution function.
func gelu(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }

func dGelu(x float64) float64 {
	return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-0.5*x*x)/math.Sqrt(2*math.Pi)
}

// geluTanh is GELU's tanh approximation, PyTorch's gelu(approximate="tanh").
const geluC = 0.7978845608028654 // sqrt(2/pi)

func geluTanh(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(geluC*(x+0.044715*x*x*x)))
}

func dGeluTanh(x float64) float64 {
	t := math.Tanh(geluC * (x + 0.044715*x*x*x))
	return 0.5*(1+t) + 0.5*x*(1-t*t)*geluC*(1+3*0.044715*x*x)
}
