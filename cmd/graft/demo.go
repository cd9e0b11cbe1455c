package main

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/data"
	"github.com/graft-dev/graft/runtime/dataset"
)

// The embedded default: a small ResNet trained by testdata/gen/fashion_pretrain.py
// on Fashion-MNIST classes 0-4, and a sample of classes 5-9 to move it to.
//
//go:embed demo/pretrained.onnx demo/classes.txt demo/*-idx*-ubyte.gz
var demoFS embed.FS

func init() {
	register(&command{
		name: "demo",
		args: "[-o DIR] [--epochs N]",
		summary: "Fine-tune the embedded default: a small ResNet pretrained on Fashion-MNIST clothes (classes 0-4) " +
			"gets a new head for shoes and bags (classes 5-9), with the backbone frozen; writes the model and a report.",
		run: runDemo,
	})
}

func runDemo(args []string, stdout io.Writer) error {
	c := lookup("demo")
	fs := newFlags(c, stdout)
	out := fs.String("o", "graft-demo", "output `DIR`")
	epochs := fs.Int("epochs", 15, "training `EPOCHS`")
	seed := fs.Int64("seed", 0, "random `SEED`")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usage("demo takes no arguments")
	}
	if *epochs < 1 {
		return usage("--epochs %d: want at least 1", *epochs)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("output folder: %w", err)
	}
	if err := checkWritable(filepath.Join(*out, "model.onnx")); err != nil {
		return err
	}
	job, err := demoJob(*out, *epochs, *seed, stdout)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fmt.Fprintf(stdout, "graft demo: %d training and %d validation images of %s\n", job.train.Len(), job.val.Len(), strings.Join(job.classes, ", "))
	res, err := job.run(ctx)
	if err != nil {
		return err
	}
	return writeDemoReport(job, res, stdout)
}

// demoJob builds the fine-tuning job on the embedded model and data.
func demoJob(out string, epochs int, seed int64, progress io.Writer) (*finetuneJob, error) {
	raw, err := demoFS.ReadFile("demo/pretrained.onnx")
	if err != nil {
		return nil, err
	}
	m, err := onnx.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("embedded model: %w", err)
	}
	names, err := demoFS.ReadFile("demo/classes.txt")
	if err != nil {
		return nil, err
	}
	classes := strings.Fields(strings.ReplaceAll(string(names), " ", "_"))
	trainSrc, err := demoSource("train", 32, true, seed)
	if err != nil {
		return nil, err
	}
	valSrc, err := demoSource("val", 256, false, seed)
	if err != nil {
		return nil, err
	}
	return &finetuneJob{
		model: m, classes: classes, train: trainSrc, val: valSrc,
		replaceHead: len(classes), freeze: []string{"backbone"},
		epochs: epochs, optimizer: "sgd", lr: 0.01, momentum: 0.9, seed: seed,
		out: filepath.Join(out, "model.onnx"), metricsDir: out,
		progress: progress, terminal: progress == io.Writer(os.Stdout) && isTerminal(os.Stdout),
	}, nil
}

// demoSource reads one embedded IDX split into memory.
func demoSource(split string, batch int, shuffle bool, seed int64) (dataset.Source, error) {
	read := func(name string) (*data.IDXArray, error) {
		b, err := demoFS.ReadFile("demo/" + name)
		if err != nil {
			return nil, err
		}
		a, err := data.DecodeIDX(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("embedded %s: %w", name, err)
		}
		return a, nil
	}
	im, err := read(split + "-images-idx3-ubyte.gz")
	if err != nil {
		return nil, err
	}
	lb, err := read(split + "-labels-idx1-ubyte.gz")
	if err != nil {
		return nil, err
	}
	if len(im.Dims) != 3 || len(lb.Dims) != 1 || im.Dims[0] != lb.Dims[0] {
		return nil, fmt.Errorf("embedded %s data: images %v and labels %v do not match", split, im.Dims, lb.Dims)
	}
	images := &data.IDXImages{Count: im.Dims[0], Rows: im.Dims[1], Cols: im.Dims[2], Pixels: im.Data}
	labels := make([]int, len(lb.Data))
	for i, b := range lb.Data {
		labels[i] = int(b)
	}
	return dataset.NewMemory(images.Tensor(0, images.Count), labels, batch, shuffle, seed)
}

func writeDemoReport(j *finetuneJob, res *finetuneResult, stdout io.Writer) error {
	h := res.history
	if h == nil || len(h.Epochs) == 0 {
		return fmt.Errorf("no epoch finished")
	}
	best := h.Epochs[0]
	for _, e := range h.Epochs {
		if e.Epoch == h.BestEpoch {
			best = e
		}
	}
	last := h.Epochs[len(h.Epochs)-1]
	var b strings.Builder
	fmt.Fprintf(&b, "# graft demo\n\n")
	fmt.Fprintf(&b, "A small ResNet pretrained on Fashion-MNIST classes 0-4 (clothes) was given a new head for classes 5-9 (%s),\n", strings.Join(j.classes, ", "))
	fmt.Fprintf(&b, "with the backbone frozen (%d trainable parameter tensors: %s).\n\n", len(res.trainable), strings.Join(res.trainable, ", "))
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| training / validation images | %d / %d |\n", j.train.Len(), j.val.Len())
	fmt.Fprintf(&b, "| optimizer | SGD, lr %g, momentum %g, %d epochs |\n", j.lr, j.momentum, len(h.Epochs))
	fmt.Fprintf(&b, "| backbone features | %s |\n", map[bool]string{true: "computed once and cached", false: "recomputed every epoch"}[res.cached])
	fmt.Fprintf(&b, "| best validation accuracy | %.2f%% (epoch %d) |\n", 100*best.Val.Accuracy, best.Epoch+1)
	fmt.Fprintf(&b, "| last validation accuracy | %.2f%% |\n", 100*last.Val.Accuracy)
	fmt.Fprintf(&b, "| time | %.1f s |\n", res.seconds)
	if res.stopped {
		fmt.Fprintf(&b, "| stopped | interrupted; the best checkpoint is kept |\n")
	}
	fmt.Fprintf(&b, "\nFiles: `model.onnx` (the best epoch's model), `metrics.json`, `training.png`.\n")
	fmt.Fprintf(&b, "Look at the new model with `graft inspect %s`.\n", j.out)
	if err := fileio.WriteFile(filepath.Join(j.metricsDir, "report.md"), []byte(b.String())); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "best validation accuracy %.2f%% (epoch %d) in %.1f s; wrote %s, report.md, metrics.json, training.png in %s\n",
		100*best.Val.Accuracy, best.Epoch+1, res.seconds, filepath.Base(j.out), j.metricsDir)
	return nil
}
