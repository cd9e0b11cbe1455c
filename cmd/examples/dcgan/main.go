// Command dcgan trains DCGAN (a convolutional generator and discriminator,
// Radford et al.) on 28x28 gray images through graft's Go API, as PyTorch's
// DCGAN tutorial does: two Adams (lr 2e-4, beta1 0.5), DCGAN's weight
// initialisation, BatchNorm in train mode. After every epoch it writes a
// grid of 64 samples from fixed noise, the loss plot, the metrics and both
// networks as ONNX models.
//
//	go run ./cmd/examples/dcgan --data DIGITS-idx3-ubyte.gz -o out/dcgan
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
	flag.StringVar(&o.Data, "data", "", "real images: an IDX images `FILE` (labels beside it) or an image folder, 28x28 gray")
	flag.StringVar(&o.Out, "o", "", "output `DIR`")
	flag.IntVar(&o.Epochs, "epochs", o.Epochs, "epochs")
	flag.IntVar(&o.Batch, "batch", o.Batch, "batch size")
	flag.IntVar(&o.MaxBatches, "max-batches", 0, "end each epoch after `N` batches (0: all)")
	flag.IntVar(&o.Sizes.Z, "nz", o.Sizes.Z, "noise size")
	flag.IntVar(&o.Sizes.NGF, "ngf", o.Sizes.NGF, "generator width")
	flag.IntVar(&o.Sizes.NDF, "ndf", o.Sizes.NDF, "discriminator width")
	flag.Float64Var(&o.LR, "lr", o.LR, "both Adams' learning rate")
	flag.Float64Var(&o.Beta1, "beta1", o.Beta1, "both Adams' first beta")
	flag.Int64Var(&o.Seed, "seed", o.Seed, "random seed")
	flag.Parse()
	if o.Data == "" || o.Out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "dcgan: want --data FILE|DIR and -o DIR, and no arguments")
		os.Exit(2)
	}
	if err := o.Check(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	o.Log = func(s string) { fmt.Println(s) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := Run(ctx, o); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "dcgan: interrupted; the files of the last finished epoch are kept")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "dcgan:", err)
		os.Exit(1)
	}
}
