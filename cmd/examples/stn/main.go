// Command stn trains a classifier's architecture from scratch twice, as it
// is and with a spatial transformer in front (surgery.InsertSpatialTransformer,
// what graft surgery --insert-stn does), on the same data, epochs and seed,
// and reports both validation accuracies. It writes both models, a picture
// of validation digits beside their transformed versions, and report.json.
//
//	go run ./cmd/examples/stn --model testdata/models/lenet_mnist/model.onnx \
//	    --train DIGITS-idx3-ubyte.gz --val testdata/models/lenet_mnist/heldout-images-idx3-ubyte.gz -o out/stn
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	o := DefaultOptions()
	flag.StringVar(&o.Model, "model", "", "the classifier `MODEL.onnx` whose architecture is trained")
	flag.StringVar(&o.Train, "train", "", "training data: an IDX images `FILE` (labels beside it) or an image folder")
	flag.StringVar(&o.Val, "val", "", "validation data, the same way")
	flag.IntVar(&o.PerClass, "per-class", 0, "keep `N` training examples a class (0: all)")
	flag.StringVar(&o.Out, "o", "", "output `DIR`")
	flag.IntVar(&o.Epochs, "epochs", o.Epochs, "epochs")
	flag.IntVar(&o.Batch, "batch", o.Batch, "batch size")
	flag.Float64Var(&o.LR, "lr", o.LR, "Adam's learning rate")
	flag.StringVar(&o.Schedule, "schedule", o.Schedule, "learning-rate schedule: none, cosine or step:SIZE,GAMMA")
	flag.Int64Var(&o.Seed, "seed", o.Seed, "random seed")
	flag.Parse()
	if o.Model == "" || o.Train == "" || o.Val == "" || o.Out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "stn: want --model, --train, --val and -o, and no arguments")
		os.Exit(2)
	}
	o.Log = func(s string) { fmt.Println(s) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, o)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "stn: interrupted")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "stn:", err)
		os.Exit(1)
	}
	fmt.Print(res)
}
