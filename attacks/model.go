package attacks

import (
	"errors"
	"fmt"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/surgery"
	"gorgonia.org/tensor"
)

// A Model is a classifier the attacks query. Inputs are batches [N, ...] of
// pixels in [0, 1]; scores are [N, K] logits or log-probabilities.
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
	// Loss is runtime.NLL for a model ending in LogSoftmax (the negative
	// log-likelihood, PyTorch's nll_loss) and runtime.CrossEntropy for one
	// ending in logits.
	Loss    runtime.Loss
	classes int // 0 until known
}

// NewClassifier compiles m for attacking. The loss follows the model's last
// node: NLL after a LogSoftmax, cross-entropy on logits otherwise. A final
// Softmax is left out (on a copy of m): the attacks then work on its input,
// the logits, and predictions and confidences are unchanged.
func NewClassifier(m *onnx.Model, opts runtime.Options) (*Classifier, error) {
	if m == nil || m.Graph == nil || len(m.Graph.Outputs) == 0 {
		return nil, errors.New("attacks: the model has no outputs")
	}
	if n := m.Graph.Outputs[0].Producer(); n != nil && n.OpType == "Softmax" && len(n.Inputs) == 1 && n.Inputs[0] != nil {
		c, err := m.Clone()
		if err != nil {
			return nil, err
		}
		if err := surgery.Apply(c, surgery.Cut(n.Inputs[0].Name)); err != nil {
			return nil, err
		}
		m = c
	}
	p, err := runtime.Compile(m, opts)
	if err != nil {
		return nil, err
	}
	if n := len(p.Inputs()); n != 1 {
		return nil, fmt.Errorf("attacks: the model has %d inputs, want one image input", n)
	}
	c := &Classifier{Program: p, Loss: LossFor(m)}
	if t := m.Graph.Outputs[0].Type; t != nil && len(t.Shape) == 2 && t.Shape[1].Known() {
		c.classes = int(t.Shape[1].Value)
	}
	return c, nil
}

// LossFor returns runtime.NLL when m's first output is made by LogSoftmax,
// runtime.CrossEntropy otherwise.
func LossFor(m *onnx.Model) runtime.Loss {
	if n := m.Graph.Outputs[0].Producer(); n != nil && n.OpType == "LogSoftmax" {
		return runtime.NLL
	}
	return runtime.CrossEntropy
}

// LossName names the loss, for reports.
func (c *Classifier) LossName() string {
	if c.Loss == runtime.NLL {
		return "nll (the model ends in LogSoftmax)"
	}
	return "cross-entropy on logits"
}

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
	res, err := c.Program.Step(&runtime.Request{Inputs: []*tensor.Dense{x}, Targets: targets, Loss: c.Loss, InputGrads: true})
	if err != nil {
		return nil, nil, err
	}
	return res.Outputs[0], res.InputGrads[0], nil
}
