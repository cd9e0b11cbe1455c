// Package dataset provides the labelled image sets that fine-tuning and
// robustness reports read, and the loader that turns them into training
// batches.
//
// Data sets:
//
//	ImageFolder(root)            torchvision's layout: root/CLASS/IMAGE, classes sorted
//	ImageFolders(train, val)     two folders with the same classes
//	IDX(images, labels)          MNIST-style IDX files, held in memory; labels are class numbers, without gaps
//	IDX(images, labels, 5, 7)    only classes 5 and 7, relabelled 0, 1
//	ds.Select(5, 6, 7, 8, 9)     keep some classes, relabelled 0..4
//	ds.PerClass(100, seed)       at most 100 examples a class, chosen by seed
//	Split(ds, 0.2, seed)         stratified training/validation split
//	ds.CheckClasses(k)           every label a class of a k-class model
//
// With the SkipBad option ImageFolder decodes every image up front, in
// parallel, and leaves out (and counts) those that fail; otherwise a
// corrupt image is an error naming its file when its batch loads.
//
// Batches reach training, evaluation and attacks through one interface,
// Source: a Loader over a data set, or Memory over examples already in a
// tensor. A Loader is an Ordered Source over a data set: shuffled
// per epoch from a seed, images decoded and preprocessed by GOMAXPROCS
// workers a few batches ahead of training, random augmentation drawn per
// example from (seed, epoch, example) so batches do not depend on
// scheduling. Preprocessing describes the torchvision-style preprocessing
// for a model's input size and makes a loader Config:
//
//	pp := dataset.ForInput(3, 224, 224) // Resize(256), CenterCrop(224), ImageNet mean/std
//	pp.Augment = true                   // RandomResizedCrop(224), RandomHorizontalFlip
//	cfg, err := pp.Config(trainSet, 32, true, seed)
//	src, err := dataset.NewLoader(trainSet, cfg)
//	for b, err := range src.Batches(epoch) { ... }
package dataset
