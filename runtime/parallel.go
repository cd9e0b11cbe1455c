package runtime

import (
	goruntime "runtime"
	"sync"
	"sync/atomic"
)

// parallelMinWork is the smallest amount of work (roughly, elements touched)
// worth spreading over goroutines.
const parallelMinWork = 1 << 15

// parallelFor calls fn over consecutive ranges [lo,hi) covering [0,n),
// spread over up to GOMAXPROCS goroutines when work is large enough. The
// ranges are disjoint, so fn may write whatever belongs to its range
// without locking.
func parallelFor(n, work int, fn func(lo, hi int)) {
	parallelForWorker(n, work, func(_, lo, hi int) { fn(lo, hi) })
}

// parallelForWorker is parallelFor telling fn which of the goroutines,
// numbered from 0 to GOMAXPROCS-1, runs it: fn may use a buffer of that
// goroutine's own.
func parallelForWorker(n, work int, fn func(worker, lo, hi int)) {
	p := goruntime.GOMAXPROCS(0)
	if p <= 1 || n < 2 || work < parallelMinWork {
		fn(0, 0, n)
		return
	}
	chunks := min(n, 2*p)
	per := (n + chunks - 1) / chunks
	chunks = (n + per - 1) / per
	p = min(p, chunks)
	var next atomic.Int32
	var wg sync.WaitGroup
	run := func(worker int) {
		defer wg.Done()
		for {
			i := int(next.Add(1)) - 1
			if i >= chunks {
				return
			}
			lo := i * per
			fn(worker, lo, min(lo+per, n))
		}
	}
	wg.Add(p)
	for i := 1; i < p; i++ {
		go run(i)
	}
	run(0)
	wg.Wait()
}

// A workspace holds the buffers kernels need only while they run: im2col
// matrices, Winograd's transformed tiles and their products. Every kernel
// of a program shares them (kernels of a program run one at a time), so a
// program keeps one of each, grown to the largest need, rather than one per
// kernel.
type workspace[T Float] struct {
	cols, tiles, products scratch[T]
	// filters holds Winograd's transformed weights of a convolution whose
	// weights change (a training step's), computed on every call.
	filters scratch[T]
}

// workspaceOf returns p's workspace for T, made on first use.
func workspaceOf[T Float](p *Program) *workspace[T] {
	var z T
	if _, ok := any(z).(float32); ok {
		if p.work32 == nil {
			p.work32 = &workspace[float32]{}
		}
		return any(p.work32).(*workspace[T])
	}
	if p.work64 == nil {
		p.work64 = &workspace[float64]{}
	}
	return any(p.work64).(*workspace[T])
}

// A workspaceKernel uses a program's workspace: it calls need with each
// buffer it takes and the most bytes it takes of it.
type workspaceKernel interface {
	workspaceBytes(need func(buf any, bytes int64))
}

// scratch is a reusable buffer owned by one kernel, or shared through a
// workspace. take hands it out (or a
// new one when it is in use or too small) and give returns it, so kernels
// that are called concurrently stay correct: each caller works on its own
// buffer, and the common sequential case allocates once.
type scratch[T Float] struct {
	p atomic.Pointer[[]T]
}

// take returns a buffer of n elements with unspecified contents.
func (s *scratch[T]) take(n int) []T {
	if b := s.p.Swap(nil); b != nil && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]T, n)
}

// give returns a buffer taken from s.
func (s *scratch[T]) give(b []T) {
	s.p.Store(&b)
}
