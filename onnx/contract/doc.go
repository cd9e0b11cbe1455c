// Package contract decides, in one place, what a classifier expects and
// what it outputs: its model contract.
//
// The input side is how images become the model's input: layout (NCHW),
// channels, size, the resize before the center crop, the pixel scale and
// the normalisation, or the fact that the model normalises its input
// itself. The output side is what the first output holds (logits,
// log-probabilities or probabilities) and the class names.
//
// Derive works the contract out for any model: from what graft stored in
// the model's metadata when it wrote it (Store, key "graft.contract"), else
// from the graph, else from documented defaults (torchvision's ImageNet
// preprocessing). Every command and library entry point that feeds a model
// images or reads its scores starts from Derive; flags only override its
// fields. Fine-tuning stores the contract it trained with, so running,
// attacking or fine-tuning the result again feeds it the same way.
//
// Two rules follow from the output kind, each written once:
//   - confidences: Output.Probabilities turns a row of scores into class
//     probabilities (softmax of logits, exp of log-probabilities,
//     probabilities as they are);
//   - losses: runtime.LossFor picks the loss training and attacks
//     differentiate: cross-entropy on logits, the negative log-likelihood
//     on log-probabilities, and for probabilities made by a final Softmax
//     or Sigmoid, cross-entropy on that node's input (the logits), so the
//     gradient never goes through a saturated exp.
//
// Attacks work in [0, 1] pixel space: Input.PixelNormalization gives the
// (x - mean) / std that turns such pixels into the model's input, which
// attacks put inside the model and image loaders apply after ToTensor.
package contract
