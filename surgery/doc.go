// Package surgery edits ONNX models for transfer learning, on the graph IR
// of package onnx.
//
// # Overview
//
//   - FindHead and HeadAt find the classifier head (a Gemm, a MatMul + Add,
//     or a 1x1 Conv before pooling) and its in and out features.
//   - Apply runs edits as one transaction: on a copy, then sorted, cleaned,
//     shape-inferred and validated; the model changes only if all succeed.
//   - Edits: ReplaceHead (a new Linear(in, k)), Freeze and Unfreeze (the
//     trainable set, stored in the model's metadata under TrainableKey),
//     Initialize (typed per-op rules such as DCGAN()), InsertAfter (new nodes
//     between a value and its readers), Normalize (input normalisation inside
//     the model), InsertSpatialTransformer (a spatial transformer in front of
//     the classifier, starting at the identity), Cut (a feature extractor)
//     and From (the part after a value).
//   - Compose chains two models into one computing second(first(x)), the
//     second's names prefixed and opsets merged: a generator and its
//     discriminator make a GAN that trains through one program.
//   - Selectors pick parameters by role and place: Backbone, HeadParams,
//     OpType, Prefix, Glob; Params lists them with the op and role that
//     read each.
//   - Find and FindChains look nodes up by name, op type or op chain.
package surgery
