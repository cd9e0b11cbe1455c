package dataset

import (
	"fmt"
	"iter"
	"math"
	"math/rand"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/graft-dev/graft/runtime/data"
	"gorgonia.org/tensor"
)

// DefaultPrefetch is the number of batches a Loader prepares ahead of the
// one being trained on, unless Config.Prefetch says otherwise.
const DefaultPrefetch = 2

// Config says how a Loader batches and preprocesses a data set.
type Config struct {
	BatchSize int   // examples per batch; the last batch of an epoch may be smaller
	Shuffle   bool  // visit the examples in a new order every epoch
	Seed      int64 // for the shuffles and the augmentation

	// Pipeline turns each image into a tensor (nil: ToTensor only). Its
	// result must have one size for every example (use a crop).
	Pipeline *data.Pipeline
	// Augment, if not nil, is called for every example with a random
	// source of that example in that epoch (see AugmentRand) and returns
	// the transform that replaces Pipeline.Transform, for example
	// data.Compose(data.RandomResizedCrop(224, rng), data.RandomHorizontalFlip(rng)).
	Augment func(rng *rand.Rand) data.Transform

	Workers  int // images decoded at once; 0 means GOMAXPROCS
	Prefetch int // batches prepared ahead; 0 means DefaultPrefetch
}

// A Loader is an Ordered Source over a data set. Images are decoded and preprocessed by a pool of workers while
// the previous batch trains, at most Prefetch batches ahead; the workers
// stop when the consumer stops iterating, and no goroutine outlives the
// iteration. Every batch is a deterministic function of the data set, the
// configuration and the epoch: shuffles come from Seed and the epoch,
// each example's augmentation from Seed, the epoch and the example's index,
// never from which worker handled it.
//
// In-memory (IDX) examples whose pipeline has no transform and at most one
// channel are served directly, without workers: pixel/255, normalized.
type Loader struct {
	ds       *Dataset
	cfg      Config
	pipe     data.Pipeline
	workers  int
	prefetch int
	direct   bool // IDX fast path
}

var _ Ordered = (*Loader)(nil)

// NewLoader returns a loader of ds with the configuration.
func NewLoader(ds *Dataset, cfg Config) (*Loader, error) {
	if ds == nil || ds.Len() == 0 {
		return nil, fmt.Errorf("loader: no examples")
	}
	if cfg.BatchSize < 1 {
		return nil, fmt.Errorf("loader: batch size %d", cfg.BatchSize)
	}
	if cfg.Workers < 0 || cfg.Prefetch < 0 {
		return nil, fmt.Errorf("loader: %d workers, %d batches of prefetch", cfg.Workers, cfg.Prefetch)
	}
	l := &Loader{ds: ds, cfg: cfg, workers: cfg.Workers, prefetch: cfg.Prefetch}
	if cfg.Pipeline != nil {
		l.pipe = *cfg.Pipeline
	}
	if err := checkPipeline(&l.pipe); err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	if l.workers == 0 {
		l.workers = runtime.GOMAXPROCS(0)
	}
	if l.prefetch == 0 {
		l.prefetch = DefaultPrefetch
	}
	l.direct = ds.images != nil && cfg.Augment == nil && l.pipe.Transform == nil && l.pipe.Channels <= 1
	return l, nil
}

// checkPipeline checks what can be checked before seeing an image.
func checkPipeline(p *data.Pipeline) error {
	switch p.Channels {
	case 0, 1, 3:
	default:
		return fmt.Errorf("images can have 1 or 3 channels, not %d", p.Channels)
	}
	return checkMeanStd(p.Mean, p.Std, p.Channels)
}

// checkMeanStd checks normalisation values for images of the given
// channels (0: any): one value or one per channel, finite, no std of 0.
func checkMeanStd(mean, std []float32, channels int) error {
	for _, v := range [][]float32{mean, std} {
		if len(v) > 1 && channels != 0 && len(v) != channels {
			return fmt.Errorf("%d mean and %d std values for %d channels (give 1 or %d)", len(mean), len(std), channels, channels)
		}
	}
	for i, v := range mean {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("mean[%d] is %v, want a finite number", i, v)
		}
	}
	for i, v := range std {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || v == 0 {
			return fmt.Errorf("std[%d] is %v, want a finite number other than 0", i, v)
		}
	}
	return nil
}

// Dataset returns the loader's data set.
func (l *Loader) Dataset() *Dataset { return l.ds }

// Len returns the number of examples in an epoch.
func (l *Loader) Len() int { return l.ds.Len() }

// BatchSize returns the batch size.
func (l *Loader) BatchSize() int { return l.cfg.BatchSize }

// Order returns the examples (indices into the data set) of each batch of
// the epoch. With Shuffle it is the order NewMemory draws from the
// same seed.
func (l *Loader) Order(epoch int) [][]int {
	idx := epochOrder(l.ds.Len(), l.cfg.Shuffle, l.cfg.Seed, epoch)
	var out [][]int
	for lo := 0; lo < len(idx); lo += l.cfg.BatchSize {
		out = append(out, idx[lo:min(lo+l.cfg.BatchSize, len(idx))])
	}
	return out
}

// Batches yields the epoch's batches: inputs [n, C, H, W] as float32 and
// their labels. An image that cannot be read or preprocessed ends the
// epoch with an error (a *data.Error naming its file) when the first batch
// holding it is due.
func (l *Loader) Batches(epoch int) iter.Seq2[Batch, error] {
	return func(yield func(Batch, error) bool) {
		order := l.Order(epoch)
		if l.direct {
			for _, idx := range order {
				b, err := l.directBatch(idx)
				if !yield(b, err) || err != nil {
					return
				}
			}
			return
		}
		l.decode(epoch, order, yield)
	}
}

