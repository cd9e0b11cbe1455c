package predict

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/data"
	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

// Defaults for the zero Options.
const (
	DefaultTopK  = 5
	DefaultBatch = 16
)

// Options configure a Predictor. The zero value is ready to use.
type Options struct {
	// TopK is the number of classes reported per example, most probable
	// first; 0 means DefaultTopK.
	TopK int
	// Batch is the number of examples per run of the model; 0 means
	// DefaultBatch. A model whose input fixes the batch size runs batches
	// of that size, the last one padded with copies of its last example.
	Batch int
	// Overrides change what contract.Derive found: the image
	// preprocessing (resize, crop, mean and std) and the class names.
	Overrides contract.Overrides
}

// Validate checks the options on their own, before any model is read.
func (o Options) Validate() error {
	if o.TopK < 0 {
		return fmt.Errorf("predict: top-k %d, want 1 or more (0 for %d)", o.TopK, DefaultTopK)
	}
	if o.Batch < 0 {
		return fmt.Errorf("predict: batch size %d, want 1 or more (0 for %d)", o.Batch, DefaultBatch)
	}
	return nil
}

// A Predictor classifies examples with one compiled model. It is not safe
// for concurrent use.
type Predictor struct {
	prog     *runtime.Program
	contract *contract.Contract
	input    *onnx.Value
	output   string
	topK     int
	batch    int
	fixed    int // the batch size the model's input fixes, 0 if free
}

