// Package attacks runs adversarial attacks on ONNX classifiers and measures
// robustness: accuracy against the size of an L-inf perturbation.
//
// # Pixel space
//
// Inputs are batches [N, C, H, W] (any shape with the batch first) of
// pixels in [0, 1], and eps is in those units: eps 8/255 changes each
// pixel by at most 8 levels. A model that expects normalised inputs
// ((x - mean) / std) gets the normalisation inside the model, in front of
// its input, with surgery.Normalize (Robustness does this from the
// contract): then the attack's clamp to [0, 1] and its eps-ball are in
// pixel space, where they mean something, and the gradient flows through
// the normalisation.
//
// # Attacks
//
// The API follows Foolbox: a model, a batch, a criterion and a list of
// radii in; one adversarial batch per radius and per-example success out.
//
//	c, _ := attacks.NewClassifier(model, runtime.Options{})
//	outs, _ := attacks.Run(c, attacks.FGSM{}, x, attacks.Misclassification(labels), []float64{0, 0.1, 0.3})
//	// outs[k].X: adversarial batch at eps[k]; outs[k].Pred, outs[k].Success
//
// FGSM (Goodfellow et al.) takes one step x' = clamp(x + eps*sign(g), 0, 1)
// with g the gradient of the loss with respect to x; one gradient serves
// all radii. BIM (Kurakin et al.) takes Steps such steps of size Alpha, each
// followed by projection onto the eps-ball around x and onto [0, 1]. PGD
// (Madry et al.) is BIM from a random start, uniform in the eps-ball, drawn
// from a generator seeded by PGD.Seed (PGD.Start draws one, as Perturb
// does). Both default to 10 steps of size 2.5*eps/steps.
//
// Untargeted attacks (Misclassification) step up the loss of the true label
// and succeed when the prediction changes from it; targeted ones
// (TargetedMisclassification) step down the loss of the target class and
// succeed when the model predicts it.
//
// The loss and the reading of the scores follow the model's contract
// (package contract): cross-entropy on logits, NLL for a model ending in
// LogSoftmax (PyTorch's nll_loss on log_softmax), and for a model ending in
// Softmax or Sigmoid cross-entropy on that node's input, the logits
// (runtime.LossFor); confidences are the class probabilities the contract's
// kind gives. The loss is the mean over the batch, which scales the
// gradient by 1/N and leaves its sign unchanged, so results do not depend
// on the batch size. The gradient is graft's own (package runtime); the
// step is computed as PyTorch computes it, in the model's element type, so
// on the full-size ResNet-18 graft's FGSM batch equals PyTorch's bit for
// bit wherever the two gradients have the same sign.
//
// Any type with Forward and Gradient methods is a Model; Classifier wraps a
// compiled ONNX model.
//
// # Sweeps and reports
//
// Sweep runs an attack over a data set, served as a dataset.Source (a
// dataset.Loader over image files, or dataset.NewMemory over a tensor), at each eps (DefaultEps are the
// PyTorch FGSM tutorial's 0 to 0.3), and reports per eps: accuracy (at eps
// 0 exactly the clean accuracy), attack success rate over the initially
// correct examples, mean confidence (softmax probability of the predicted
// class), accuracy per class and the largest perturbation applied. Report.
// WriteDir writes report.json, report.md (settings and tables),
// accuracy_vs_eps.png and examples.png (the first examples, clean and
// attacked at each eps, with their predictions, as in the tutorial).
//
// # Robustness in one call
//
// Robustness is what graft robustness does, in one call: a model, a
// labelled data set (an image folder or IDX files, package dataset) and
// options in, a Report out, which WriteDir writes as report.json,
// report.md and two pictures.
//
//	m, _ := onnx.Load("model.onnx")
//	digits, _ := dataset.IDX("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
//	r, _ := attacks.Robustness(ctx, m, digits, attacks.RobustnessOptions{
//		Attack: &attacks.PGD{Steps: 10, Seed: 1},
//		Eps:    []float64{0, 0.05, 0.1},
//	})
//	r.WriteDir("report")
//
// It follows the model's contract (package contract): the examples are
// fed at the contract's channels, size and resize, the contract's
// normalisation is put inside a copy of the model (unless the model
// normalises its input itself), and the loss and the confidences follow
// the contract's output kind. Overrides change what the contract says;
// labels the model has no class for are refused, naming the example.
//
// # Shards: one sweep on many machines
//
// A long sweep (PGD-10 over 50,000 images at 7 radii) can run as the tasks
// of a batch system's array job: RobustnessOptions.Shard attacks one shard
// of the examples (dataset.Shard: blocks of the batch size, in the data
// set's order after Limit, dealt round robin to the shards) and returns a
// shard's report, whose Detail holds every example's outcome; WriteDir
// writes it as report.json alone. Merge checks that the parts belong
// together (the same settings, model SHA-256, data fingerprint and shard
// count; every shard once) and computes the whole sweep's report with the
// code a single run uses, over the examples in the single run's order:
// every number and both pictures equal the single run's, bit for bit.
// Each shard attacks exactly the batches a single run would (PGD draws
// each batch's random starts from a stream of its own), so the examples'
// outcomes are the same too.
//
//	r, _ := attacks.Robustness(ctx, m, data, attacks.RobustnessOptions{..., Shard: dataset.Shard{Index: 2, Count: 7}})
//	r.WriteDir("parts/2")
//	// once every shard is done, anywhere:
//	parts := []*attacks.Report{...} // attacks.ReadReport("parts/0"), ...
//	whole, _ := attacks.Merge(parts...)
//	whole.WriteDir("report")
//
// On 2,000 held-out MNIST digits (testdata/models/lenet_mnist), graft's FGSM
// sweep of the tutorial's LeNet trained in PyTorch gives the same accuracy
// as PyTorch's at every eps to within 0.05 points. BIM and PGD follow
// PyTorch's path step by step, bit for bit, up to the first step whose
// gradient has a component within rounding of zero, which 95 to 100 of 100
// digits never meet (testdata/gen/pgd_refs.py).
package attacks
