package train

import (
	"context"
	"fmt"
	"iter"
	"slices"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/surgery"
	"gorgonia.org/tensor"
)

// Training only the head of a classifier whose frozen part sees the same
// inputs every epoch need not run that part more than once: SplitAtHead
// splits the model at the head's input, CacheFeatures runs the extractor
// over the data once, and FitHeadOnFeatures trains the head on the cached
// features and copies its parameters back into the whole model's program.
// The steps, losses and updates are those of Fit on the whole model with
// the backbone frozen (frozen BatchNormalization layers run in inference
// form either way).
//
// The caller must make sure the data has no random augmentation: cached
// features are computed once, from the first epoch's examples.

// SplitAtHead splits a classifier at its head's input (see surgery.FindHead)
// into a feature extractor, which outputs the features, and the head, which
// takes them as its input. Both keep the parameter names of m, which is not
// changed. It fails, saying why, when training params (names) on the split
// would not be the same as training them on m: when a parameter lies
// outside the head, or when the extractor holds Dropout, which draws new
// masks at every training step.
func SplitAtHead(m *onnx.Model, params []string) (extractor, head *onnx.Model, err error) {
	h, err := surgery.FindHead(m.Graph)
	if err != nil {
		return nil, nil, err
	}
	feat := h.Node.Input(0)
	if feat == nil || feat.Const != nil {
		return nil, nil, fmt.Errorf("split at head: the head %s has no computed input", h.Node)
	}
	if extractor, err = m.Clone(); err != nil {
		return nil, nil, err
	}
	if head, err = m.Clone(); err != nil {
		return nil, nil, err
	}
	if err := surgery.Apply(extractor, surgery.Cut(feat.Name)); err != nil {
		return nil, nil, fmt.Errorf("split at head: %w", err)
	}
	if err := surgery.Apply(head, surgery.From(feat.Name)); err != nil {
		return nil, nil, fmt.Errorf("split at head: %w", err)
	}
	inHead := map[string]bool{}
	for _, v := range head.Graph.Initializers {
		inHead[v.Name] = true
	}
	for _, name := range params {
		if !inHead[name] {
			return nil, nil, fmt.Errorf("split at head: %q is trained but is not a parameter of the head (%s)", name, h.Node)
		}
	}
	for _, n := range extractor.Graph.Nodes {
		if n.OpType == "Dropout" && !dropsNothing(n) {
			return nil, nil, fmt.Errorf("split at head: the frozen part holds Dropout (%s), which is random in training", n)
		}
	}
	return extractor, head, nil
}

// dropsNothing says whether a Dropout node has the constant ratio 0, as the
// attention Dropout torchvision 0.14's Swin exports in training form even
// in eval mode: it is the identity, not random.
func dropsNothing(n *onnx.Node) bool {
	if len(n.Inputs) < 2 || n.Inputs[1] == nil {
		return n.AttrFloat("ratio", 0.5) == 0 // opset < 12: an attribute
	}
	r := n.ConstInput(1)
	if r == nil {
		return false
	}
	v, err := r.Float64s()
	return err == nil && len(v) == 1 && v[0] == 0
}

// CacheFeatures runs extractor (in inference mode) over src's first-epoch
// batches and returns a source over the features it computes, with the
// same labels. If src is dataset.Ordered the cached source replays its batches of
// every epoch (its shuffles included) over the features; otherwise it
// yields the first epoch's batches again in every epoch. progress, if not
// nil, is called after each batch with the examples done and src.Len().
func CacheFeatures(ctx context.Context, extractor *runtime.Program, src dataset.Source, progress func(done, total int)) (dataset.Ordered, error) {
	var order [][]int
	ordered, isOrdered := src.(dataset.Ordered)
	if isOrdered {
		order = ordered.Order(0)
	}
	n := src.Len()
	var chunks [][]int // example indices of each batch seen
	var feats []*tensor.Dense
	labels := make([]int, n)
	done, k := 0, 0
	dt := dtypeOf(extractor)
	for b, err := range src.Batches(0) {
		if err != nil {
			return nil, fmt.Errorf("cache features: %w", err)
		}
		if err := context.Cause(ctx); err != nil {
			return nil, fmt.Errorf("%w while caching features: %w", ErrStopped, err)
		}
		out, err := extractor.Run(convert(b.X, dt))
		if err != nil {
			return nil, fmt.Errorf("cache features: %w", err)
		}
		f := out[0]
		if len(f.Shape()) < 1 || f.Shape()[0] != len(b.Labels) {
			return nil, fmt.Errorf("cache features: %d examples gave features of shape %v", len(b.Labels), f.Shape())
		}
		if k == 0 {
			// The batches' features and their layout by example are both
			// held at the end: check them now, before computing the rest.
			per := int64(f.Shape().TotalSize()/len(b.Labels)) * int64(f.Dtype().Size())
			if err := memlimit.Check(fmt.Sprintf("cache features: the features of %d examples (%v each)", n, []int(f.Shape()[1:])), memlimit.Mul(2, int64(n), per)); err != nil {
				return nil, err
			}
		}
		var idx []int
		if isOrdered {
			if k >= len(order) || len(order[k]) != len(b.Labels) {
				return nil, fmt.Errorf("cache features: the source's batches do not follow its Order")
			}
			idx = order[k]
		} else {
			for i := range b.Labels {
				idx = append(idx, done+i)
			}
		}
		for i, j := range idx {
			if j < 0 || j >= n {
				return nil, fmt.Errorf("cache features: the source yields more than its %d examples", n)
			}
			labels[j] = b.Labels[i]
		}
		chunks = append(chunks, idx)
		feats = append(feats, f)
		done += len(b.Labels)
		k++
		if progress != nil {
			progress(done, n)
		}
	}
	if done != n {
		return nil, fmt.Errorf("cache features: the source yielded %d examples, its Len is %d", done, n)
	}
	if len(feats) == 0 {
		return nil, fmt.Errorf("cache features: no examples")
	}
	// Lay the features out by example index.
	fshape := feats[0].Shape()[1:].Clone()
	row := fshape.TotalSize()
	all := tensor.New(tensor.WithShape(append([]int{n}, fshape...)...), tensor.Of(feats[0].Dtype()))
	for c, f := range feats {
		if !slices.Equal(f.Shape()[1:], fshape) {
			return nil, fmt.Errorf("cache features: features of shape %v and %v", feats[0].Shape(), f.Shape())
		}
		switch d := all.Data().(type) {
		case []float32:
			scatterRows(d, f.Data().([]float32), row, chunks[c])
		case []float64:
			scatterRows(d, f.Data().([]float64), row, chunks[c])
		}
	}
	if isOrdered {
		return dataset.Replay(all, labels, ordered.Order)
	}
	return dataset.Replay(all, labels, func(int) [][]int { return chunks })
}

