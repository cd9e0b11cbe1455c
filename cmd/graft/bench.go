package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime/pprof"
	"slices"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/bench"
)

func init() {
	register(&command{
		name:  "bench",
		short: "time inference, an FGSM step or a training step on a model",
		args:  "MODEL.onnx [--mode infer|fgsm|train|train-head] [--batch N] [--iters K] [--threads T] [--json]",
		summary: "Time the work graft does with a model on a batch of noise of its input size: inference, an FGSM\n" +
			"step (forward, gradient to the input, signed step), a full training step (every parameter,\n" +
			"training-mode BatchNorm, SGD with momentum) or a head-only one. After warm-up runs, prints the\n" +
			"median, minimum and maximum time, images per second and the process's peak memory.",
		run: runBench,
	})
}

func runBench(args []string, stdout io.Writer) error {
	c := lookup("bench")
	fs := newFlags(c, stdout)
	var opts bench.Options
	mode := fs.String("mode", string(bench.Infer), "what to time: `MODE` infer, fgsm, train or train-head")
	fs.IntVar(&opts.Batch, "batch", 1, "`N` images a run")
	fs.IntVar(&opts.Iters, "iters", 10, "`K` timed runs")
	fs.IntVar(&opts.Warmup, "warmup", 3, "`W` untimed runs first")
	fs.IntVar(&opts.Threads, "threads", 0, "cores to use, `T` (default: all)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the runs to `FILE` (go tool pprof reads it)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usage("want exactly one model file, got %d arguments", len(pos))
	}
	opts.Mode = bench.Mode(*mode)
	switch {
	case !validMode(opts.Mode):
		return usage("--mode %q: want infer, fgsm, train or train-head", *mode)
	case opts.Batch < 1 || opts.Iters < 1 || opts.Warmup < 0 || opts.Threads < 0:
		return usage("--batch and --iters must be at least 1, --warmup and --threads at least 0")
	}
	m, err := onnx.Load(pos[0])
	if err != nil {
		return err
	}
	ctx, stop := interruptible()
	defer stop()
	var prof bytes.Buffer
	if *profile != "" {
		if err := pprof.StartCPUProfile(&prof); err != nil {
			return err
		}
	}
	r, err := bench.Run(ctx, m, opts)
	if *profile != "" {
		pprof.StopCPUProfile()
		if err == nil {
			err = fileio.WriteFile(*profile, prof.Bytes())
		}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	ms := func(d interface{ Seconds() float64 }) string { return fmt.Sprintf("%.1f ms", 1000*d.Seconds()) }
	fmt.Fprintf(stdout, "%s: %s, batch %d, %d threads, %d runs: median %s (min %s, max %s), %.1f images/s, peak memory %s\n",
		pos[0], r.Mode, r.Batch, r.Threads, len(r.Times), ms(r.Median), ms(r.Min), ms(r.Max), r.ImagesPerSec, humanBytes(r.PeakRSS))
	return nil
}

func validMode(m bench.Mode) bool { return slices.Contains(bench.Modes, m) }
