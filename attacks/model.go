package attacks

import (
	"errors"
	"fmt"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"gorgonia.org/tensor"
)

// A Model is a classifier the attacks query. Inputs are batches [N, ...] of
// pixels in [0, 1]; scores are [N, K]: logits, unless the model says
// otherwise with a method ScoreKind() contract.Output, as Classifier does.
type Model interface {
	// Forward returns the scores for a batch.
	Forward(x *tensor.Dense) (*tensor.Dense, error)
	// Gradient returns the scores for x and the gradient, with respect to
	// x, of the classification loss of the given classes (one per example),
	// averaged over the batch. The average scales the gradient by 1/N, which
	// leaves its sign, all the attacks use, unchanged.
	Gradient(x *tensor.Dense, classes []int) (scores, grad *tensor.Dense, err error)
}

// A Classifier is a Model backed by a compiled ONNX model. Its first graph
// output is the scores; it must have one graph input.
type Classifier struct {
	Program *runtime.Program
	// Output is the model's output contract: what its scores are (see
	// contract.Derive); predictions and confidences follow it.
	Output contract.Output
	// Loss is the loss the attacks differentiate and LossOn the value it
	// reads, by runtime.LossFor: cross-entropy on logits, NLL on
	// log-probabilities, and for a model ending in Softmax or Sigmoid
	// cross-entropy on that node's input, its logits.
	Loss    runtime.Loss
	LossOn  string
	classes int // 0 until known
}

// NewClassifier compiles m for attacking, with the loss and the reading of
// its scores its contract gives (contract.Derive, runtime.LossFor).
func NewClassifier(m *onnx.Model, opts runtime.Options) (*Classifier, error) {
	if m == nil || m.Graph == nil || len(m.Graph.Outputs) == 0 {
		return nil, errors.New("attacks: the model has no outputs")
	}
	c, err := contract.Derive(m)
	if err != nil {
		return nil, fmt.Errorf("attacks: %w", err)
	}
	p, err := runtime.Compile(m, opts)
	if err != nil {
		return nil, err
	}
	if n := len(p.Inputs()); n != 1 {
		return nil, fmt.Errorf("attacks: the model has %d inputs, want one image input", n)
	}
	loss, on := runtime.LossFor(c.Output)
	return &Classifier{Program: p, Output: c.Output, Loss: loss, LossOn: on, classes: c.Output.NumClasses}, nil
}

// LossName names the loss, for reports.
func (c *Classifier) LossName() string {
	if c.LossOn != "" {
		return fmt.Sprintf("%s (%q, before the final %s)", c.Loss, c.LossOn, c.Output.Activation)
	}
	return c.Loss.String()
}

// ScoreKind says what the scores are, for predictions and confidences.
func (c *Classifier) ScoreKind() contract.Output { return c.Output }

// Forward runs the model in inference mode.
func (c *Classifier) Forward(x *tensor.Dense) (*tensor.Dense, error) {
	out, err := c.Program.Run(x)
	if err != nil {
		return nil, err
	}
	s := out[0]
	if len(s.Shape()) != 2 {
		return nil, fmt.Errorf("attacks: the model's output has shape %v, want [batch, classes]", s.Shape())
	}
	c.classes = s.Shape()[1]
	return s, nil
}

// Gradient runs the model forward and backward, in inference mode.
func (c *Classifier) Gradient(x *tensor.Dense, classes []int) (scores, grad *tensor.Dense, err error) {
	if c.classes == 0 {
		if _, err := c.Forward(x); err != nil {
			return nil, nil, err
		}
	}
	targets, err := c.Program.OneHot(classes, c.classes)
	if err != nil {
		return nil, nil, err
	}
	res, err := c.Program.Step(&runtime.Request{Inputs: []*tensor.Dense{x}, Targets: targets, Loss: c.Loss, LossOn: c.LossOn, InputGrads: true})
	if err != nil {
		return nil, nil, err
	}
	return res.Outputs[0], res.InputGrads[0], nil
}

// scoreKind returns what m's scores are: what it says (ScoreKind), logits
// otherwise.
func scoreKind(m Model) contract.Output {
	if k, ok := m.(interface{ ScoreKind() contract.Output }); ok {
		return k.ScoreKind()
	}
	return contract.Output{Kind: contract.Logits}
}
