package main

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/data"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/finetune"
)

// The embedded default: a small ResNet trained by testdata/gen/fashion_pretrain.py
// on Fashion-MNIST classes 0-4, and a sample of classes 5-9 to move it to.
//
//go:embed demo/pretrained.onnx demo/classes.txt demo/*-idx*-ubyte.gz
var demoFS embed.FS

func init() {
	register(&command{
		name:  "demo",
		short: "fine-tune the embedded default model (the first thing to try)",
		args:  "[-o DIR] [--epochs N] [--seed S]",
		summary: "Fine-tune the embedded default: a small ResNet pretrained on Fashion-MNIST clothes (classes 0-4) " +
			"gets a new head for shoes and bags (classes 5-9), with the backbone frozen; writes the model and a report.",
		run: runDemo,
	})
}

func runDemo(args []string, stdout io.Writer) error {
	c := lookup("demo")
	fs := newFlags(c, stdout)
	out := fs.String("o", "graft-demo", "output `DIR`")
	opts := finetune.DefaultOptions()
	fs.IntVar(&opts.Epochs, "epochs", 15, "training `EPOCHS`")
	fs.Int64Var(&opts.Seed, "seed", 0, "random `SEED`")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usage("demo takes no arguments")
	}
	opts.Out, opts.Dir = filepath.Join(*out, "model.onnx"), *out
	opts.Freeze = []string{"backbone"}
	opts.LR = 0.01
	if err := opts.Validate(); err != nil {
		return optionUsage(err, map[string]string{"Epochs": "--epochs", "Out": "-o"})
	}
	m, trainData, valData, err := demoData()
	if err != nil {
		return err
	}
	opts.ReplaceHead = len(trainData.Classes())
	p := newProgress(stdout, opts.Epochs)
	opts.OnPhase, opts.OnBatch, opts.OnEpoch = p.phase, p.batch, p.epoch
	ctx, stop := interruptible()
	defer stop()
	fmt.Fprintf(stdout, "graft demo: %d training and %d validation images of %s\n", trainData.Len(), valData.Len(), strings.Join(trainData.Classes(), ", "))
	res, err := finetune.Run(ctx, m, trainData, valData, opts)
	if err != nil {
		return err
	}
	h := res.History
	fmt.Fprintf(stdout, "best validation accuracy %.2f%% (epoch %d) in %.1f s; wrote model.onnx, report.md, metrics.json, training.png in %s\n",
		100*h.BestAccuracy, h.BestEpoch+1, res.Seconds, *out)
	fmt.Fprintf(stdout, "look at the new model with: graft inspect %s\n", opts.Out)
	return nil
}

// demoData returns the embedded model and its training and validation
// data, named by classes.txt.
func demoData() (m *onnx.Model, trainData, valData *dataset.Dataset, err error) {
	raw, err := demoFS.ReadFile("demo/pretrained.onnx")
	if err != nil {
		return nil, nil, nil, err
	}
	if m, err = onnx.Decode(raw); err != nil {
		return nil, nil, nil, fmt.Errorf("embedded model: %w", err)
	}
	names, err := demoFS.ReadFile("demo/classes.txt")
	if err != nil {
		return nil, nil, nil, err
	}
	classes := strings.Split(strings.TrimSpace(string(names)), "\n")
	read := func(split string) (*dataset.Dataset, error) {
		arrays := make([]*data.IDXArray, 2)
		for i, kind := range []string{"images-idx3", "labels-idx1"} {
			name := "demo/" + split + "-" + kind + "-ubyte.gz"
			b, err := demoFS.ReadFile(name)
			if err != nil {
				return nil, err
			}
			if arrays[i], err = data.DecodeIDX(bytes.NewReader(b)); err != nil {
				return nil, fmt.Errorf("embedded %s: %w", name, err)
			}
		}
		im, lb := arrays[0], arrays[1]
		if len(im.Dims) != 3 || len(lb.Dims) != 1 {
			return nil, fmt.Errorf("embedded %s data: images %v, labels %v", split, im.Dims, lb.Dims)
		}
		labels := make([]int, len(lb.Data))
		for i, b := range lb.Data {
			labels[i] = int(b)
		}
		ds, err := dataset.FromIDX(&data.IDXImages{Count: im.Dims[0], Rows: im.Dims[1], Cols: im.Dims[2], Pixels: im.Data}, labels, "embedded "+split+" data")
		if err != nil {
			return nil, err
		}
		return ds.WithClassNames(classes...)
	}
	if trainData, err = read("train"); err != nil {
		return nil, nil, nil, err
	}
	if valData, err = read("val"); err != nil {
		return nil, nil, nil, err
	}
	return m, trainData, valData, nil
}