// directBatch gathers in-memory examples into a batch: ToTensor's
// pixel/255 and the pipeline's normalization, computed as data does.
func (l *Loader) directBatch(idx []int) (Batch, error) {
	m := l.ds.images
	size := m.Rows * m.Cols
	x := make([]float32, len(idx)*size)
	labels := make([]int, len(idx))
	for k, i := range idx {
		r := l.ds.rows[i]
		dst := x[k*size : (k+1)*size]
		for j, p := range m.Pixels[r*size : (r+1)*size] {
			dst[j] = float32(p) / 255
		}
		labels[k] = l.ds.labels[i]
	}
	if mean, std, ok := l.normalization(); ok {
		// One channel: the whole batch normalizes as one tall image.
		t := &data.Tensor{C: 1, H: len(idx) * m.Rows, W: m.Cols, Data: x}
		if err := t.Normalize(mean, std); err != nil {
			return Batch{}, fmt.Errorf("%s: %w", l.ds.Name(idx[0]), err)
		}
	}
	return Batch{X: tensor.New(tensor.WithShape(len(idx), 1, m.Rows, m.Cols), tensor.WithBacking(x)), Labels: labels}, nil
}

// normalization returns the mean and std to apply, as Pipeline.Apply does.
func (l *Loader) normalization() (mean, std []float32, ok bool) {
	if l.pipe.Mean == nil && l.pipe.Std == nil {
		return nil, nil, false
	}
	mean, std = l.pipe.Mean, l.pipe.Std
	if mean == nil {
		mean = []float32{0}
	}
	if std == nil {
		std = []float32{1}
	}
	return mean, std, true
}

// example loads and preprocesses example i for the epoch.
func (l *Loader) example(epoch, i int) (*data.Tensor, error) {
	im, err := l.ds.image(i, l.workers)
	if err != nil {
		return nil, err
	}
	p := l.pipe
	if l.cfg.Augment != nil {
		p.Transform = l.cfg.Augment(AugmentRand(l.cfg.Seed, epoch, i))
	}
	t, err := p.Apply(im)
	if err != nil {
		return nil, &data.Error{File: l.ds.Name(i), Err: err}
	}
	return t, nil
}

// A pending batch is being prepared by the workers.
type pending struct {
	idx  []int
	ts   []*data.Tensor
	errs []error
	left atomic.Int64  // examples not done yet
	done chan struct{} // closed when left reaches 0
}

type job struct {
	b *pending
	k int // position in the batch
}

// decode runs the epoch's batches through the worker pool. A dispatcher
// hands out the examples batch by batch, in order, holding one of
// l.prefetch slots per batch until the consumer takes it; the consumer
// waits for each batch in turn. When the consumer stops (or the epoch
// ends), stop tells the dispatcher and workers to quit, and decode returns
// only after they have.
func (l *Loader) decode(epoch int, order [][]int, yield func(Batch, error) bool) {
	stop := make(chan struct{})
	slots := make(chan struct{}, l.prefetch)
	ready := make(chan *pending, l.prefetch)
	jobs := make(chan job)
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		wg.Wait()
	}()
	wg.Go(func() {
		defer close(jobs)
		defer close(ready)
		for _, idx := range order {
			select {
			case slots <- struct{}{}:
			case <-stop:
				return
			}
			b := &pending{idx: idx, ts: make([]*data.Tensor, len(idx)), errs: make([]error, len(idx)), done: make(chan struct{})}
			b.left.Store(int64(len(idx)))
			select {
			case ready <- b:
			case <-stop:
				return
			}
			for k := range idx {
				select {
				case jobs <- job{b, k}:
				case <-stop:
					return
				}
			}
		}
	})
	for range l.workers {
		wg.Go(func() {
			for j := range jobs {
				select {
				case <-stop:
					continue // drain until the dispatcher closes jobs
				default:
				}
				j.b.ts[j.k], j.b.errs[j.k] = l.example(epoch, j.b.idx[j.k])
				if j.b.left.Add(-1) == 0 {
					close(j.b.done)
				}
			}
		})
	}
	var first *data.Tensor // the epoch's first example: all must match it
	firstName := ""
	for b := range ready {
		<-b.done
		<-slots
		batch, err := l.assemble(b, &first, &firstName)
		if !yield(batch, err) || err != nil {
			return
		}
	}
}

// assemble stacks a prepared batch, or returns the error of its first
// failed example.
func (l *Loader) assemble(b *pending, first **data.Tensor, firstName *string) (Batch, error) {
	for _, err := range b.errs {
		if err != nil {
			return Batch{}, err
		}
	}
	if *first == nil {
		*first, *firstName = b.ts[0], l.ds.Name(b.idx[0])
	}
	f := *first
	for k, t := range b.ts {
		if t.C != f.C || t.H != f.H || t.W != f.W {
			return Batch{}, &data.Error{File: l.ds.Name(b.idx[k]), Err: fmt.Errorf(
				"preprocessed to %dx%dx%d, unlike %s (%dx%dx%d): batches need one size (resize and crop to it)",
				t.C, t.H, t.W, *firstName, f.C, f.H, f.W)}
		}
	}
	x, err := data.Stack(b.ts)
	if err != nil {
		return Batch{}, err
	}
	labels := make([]int, len(b.idx))
	for k, i := range b.idx {
		labels[k] = l.ds.labels[i]
	}
	return Batch{X: x, Labels: labels}, nil
}