// New compiles m and works out its contract (contract.Derive, then the
// overrides). m must have one float input; its first output holds the
// class scores.
func New(m *onnx.Model, opts Options) (*Predictor, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if m == nil || m.Graph == nil {
		return nil, errors.New("predict: no model")
	}
	var inputs []*onnx.Value
	var names []string
	for _, v := range m.Graph.Inputs {
		if !v.IsConst() {
			inputs = append(inputs, v)
			names = append(names, strconv.Quote(v.Name))
		}
	}
	if len(inputs) != 1 {
		return nil, fmt.Errorf("the model has %d inputs (%s); predictions feed models with one input", len(inputs), strings.Join(names, ", "))
	}
	in := inputs[0]
	if in.Type != nil && in.Type.Elem != onnx.Float && in.Type.Elem != onnx.Undefined {
		return nil, fmt.Errorf("input %q is %s; predictions feed float32 inputs", in.Name, in.Type.Elem)
	}
	c, err := contract.Derive(m)
	if err != nil {
		return nil, err
	}
	if err := c.Override(opts.Overrides); err != nil {
		return nil, err
	}
	prog, err := runtime.Compile(m, runtime.Options{FixedWeights: true})
	if err != nil {
		return nil, err
	}
	p := &Predictor{prog: prog, contract: c, input: in, output: c.Output.Name, topK: opts.TopK, batch: opts.Batch}
	if p.topK == 0 {
		p.topK = DefaultTopK
	}
	if p.batch == 0 {
		p.batch = DefaultBatch
	}
	if in.Type != nil && len(in.Type.Shape) > 0 && in.Type.Shape[0].Known() && in.Type.Shape[0].Value > 0 {
		p.fixed = int(in.Type.Shape[0].Value)
		p.batch = p.fixed
	}
	if c.Input.Layout == contract.NCHW {
		// A batch of images must fit in graft's memory limit; refuse now,
		// before any image is read, if it would not.
		est, err := prog.Estimate(runtime.Plan{Inputs: [][]int{{p.batch, c.Input.Channels, c.Input.Height, c.Input.Width}}})
		if err != nil {
			return nil, err
		}
		if err := est.Check(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Contract returns the contract the predictor follows: the model's, with
// the overrides applied. Its Notes and Warnings belong in any report of
// the results.
func (p *Predictor) Contract() *contract.Contract { return p.contract }

// Preprocessing returns the image preprocessing the contract asks for
// (dataset.PreprocessingFor), or an error saying why the model cannot be
// fed images.
func (p *Predictor) Preprocessing() (dataset.Preprocessing, error) {
	return dataset.PreprocessingFor(p.contract.Input)
}

// A Result holds the predictions for a set of examples.
type Result struct {
	// Contract is the contract followed (see Predictor.Contract).
	Contract *contract.Contract
	// Preprocessing is the image preprocessing applied; nil when a tensor
	// was fed as is.
	Preprocessing *dataset.Preprocessing
	// Scores is the model's first output for every example, raw, joined
	// along the batch dimension ([N, K] for a classifier), named as the
	// graph output. A single example whose output has no batch dimension
	// keeps the output's own shape.
	Scores *onnx.Tensor
	// Examples are the examples in order, each with its top classes.
	Examples []Example
}

// An Example is one example's top classes.
type Example struct {
	// Source names the example: its image file, or FILE[i] for the i-th
	// example of a tensor file with several.
	Source string
	// Top are the most probable classes, most probable first (the lower
	// class first on ties).
	Top []Class
}

// A Class is one entry of an example's top list.
type Class struct {
	Class int
	// Label is the class name from the contract (or Overrides.Classes), ""
	// when the classes are unnamed.
	Label string
	// Probability follows the contract's output kind
	// (contract.Output.Probabilities).
	Probability float64
	// Score is the raw output value.
	Score float64
}

// Path classifies what path holds: an image (PNG, JPEG, GIF), a folder of
// images (every image file in it, sorted by name; sub-folders are not
// read) or, for a name ending in .pb, a TensorProto fed as is (see Tensor).
func (p *Predictor) Path(ctx context.Context, path string) (*Result, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", path, fileio.Reason(err))
	}
	if st.IsDir() {
		paths, err := ListImages(path)
		if err != nil {
			return nil, err
		}
		return p.Images(ctx, paths)
	}
	if strings.EqualFold(filepath.Ext(path), ".pb") {
		t, err := onnx.LoadTensor(path)
		if err != nil {
			return nil, err
		}
		return p.Tensor(ctx, t, path)
	}
	return p.Images(ctx, []string{path})
}

// ListImages returns the image files in dir (by extension,
// data.IsImageFile), sorted by name; it fails when there are none.
func ListImages(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", dir, fileio.Reason(err))
	}
	var paths []string
	for _, e := range entries {
		if !e.IsDir() && data.IsImageFile(e.Name()) {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("input %s: no images (.png, .jpg, .jpeg, .gif) in the folder", dir)
	}
	sort.Strings(paths)
	return paths, nil
}

// Images preprocesses the image files as the contract says and classifies
// them, in batches, in order. An image that cannot be read is an error
// naming it (a *data.Error).
func (p *Predictor) Images(ctx context.Context, paths []string) (*Result, error) {
	if len(paths) == 0 {
		return nil, errors.New("predict: no images")
	}
	pre, err := p.Preprocessing()
	if err != nil {
		return nil, err
	}
	pipe := pre.Pipeline()
	acc := p.newAccumulator(paths)
	for lo := 0; lo < len(paths); lo += p.batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		chunk := paths[lo:min(lo+p.batch, len(paths))]
		ts := make([]*data.Tensor, 0, max(len(chunk), p.fixed))
		for _, path := range chunk {
			t, err := pipe.Load(path)
			if err != nil {
				return nil, err
			}
			ts = append(ts, t)
		}
		for len(ts) < p.fixed {
			ts = append(ts, ts[len(ts)-1])
		}
		x, err := data.Stack(ts)
		if err != nil {
			return nil, err
		}
		if err := acc.run(p.prog, x, len(chunk)); err != nil {
			return nil, err
		}
	}
	return acc.result(p, &pre)
}

// Tensor classifies the examples of x, fed as is: a float32 tensor of the
// input's shape, or of its shape without the batch dimension (one example,
// to which a batch dimension of 1 is added). A tensor of two or more
// dimensions is a batch [N, ...]; it runs in batches of Options.Batch.
// source names the examples in the result (source, or source[i] when there
// are several) and in errors.
func (p *Predictor) Tensor(ctx context.Context, x *onnx.Tensor, source string) (*Result, error) {
	in := p.input
	if x.DType != onnx.Float {
		return nil, fmt.Errorf("%s is a %s tensor; input %q expects float32", source, x.DType, in.Name)
	}
	vals, err := x.Float32s()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	dims := slices.Clone(x.Dims)
	if in.Type != nil && in.Type.Shape != nil {
		want := in.Type.Shape
		if len(dims) == len(want)-1 && fits(dims, want[1:]) {
			dims = append([]int64{1}, dims...)
		}
		// The batch dimension may differ from a fixed one: examples run
		// in batches of that size.
		if len(dims) != len(want) || len(dims) == 0 || !fits(dims[1:], want[1:]) {
			return nil, fmt.Errorf("%s has shape %s; input %q expects %s", source, dimString(dims), in.Name, want)
		}
	}
	if len(dims) == 0 || len(vals) == 0 {
		return nil, fmt.Errorf("%s has shape %s; input %q needs a non-empty tensor", source, dimString(dims), in.Name)
	}
	shape := make([]int, len(dims))
	for i, d := range dims {
		shape[i] = int(d)
	}
	n := 1
	if len(shape) >= 2 {
		n = shape[0]
	}
	sources := []string{source}
	if n > 1 {
		sources = make([]string, n)
		for i := range sources {
			sources[i] = fmt.Sprintf("%s[%d]", source, i)
		}
	}
	acc := p.newAccumulator(sources)
	if n == 1 && p.fixed <= 1 {
		if err := acc.run(p.prog, tensor.New(tensor.WithShape(shape...), tensor.WithBacking(vals)), 1); err != nil {
			return nil, err
		}
		return acc.result(p, nil)
	}
	row := len(vals) / n
	for lo := 0; lo < n; lo += p.batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+p.batch, n)
		b := append([]float32(nil), vals[lo*row:hi*row]...)
		rows := hi - lo
		for ; rows < p.fixed; rows++ {
			b = append(b, vals[(hi-1)*row:hi*row]...)
		}
		s := slices.Clone(shape)
		s[0] = rows
		if err := acc.run(p.prog, tensor.New(tensor.WithShape(s...), tensor.WithBacking(b)), hi-lo); err != nil {
			return nil, err
		}
	}
	return acc.result(p, nil)
}

