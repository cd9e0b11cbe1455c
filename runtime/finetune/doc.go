// Package finetune is the whole fine-tuning job, as graft finetune and
// graft demo run it, in one call:
//
//	m, _ := onnx.Load("resnet18.onnx")
//	data, _ := dataset.ImageFolder("photos")
//	opts := finetune.DefaultOptions()
//	opts.Freeze = []string{"backbone"}
//	opts.Out = "out/model.onnx"
//	res, err := finetune.Run(ctx, m, data, nil, opts)
//
// Run replaces the classifier head when the data's class count differs
// (surgery.ReplaceHead), applies the Freeze and Unfreeze selectors, feeds
// the images as the model's contract says (package onnx/contract: size,
// resize, normalisation), trains with the chosen optimizer and schedule,
// validates after every epoch, and writes the best epoch's model with the
// contract and the class names in its metadata, so graft run, graft
// robustness and a later fine-tuning feed it the same way.
//
// Where the time goes is decided in Run: a head-only run on inputs that
// are the same every epoch computes the frozen backbone's features once
// (train.SplitAtHead, CacheFeatures, FitHeadOnFeatures) and every epoch
// after the first costs next to nothing; augmentation, hardening or
// NoCache train the whole model with train.Fit.
//
// The features can also be computed apart, on many machines:
// ComputeFeatures runs the backbone over a data set or one shard of it
// (FeatureOptions.Shard, see dataset.Shard), WriteFile and ReadFeatures
// keep them in a safetensors file that records the model's SHA-256, the
// split point, the preprocessing, the data's fingerprint, the examples'
// indices and labels and the class names, MergeFeatures joins the shards,
// and RunOnFeatures trains the head on them. Run's cache is computed and
// trained by the same code, so the two write the same model, byte for
// byte:
//
//	f, _ := finetune.ComputeFeatures(ctx, m, data, finetune.FeatureOptions{Batch: 32, Shard: dataset.Shard{Index: 2, Count: 4}})
//	f.WriteFile("feats/2/features.safetensors")
//	// once every shard is done:
//	all, _ := finetune.MergeFeatures(parts...) // finetune.ReadFeatures("feats/0"), ...
//	res, err := finetune.RunOnFeatures(ctx, m, all, nil, opts) // opts.Batch 32, the backbone frozen
//
// Hardening (Options.Adversarial, Options.NoiseStd) trains on FGSM
// examples or noisy inputs, in [0, 1] pixel space: a model that normalises
// outside gets its normalisation put inside first (surgery.Normalize).
//
// Files, in Options.Dir (Out's folder by default): metrics.json (the
// History), training.png (loss and accuracy per epoch), report.md, and
// checkpoint/, committed as one unit after every epoch so that Resume
// continues a stopped or killed run exactly where it was; Resume refuses a
// checkpoint made from another model, other data or other settings. No
// output may replace an input, and two runs cannot write into one folder
// at once.
package finetune
