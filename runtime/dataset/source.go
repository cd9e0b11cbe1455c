package dataset

import (
	"fmt"
	"iter"

	"gorgonia.org/tensor"
)

// A Batch is a minibatch: inputs X of shape [n, ...] and a class label for
// each of the n examples.
type Batch struct {
	X      *tensor.Dense
	Labels []int
}

// A Source yields a data set's batches, epoch after epoch. Batches(epoch)
// may order (shuffle) examples differently in each epoch, but must do so
// deterministically, so a resumed run sees what an uninterrupted one would.
type Source interface {
	// Len is the number of examples in an epoch.
	Len() int
	// Batches yields the epoch's batches; a non-nil error ends the epoch.
	Batches(epoch int) iter.Seq2[Batch, error]
}

// An Ordered source also tells which examples (numbered 0..Len()-1, the
// same every epoch) each batch of an epoch holds, in order. CacheFeatures
// uses it to replay the source's shuffles over cached features.
type Ordered interface {
	Source
	Order(epoch int) [][]int
}

// Memory is a Source over examples held in memory.
type Memory struct {
	x         *tensor.Dense
	labels    []int
	batchSize int
	shuffle   bool
	seed      int64
	row       int                     // values per example
	order     func(epoch int) [][]int // Replay's order; nil: by shuffle and seed
}

// NewMemory returns a source over the examples x [N, ...] with their N
// labels, in batches of batchSize (the last may be smaller). With shuffle,
// each epoch visits the examples in its own order, drawn from seed and the
// epoch number; otherwise in order.
func NewMemory(x *tensor.Dense, labels []int, batchSize int, shuffle bool, seed int64) (*Memory, error) {
	if x == nil || len(x.Shape()) < 1 {
		return nil, fmt.Errorf("memory source: no examples")
	}
	n := x.Shape()[0]
	if n != len(labels) {
		return nil, fmt.Errorf("memory source: %d examples but %d labels", n, len(labels))
	}
	if n == 0 {
		return nil, fmt.Errorf("memory source: no examples")
	}
	if batchSize < 1 {
		return nil, fmt.Errorf("memory source: batch size %d", batchSize)
	}
	switch x.Data().(type) {
	case []float32, []float64:
	default:
		return nil, fmt.Errorf("memory source: examples are %v, want float32 or float64", x.Dtype())
	}
	if x.IsView() {
		x = x.Materialize().(*tensor.Dense)
	}
	return &Memory{x: x, labels: labels, batchSize: batchSize, shuffle: shuffle, seed: seed,
		row: x.Shape().TotalSize() / n}, nil
}

// Replay returns a source over the examples x [N, ...] with their N labels
// that yields, in each epoch, the batches order(epoch) lists (example
// indices): the cached features of a data set can so follow the batches the
// data set's own source would give.
func Replay(x *tensor.Dense, labels []int, order func(epoch int) [][]int) (*Memory, error) {
	m, err := NewMemory(x, labels, 1, false, 0)
	if err != nil {
		return nil, err
	}
	m.order = order
	return m, nil
}

// Len returns the number of examples.
func (m *Memory) Len() int { return len(m.labels) }

// BatchSize returns the batch size (1 for a Replay source, whose batches
// have the sizes its order gives).
func (m *Memory) BatchSize() int { return m.batchSize }

// Order returns the example indices of each batch of the epoch.
func (m *Memory) Order(epoch int) [][]int {
	if m.order != nil {
		return m.order(epoch)
	}
	idx := epochOrder(len(m.labels), m.shuffle, m.seed, epoch)
	var out [][]int
	for lo := 0; lo < len(idx); lo += m.batchSize {
		out = append(out, idx[lo:min(lo+m.batchSize, len(idx))])
	}
	return out
}

// Batches yields the epoch's batches, copies of the examples.
func (m *Memory) Batches(epoch int) iter.Seq2[Batch, error] {
	return func(yield func(Batch, error) bool) {
		for _, idx := range m.Order(epoch) {
			if !yield(gather(m.x, m.row, m.labels, idx), nil) {
				return
			}
		}
	}
}

// gather copies the examples idx of x (row values each) into a new batch.
func gather(x *tensor.Dense, row int, labels []int, idx []int) Batch {
	shape := append([]int{len(idx)}, x.Shape()[1:]...)
	b := Batch{Labels: make([]int, len(idx))}
	for i, j := range idx {
		b.Labels[i] = labels[j]
	}
	switch d := x.Data().(type) {
	case []float32:
		b.X = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(gatherRows(d, row, idx)))
	case []float64:
		b.X = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(gatherRows(d, row, idx)))
	}
	return b
}

func gatherRows[T any](d []T, row int, idx []int) []T {
	out := make([]T, 0, row*len(idx))
	for _, j := range idx {
		out = append(out, d[j*row:(j+1)*row]...)
	}
	return out
}