// fits reports whether dims match shape's fixed dimensions.
func fits(dims []int64, shape onnx.Shape) bool {
	if len(dims) != len(shape) {
		return false
	}
	for i, d := range shape {
		if d.Known() && d.Value != dims[i] {
			return false
		}
	}
	return true
}

func dimString(dims []int64) string {
	s := make([]string, len(dims))
	for i, d := range dims {
		s[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(s, ",") + "]"
}

// An accumulator gathers the first output's rows, batch by batch.
type accumulator struct {
	sources  []string
	scores   []float32
	rowShape []int // the shape of one example's scores
	whole    []int // set when a single example's output is kept as it is
	done     int
}

func (p *Predictor) newAccumulator(sources []string) *accumulator {
	return &accumulator{sources: sources}
}

// run feeds x, whose first `real` examples are wanted (the rest pad a
// fixed batch), and keeps their rows of the first output.
func (a *accumulator) run(prog *runtime.Program, x *tensor.Dense, real int) error {
	first := a.sources[a.done]
	outs, err := prog.Run(x)
	if err != nil {
		return fmt.Errorf("run on %s: %w", first, err)
	}
	y := outs[0]
	vals, ok := y.Data().([]float32)
	if !ok {
		return fmt.Errorf("run on %s: the first output is %v, want float32 class scores", first, y.Dtype())
	}
	s := y.Shape()
	rows := x.Shape()[0]
	if len(a.sources) == 1 && (len(s) < 2 || s[0] != rows) {
		// One example, and an output without a batch dimension: all of it
		// is that example's scores.
		a.whole = slices.Clone([]int(s))
		a.scores = append(a.scores, vals...)
		a.done++
		return nil
	}
	if len(s) < 2 || s[0] != rows {
		return fmt.Errorf("run on %s: output of shape %v has no batch dimension of %d: run the examples one by one", first, s, rows)
	}
	per := len(vals) / rows
	a.scores = append(a.scores, vals[:real*per]...)
	a.rowShape = slices.Clone([]int(s[1:]))
	a.done += real
	return nil
}

// result checks the scores and ranks the classes of every example.
func (a *accumulator) result(p *Predictor, pre *dataset.Preprocessing) (*Result, error) {
	n := len(a.sources)
	k := len(a.scores) / n
	dims := make([]int64, 0, len(a.rowShape)+1)
	if a.whole != nil {
		for _, d := range a.whole {
			dims = append(dims, int64(d))
		}
	} else {
		dims = append(dims, int64(n))
		for _, d := range a.rowShape {
			dims = append(dims, int64(d))
		}
	}
	out := p.contract.Output
	// Finite scores first: a NaN would make every ranking after it a lie.
	for i := range n {
		for j, v := range a.scores[i*k : (i+1)*k] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("%s: output %q is %v for class %d: the model computes no scores for it", a.sources[i], p.output, v, j)
			}
		}
	}
	if out.Classes != nil && len(out.Classes) != k {
		return nil, fmt.Errorf("%d class names for the %d scores of output %q", len(out.Classes), k, p.output)
	}
	scores, err := onnx.FromFloat32(p.output, dims, a.scores)
	if err != nil {
		return nil, err
	}
	r := &Result{Contract: p.contract, Preprocessing: pre, Scores: scores, Examples: make([]Example, n)}
	row := make([]float64, k)
	idx := make([]int, k)
	for i := range n {
		for j, v := range a.scores[i*k : (i+1)*k] {
			row[j] = float64(v)
		}
		prob := out.Probabilities(row)
		for j := range idx {
			idx[j] = j
		}
		sort.SliceStable(idx, func(x, y int) bool { return prob[idx[x]] > prob[idx[y]] })
		ex := Example{Source: a.sources[i]}
		for _, c := range idx[:min(p.topK, k)] {
			ex.Top = append(ex.Top, Class{Class: c, Label: labelOf(out, c), Probability: prob[c], Score: row[c]})
		}
		r.Examples[i] = ex
	}
	return r, nil
}

func labelOf(out contract.Output, c int) string {
	if c < len(out.Classes) {
		return out.Classes[c]
	}
	return ""
}
