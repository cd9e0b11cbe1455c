package finetune

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/train"
	"github.com/graft-dev/graft/surgery"
	"gorgonia.org/tensor"
)

// Features are a frozen backbone's outputs for the examples of a data set,
// or of one shard of it: what the feature cache holds (train.SplitAtHead's
// extractor run over the images, fed as the model's contract says), with
// what they were computed from, so that features of another model, split
// point, preprocessing or data are never mixed or trained on by mistake.
//
// ComputeFeatures makes them (graft features), WriteFile and ReadFeatures
// keep them in a portable file (see WriteFile), MergeFeatures joins the
// shards, and RunOnFeatures trains a head on them as Run trains on its own
// cache: the same code, so the model written is byte for byte the same.
type Features struct {
	// ModelSHA256 is the model's SHA-256 (onnx.SHA256): features are
	// trained on only with the model they came from.
	ModelSHA256 string
	// SplitAt is the value the extractor ends in: the head's input.
	SplitAt string
	// Preprocessing is how the images were fed to the model.
	Preprocessing dataset.Preprocessing
	// Data names the data set; DataFingerprint is its dataset.Fingerprint
	// and Examples its number of examples, Classes its class names.
	Data            string
	DataFingerprint string
	Examples        int
	Classes         []string
	// Block is the number of examples the extractor ran on at once, the
	// block size of the shard split (dataset.Shard), and Shard the part of
	// the data set held (0/1: all of it).
	Block int
	Shard dataset.Shard
	// Index lists the examples held (increasing indices into the data
	// set), Labels their labels, and Values their features, [len(Index),
	// the features' shape...], float32 or float64 as the model computes.
	Index  []int
	Labels []int
	Values *tensor.Dense
}

// FeatureOptions configure ComputeFeatures.
type FeatureOptions struct {
	// Batch is the number of images the extractor runs on at once and the
	// block size of the shard split: Run's cache uses Options.Batch, so
	// the same value makes the same features bit for bit. 0 means
	// DefaultOptions' batch.
	Batch int
	// Shard, when set, computes only that shard of the examples (see
	// dataset.Shard); MergeFeatures joins the shards.
	Shard dataset.Shard
	// Overrides change the model's contract as Options.Overrides do: give
	// the ones the fine-tuning will use.
	Overrides contract.Overrides
	// Data names the data set in the features; data.Source() when empty.
	Data string
	// Progress, when set, is called after each batch with the examples
	// done and the number to do.
	Progress func(done, total int)
}

// ComputeFeatures runs the frozen part of classifier m (everything before
// its head, train.SplitAtHead) over the examples of data, or of one shard
// of it, and returns their features. The images are fed as m's contract
// with the overrides says, in data's order, opts.Batch at a time, as Run's
// feature cache feeds them: the features of a fine-tuning run with the
// same model, data, overrides and batch size are these, bit for bit, and
// so are the shards' features merged. m is not changed.
func ComputeFeatures(ctx context.Context, m *onnx.Model, data *dataset.Dataset, opts FeatureOptions) (*Features, error) {
	if m == nil || m.Graph == nil {
		return nil, errors.New("features: no model")
	}
	if data == nil || data.Len() == 0 {
		return nil, errors.New("features: no examples")
	}
	if opts.Batch == 0 {
		opts.Batch = DefaultOptions().Batch
	}
	if opts.Batch < 1 {
		return nil, bad("Batch", opts.Batch, "want at least 1")
	}
	if err := opts.Shard.Check(); err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	if (len(opts.Overrides.Mean) == 0) != (len(opts.Overrides.Std) == 0) {
		return nil, bad("Overrides", "", "give both a mean and a std")
	}
	if err := m.CheckFinite(); err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	c, err := contract.Derive(m)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	if err := c.Override(opts.Overrides); err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	pre, err := dataset.PreprocessingFor(c.Input)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	sum, err := onnx.SHA256(m)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	return computeFeatures(ctx, m, nil, data, pre, sum, opts)
}

