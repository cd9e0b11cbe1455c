package attacks_test

import (
	"context"
	"fmt"
	"log"

	"github.com/graft-dev/graft/attacks"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/data"
	"github.com/graft-dev/graft/runtime/dataset"
)

// Sweep FGSM over 500 held-out MNIST digits with the LeNet of PyTorch's
// FGSM tutorial: accuracy falls as eps grows.
func ExampleSweep() {
	dir := "../testdata/models/lenet_mnist/"
	m, err := onnx.Load(dir + "model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	c, err := attacks.NewClassifier(m, runtime.Options{})
	if err != nil {
		log.Fatal(err)
	}
	images, err := data.ReadIDXImages(dir + "heldout-images-idx3-ubyte.gz")
	if err != nil {
		log.Fatal(err)
	}
	labels, err := data.ReadIDXLabels(dir + "heldout-labels-idx1-ubyte.gz")
	if err != nil {
		log.Fatal(err)
	}
	x := images.Tensor(0, 500) // [500, 1, 28, 28], pixels in [0, 1]
	src, err := dataset.NewMemory(x, labels[:500], 100, false, 0)
	if err != nil {
		log.Fatal(err)
	}
	r, err := attacks.Sweep(c, src, attacks.Config{
		Attack: attacks.FGSM{},
		Eps:    []float64{0, 0.1, 0.2, 0.3},
	})
	if err != nil {
		log.Fatal(err)
	}
	// r.WriteDir("report") would write report.json, report.md and the pictures.
	for _, p := range r.Points {
		fmt.Printf("eps %.1f: accuracy %.2f\n", p.Eps, p.Accuracy)
	}
	// Output:
	// eps 0.0: accuracy 0.97
	// eps 0.1: accuracy 0.77
	// eps 0.2: accuracy 0.40
	// eps 0.3: accuracy 0.09
}

// A robustness report in one call, as graft robustness makes it: PGD on
// the first 200 held-out MNIST digits. The model's contract decides how the
// digits are fed (1x28x28 pixels in [0, 1], no normalisation) and how its
// scores are read (log-probabilities: the loss is NLL).
func ExampleRobustness() {
	dir := "../testdata/models/lenet_mnist/"
	m, err := onnx.Load(dir + "model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	digits, err := dataset.IDX(dir+"heldout-images-idx3-ubyte.gz", dir+"heldout-labels-idx1-ubyte.gz")
	if err != nil {
		log.Fatal(err)
	}
	r, err := attacks.Robustness(context.Background(), m, digits, attacks.RobustnessOptions{
		Attack: &attacks.PGD{Steps: 5, Seed: 1},
		Eps:    []float64{0, 0.05, 0.1},
		Limit:  200,
	})
	if err != nil {
		log.Fatal(err)
	}
	// r.WriteDir("report") writes report.json, report.md and the pictures.
	for _, p := range r.Points {
		fmt.Printf("eps %.2f: accuracy %.3f\n", p.Eps, p.Accuracy)
	}
	// Output:
	// eps 0.00: accuracy 0.975
	// eps 0.05: accuracy 0.865
	// eps 0.10: accuracy 0.705
}

// A targeted PGD attack on a batch: make every digit read as a 3.
func ExampleRun() {
	dir := "../testdata/models/lenet_mnist/"
	m, err := onnx.Load(dir + "model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	c, err := attacks.NewClassifier(m, runtime.Options{})
	if err != nil {
		log.Fatal(err)
	}
	images, _ := data.ReadIDXImages(dir + "heldout-images-idx3-ubyte.gz")
	labels, _ := data.ReadIDXLabels(dir + "heldout-labels-idx1-ubyte.gz")
	x, labels := images.Tensor(0, 50), labels[:50]
	targets := make([]int, len(labels))
	for i := range targets {
		targets[i] = 3
	}
	pgd := &attacks.PGD{Steps: 20, Alpha: 0.02, Seed: 1}
	outs, err := attacks.Run(c, pgd, x, attacks.TargetedMisclassification(labels, targets), []float64{0.05, 0.3})
	if err != nil {
		log.Fatal(err)
	}
	for _, o := range outs {
		n := 0
		for _, s := range o.Success {
			if s {
				n++
			}
		}
		fmt.Printf("eps %.2f: %d of %d classified as 3\n", o.Eps, n, len(labels))
	}
	fmt.Printf("(%d of the %d digits is a 3)\n", count(labels, 3), len(labels))
	// Output:
	// eps 0.05: 2 of 50 classified as 3
	// eps 0.30: 49 of 50 classified as 3
	// (1 of the 50 digits is a 3)
}

func count(labels []int, c int) int {
	n := 0
	for _, l := range labels {
		if l == c {
			n++
		}
	}
	return n
}