func scatterRows[T any](dst, src []T, row int, idx []int) {
	for i, j := range idx {
		copy(dst[j*row:(j+1)*row], src[i*row:(i+1)*row])
	}
}

// StreamFeatures is src with each batch's inputs replaced by extractor's
// first output on them: a frozen backbone's features, computed batch by
// batch. It is FitHeadOnFeatures' source where features cannot be cached
// (random augmentation) or are not wanted (no room to keep them): the head
// then trains without a training step of the whole model, and the
// backbone runs as inference (see runtime.Options.FixedWeights).
func StreamFeatures(src dataset.Source, extractor *runtime.Program) dataset.Source {
	return streamed{src, extractor}
}

type streamed struct {
	src       dataset.Source
	extractor *runtime.Program
}

func (s streamed) Len() int { return s.src.Len() }

func (s streamed) Batches(epoch int) iter.Seq2[dataset.Batch, error] {
	return func(yield func(dataset.Batch, error) bool) {
		for b, err := range s.src.Batches(epoch) {
			if err != nil {
				yield(b, err)
				return
			}
			out, err := s.extractor.Run(b.X)
			if err != nil {
				yield(dataset.Batch{}, fmt.Errorf("features: %w", err))
				return
			}
			if !yield(dataset.Batch{X: out[0], Labels: b.Labels}, nil) {
				return
			}
		}
	}
}

// FitHeadOnFeatures trains the head program (see SplitAtHead) with Fit on
// cached features (see CacheFeatures; val, if not nil, also over features)
// and keeps the whole model's program full in step: the head starts from
// full's values of its parameters, full receives the trained values before
// every Checkpoint call and when training ends, however it ends. Optimizer
// state is keyed by parameter name, so it carries over between this and
// Fit on full.
func FitHeadOnFeatures(ctx context.Context, full, head *runtime.Program, train, val dataset.Source, cfg Config) (*History, error) {
	var names []string
	for _, hp := range head.Params() {
		fp := full.Param(hp.Name)
		if fp == nil {
			return cfg.Prior.Clone(), fmt.Errorf("fit head: the whole model has no parameter %q", hp.Name)
		}
		if !slices.Equal(fp.Value.Shape(), hp.Value.Shape()) || fp.Value.Dtype() != hp.Value.Dtype() {
			return cfg.Prior.Clone(), fmt.Errorf("fit head: parameter %q is %v %v in the whole model, %v %v in the head",
				hp.Name, fp.Value.Dtype(), fp.Value.Shape(), hp.Value.Dtype(), hp.Value.Shape())
		}
		names = append(names, hp.Name)
	}
	if cfg.Classes == 0 {
		k, err := classesOf(full)
		if err != nil {
			return cfg.Prior.Clone(), fmt.Errorf("fit head: %w", err)
		}
		cfg.Classes = k
	}
	if cfg.Loss == runtime.NoLoss {
		// The head ends as the whole model does: its contract gives the loss.
		var err error
		if cfg.Loss, cfg.LossOn, err = lossFor(head); err != nil {
			return cfg.Prior.Clone(), fmt.Errorf("fit head: %w", err)
		}
	}
	copyParams(head, full, names)
	defer copyParams(full, head, names)
	if cp := cfg.Checkpoint; cp != nil {
		cfg.Checkpoint = func(epoch int, stats EpochStats, best bool) error {
			copyParams(full, head, names)
			return cp(epoch, stats, best)
		}
	}
	return Fit(ctx, head, train, val, cfg)
}

// copyParams copies the named parameters' values from src to dst, whose
// shapes and types have been checked to agree.
func copyParams(dst, src *runtime.Program, names []string) {
	for _, name := range names {
		d, s := dst.Param(name).Value, src.Param(name).Value
		switch dd := d.Data().(type) {
		case []float32:
			copy(dd, s.Data().([]float32))
		case []float64:
			copy(dd, s.Data().([]float64))
		}
	}
}
