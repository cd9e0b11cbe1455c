// Package train fine-tunes compiled models: optimizers with PyTorch's
// update rules (SGD, Adam, AdamW) whose state can be saved and resumed,
// per-epoch learning-rate schedules, data sources of minibatches, and Fit,
// the training loop, with validation, progress callbacks, checkpoints,
// cancellation and NaN detection. When only a classifier's head trains,
// SplitAtHead, CacheFeatures and FitHeadOnFeatures compute the frozen
// backbone's features once and train the head on them.
//
// Parameters are updated in place in the program's live tensors
// (runtime.Param.Value); Program.WriteBack then onnx.Save write the trained
// model.
package train