// computeFeatures is ComputeFeatures after the checks, and Run's feature
// cache: params are the parameters that will train, which must lie in the
// head.
func computeFeatures(ctx context.Context, m *onnx.Model, params []string, data *dataset.Dataset, pre dataset.Preprocessing, sum string, opts FeatureOptions) (*Features, error) {
	h, err := surgery.FindHead(m.Graph)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	extractor, _, err := train.SplitAtHead(m, params)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	ep, err := backboneProgram(extractor, opts.Batch, pre)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	shard := opts.Shard
	if shard.Count == 0 {
		shard = dataset.Shard{Index: 0, Count: 1}
	}
	idx := shard.Examples(data.Len(), opts.Batch)
	if len(idx) == 0 {
		blocks := (data.Len() + opts.Batch - 1) / opts.Batch
		return nil, fmt.Errorf("features: shard %v holds no examples: %d examples in batches of %d make %d blocks, so at most %d shards", shard, data.Len(), opts.Batch, blocks, blocks)
	}
	part := data.Subset(idx)
	cfg, err := pre.Config(part, opts.Batch, false, 0)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	loader, err := dataset.NewLoader(part, cfg)
	if err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	cached, err := train.CacheFeatures(ctx, ep, loader, opts.Progress)
	if err != nil {
		return nil, err
	}
	values, labels, err := gatherAll(cached)
	if err != nil {
		return nil, err
	}
	name := opts.Data
	if name == "" {
		name = data.Source()
	}
	return &Features{
		ModelSHA256: sum, SplitAt: h.Node.Input(0).Name, Preprocessing: pre,
		Data: name, DataFingerprint: data.Fingerprint(), Examples: data.Len(), Classes: data.Classes(),
		Block: opts.Batch, Shard: shard, Index: idx, Labels: labels, Values: values,
	}, nil
}

// backboneProgram compiles a frozen backbone (SplitAtHead's extractor) for
// inference, its weights fixed, and refuses a batch through it before any
// work if it would not fit in graft's memory limit.
func backboneProgram(extractor *onnx.Model, batch int, pre dataset.Preprocessing) (*runtime.Program, error) {
	ep, err := runtime.Compile(extractor, runtime.Options{FixedWeights: true})
	if err != nil {
		return nil, err
	}
	est, err := ep.Estimate(runtime.Plan{Inputs: [][]int{{batch, pre.Channels, pre.Height, pre.Width}}})
	if err != nil {
		return nil, err
	}
	return ep, est.Check()
}

// gatherAll returns the examples of an in-order source as one tensor, and
// their labels.
func gatherAll(src dataset.Source) (*tensor.Dense, []int, error) {
	var labels []int
	var f32 []float32
	var f64 []float64
	var shape tensor.Shape
	for b, err := range src.Batches(0) {
		if err != nil {
			return nil, nil, err
		}
		shape = b.X.Shape()
		labels = append(labels, b.Labels...)
		switch d := b.X.Data().(type) {
		case []float32:
			f32 = append(f32, d...)
		case []float64:
			f64 = append(f64, d...)
		}
	}
	dims := append([]int{len(labels)}, shape[1:]...)
	if f64 != nil {
		return tensor.New(tensor.WithShape(dims...), tensor.WithBacking(f64)), labels, nil
	}
	return tensor.New(tensor.WithShape(dims...), tensor.WithBacking(f32)), labels, nil
}

// whole reports whether f holds every example of its data set.
func (f *Features) whole() bool { return f.Shard.Whole() && len(f.Index) == f.Examples }

// subset returns the features of the examples rows (positions in f) of a
// whole set, renumbered 0, 1, ... in that order: the training or the
// validation part of a split.
func (f *Features) subset(rows []int) *Features {
	out := *f
	out.Index = make([]int, len(rows))
	out.Labels = make([]int, len(rows))
	for k, r := range rows {
		out.Index[k] = k
		out.Labels[k] = f.Labels[r]
	}
	out.Examples = len(rows)
	shape := f.Values.Shape().Clone()
	size := shape.TotalSize() / shape[0]
	shape[0] = len(rows)
	switch d := f.Values.Data().(type) {
	case []float32:
		out.Values = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(gatherRows(d, size, rows)))
	case []float64:
		out.Values = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(gatherRows(d, size, rows)))
	}
	return &out
}

