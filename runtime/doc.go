// Package runtime runs ONNX models and differentiates them, in pure Go on
// Gorgonia.
//
// # Overview
//
// Compile prepares a model; Program.Run computes its outputs, and
// Program.Step runs one forward and backward pass: a loss (CrossEntropy on
// logits, NLL on log-probabilities) against one-hot targets (OneHot), and
// its gradient with respect to the parameters named in Request.Params and,
// with Request.InputGrads, to the inputs, as FGSM needs. Params exposes the
// model's float initializers as live tensors an optimizer updates in place
// (package runtime/train), and WriteBack copies them into the model for
// onnx.Save.
//
// A Program builds one Gorgonia graph per input shape and request, the
// first time it is used, and reuses it. Every ONNX operator is a kernel of
// this package (SupportedOps lists them) adapted to a gorgonia.Op; Gorgonia
// supplies the graph, the symbolic differentiation and the tape machine.
// Each kernel's forward pass is checked against the ONNX backend tests
// (docs/conformance.md) and its gradient against float64 finite
// differences. Options.Float64 computes in float64, for such checks.
//
// Integer tensors (shapes, axes, indices) are evaluated when the graph is
// built, as PyTorch's exports use them; only float tensors flow at run time.
//
// In a training step (Request.Train), Dropout drops and BatchNormalization
// uses batch statistics and updates its running statistics, but only in
// the layers whose parameters are being trained: frozen layers keep their
// inference form, as fine-tuning a frozen backbone wants.
//
// Compile names every node whose operator is missing (ErrUnsupported); bad
// inputs, targets or parameter names are errors naming them; a panic inside
// Gorgonia or a kernel comes back as an error.
package runtime
