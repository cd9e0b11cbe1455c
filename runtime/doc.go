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
// supplies the graph and the symbolic differentiation, and the program runs
// the graph itself, forward and backward, dropping each value after its
// last reader and reusing its buffer (see lean.go).
// Each kernel's forward pass is checked against the ONNX backend tests
// (docs/conformance.md) and its gradient against float64 finite
// differences. Options.Float64 computes in float64, for such checks.
//
// Integer and boolean tensors known when the graph is built (shapes, axes,
// the shape arithmetic of exported graphs) are folded then: shapes are fixed
// per session, so the inputs that decide them (Reshape's shape, Resize's
// scales, Split's split) must be known then. Integer and boolean tensors
// that depend on data (comparison masks feeding Where, Gather and ScatterND
// indices, Cast to an integer type, integer arithmetic, MaxPool's Indices)
// are computed at run time as nodes of the program's float type holding
// exact integers, booleans as 0 and 1: every op that moves or selects
// elements is then exact on them as it is, and they have no gradient.
// Integer arithmetic refuses a result the float type cannot hold exactly
// (beyond 2^24 in float32, 2^53 in float64) rather than round it, and an
// op that would compute integers by float rules (Sigmoid of an int64
// tensor, say) refuses them. Integer graph inputs are fed, and integer
// outputs returned, as int64 tensors; boolean ones as bool tensors.
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