func gatherRows[T any](d []T, size int, rows []int) []T {
	out := make([]T, 0, size*len(rows))
	for _, r := range rows {
		out = append(out, d[r*size:(r+1)*size]...)
	}
	return out
}

// fingerprint identifies the examples of f, for a checkpoint's run record.
func (f *Features) fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%d\n", f.DataFingerprint, f.ModelSHA256, f.Examples)
	for i, x := range f.Index {
		fmt.Fprintf(h, "%d %d\n", x, f.Labels[i])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// MergeFeatures joins the features of every shard of one data set (see
// FeatureOptions.Shard), given in any order, into the features of the
// whole data set: bit for bit those ComputeFeatures computes in one go. It
// refuses parts that do not belong together, naming the difference:
// another model, split point, preprocessing, data set (by fingerprint),
// batch size or shard count, a shard given twice or missing.
func MergeFeatures(parts ...*Features) (*Features, error) {
	if len(parts) == 0 {
		return nil, errors.New("merge features: none given")
	}
	first := parts[0]
	for _, f := range parts {
		if f == nil || f.Values == nil {
			return nil, errors.New("merge features: empty features")
		}
		if err := f.check(); err != nil {
			return nil, fmt.Errorf("merge features: shard %v: %w", f.Shard, err)
		}
		if diff := featuresDiff(first, f); diff != "" {
			return nil, fmt.Errorf("merge features: shards %v and %v do not belong together: %s", first.Shard, f.Shard, diff)
		}
	}
	sorted := slices.Clone(parts)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Shard.Index < sorted[j].Shard.Index })
	count := max(first.Shard.Count, 1)
	for k := 1; k < len(sorted); k++ {
		if sorted[k].Shard.Index == sorted[k-1].Shard.Index {
			return nil, fmt.Errorf("merge features: shard %v is given twice", sorted[k].Shard)
		}
	}
	if len(sorted) != count {
		var missing []string
		have := map[int]bool{}
		for _, f := range sorted {
			have[f.Shard.Index] = true
		}
		for i := range count {
			if !have[i] {
				missing = append(missing, fmt.Sprintf("%d/%d", i, count))
			}
		}
		return nil, fmt.Errorf("merge features: %d of %d shards given; missing %s", len(sorted), count, strings.Join(missing, ", "))
	}
	n := first.Examples
	from := make([]int, n) // shard of each example, and its row there
	row := make([]int, n)
	for i := range from {
		from[i] = -1
	}
	for s, f := range sorted {
		for r, x := range f.Index {
			if from[x] >= 0 {
				return nil, fmt.Errorf("merge features: example %d is in shards %v and %v", x, sorted[from[x]].Shard, f.Shard)
			}
			from[x], row[x] = s, r
		}
	}
	for x, s := range from {
		if s < 0 {
			return nil, fmt.Errorf("merge features: example %d of %d is in no shard", x, n)
		}
	}
	out := *first
	out.Shard = dataset.Shard{Index: 0, Count: 1}
	out.Index = make([]int, n)
	out.Labels = make([]int, n)
	shape := first.Values.Shape().Clone()
	size := shape.TotalSize() / shape[0]
	shape[0] = n
	f32, f64 := make([]float32, 0), make([]float64, 0)
	if first.Values.Dtype() == tensor.Float64 {
		f64 = make([]float64, 0, n*size)
	} else {
		f32 = make([]float32, 0, n*size)
	}
	for x := range n {
		f, r := sorted[from[x]], row[x]
		out.Index[x] = x
		out.Labels[x] = f.Labels[r]
		switch d := f.Values.Data().(type) {
		case []float32:
			f32 = append(f32, d[r*size:(r+1)*size]...)
		case []float64:
			f64 = append(f64, d[r*size:(r+1)*size]...)
		}
	}
	if first.Values.Dtype() == tensor.Float64 {
		out.Values = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(f64))
	} else {
		out.Values = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(f32))
	}
	return &out, nil
}

