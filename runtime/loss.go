package runtime

import "github.com/graft-dev/graft/onnx/contract"

// LossFor returns the classification loss for a model's output and the
// value it reads (empty: the output itself), by the output's kind: the one
// rule training, evaluation and attacks follow.
//
//   - logits: CrossEntropy on the output;
//   - log-probabilities: NLL on the output (PyTorch's nll_loss on a final
//     log_softmax);
//   - probabilities made by a final Softmax or Sigmoid: CrossEntropy on that
//     node's input, the logits; the gradient then does not pass through an
//     exp that may have saturated, and the loss equals the one of the same
//     network ending in logits (for a Sigmoid, the classes are taken as
//     exclusive, as a single-label classifier's are);
//   - other probabilities: ProbabilityNLL on the output.
func LossFor(out contract.Output) (loss Loss, on string) {
	switch out.Kind {
	case contract.LogProbabilities:
		return NLL, ""
	case contract.Probabilities:
		if out.Logits != "" && (out.Activation == "Softmax" || out.Activation == "Sigmoid") {
			return CrossEntropy, out.Logits
		}
		return ProbabilityNLL, ""
	}
	return CrossEntropy, ""
}