// featuresDiff names the first thing in which the features a and b, parts
// of one data set, differ, or returns "".
func featuresDiff(a, b *Features) string {
	q := func(what string, x, y any) string { return fmt.Sprintf("%s %v and %v", what, x, y) }
	switch {
	case a.ModelSHA256 != b.ModelSHA256:
		return q("model sha256", a.ModelSHA256, b.ModelSHA256)
	case a.SplitAt != b.SplitAt:
		return q("split at", fmt.Sprintf("%q", a.SplitAt), fmt.Sprintf("%q", b.SplitAt))
	case fmt.Sprint(a.Preprocessing) != fmt.Sprint(b.Preprocessing):
		return q("preprocessing", describePre(a.Preprocessing), describePre(b.Preprocessing))
	case a.DataFingerprint != b.DataFingerprint:
		return q("data fingerprint", a.DataFingerprint, b.DataFingerprint) + " (" + a.Data + ", " + b.Data + ")"
	case a.Examples != b.Examples:
		return q("examples", a.Examples, b.Examples)
	case !slices.Equal(a.Classes, b.Classes):
		return q("classes", a.Classes, b.Classes)
	case a.Block != b.Block:
		return q("batch size", a.Block, b.Block)
	case max(a.Shard.Count, 1) != max(b.Shard.Count, 1):
		return fmt.Sprintf("splits into %d and %d shards", max(a.Shard.Count, 1), max(b.Shard.Count, 1))
	case a.Values.Dtype() != b.Values.Dtype() || !slices.Equal(a.Values.Shape()[1:], b.Values.Shape()[1:]):
		return q("features", fmt.Sprintf("%v %v", a.Values.Dtype(), a.Values.Shape()[1:]), fmt.Sprintf("%v %v", b.Values.Dtype(), b.Values.Shape()[1:]))
	}
	return ""
}

func describePre(p dataset.Preprocessing) string {
	s := fmt.Sprintf("%dx%dx%d, resize %d", p.Channels, p.Height, p.Width, p.Resize)
	if p.Mean != nil {
		s += fmt.Sprintf(", mean %v, std %v", p.Mean, p.Std)
	}
	return s
}

// check refuses features that are not consistent in themselves: what a
// file read from disk must be before anything trusts it.
func (f *Features) check() error {
	n := len(f.Index)
	switch {
	case f.Values == nil || len(f.Values.Shape()) < 2:
		return errors.New("no feature values of shape [examples, ...]")
	case f.Values.Shape()[0] != n || len(f.Labels) != n:
		return fmt.Errorf("%d examples, %d labels and features of shape %v", n, len(f.Labels), f.Values.Shape())
	case n == 0:
		return errors.New("no examples")
	case f.Examples < n:
		return fmt.Errorf("%d examples of a data set of %d", n, f.Examples)
	case len(f.Classes) < 1:
		return errors.New("no classes")
	case f.Block < 1:
		return fmt.Errorf("batch size %d", f.Block)
	}
	if err := f.Shard.Check(); err != nil {
		return err
	}
	if err := f.Preprocessing.Check(); err != nil {
		return fmt.Errorf("preprocessing: %w", err)
	}
	count := max(f.Shard.Count, 1)
	for i, x := range f.Index {
		if x < 0 || x >= f.Examples || (i > 0 && x <= f.Index[i-1]) {
			return fmt.Errorf("example index %d (at %d) is not in increasing order within [0, %d)", x, i, f.Examples)
		}
		if (x/f.Block)%count != f.Shard.Index {
			return fmt.Errorf("example %d is not in shard %v of blocks of %d", x, f.Shard, f.Block)
		}
		if l := f.Labels[i]; l < 0 || l >= len(f.Classes) {
			return fmt.Errorf("label %d of example %d is not one of the %d classes", l, x, len(f.Classes))
		}
	}
	return nil
}
