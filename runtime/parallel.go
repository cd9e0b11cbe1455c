package runtime

import (
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"
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
	run := func(worker int) {
		for {
			i := int(next.Add(1)) - 1
			if i >= chunks {
				return
			}
			lo := i * per
			fn(worker, lo, min(lo+per, n))
		}
	}
	fork(p, func(worker int) {
		run(worker)
	})
}

// fork calls run(0) to run(p-1) at once, run(0) on the calling goroutine,
// and returns when all have returned. The others run on the pool's
// workers, which spin for a while after each job before they sleep: waking
// a sleeping thread takes tens of microseconds on a busy virtual machine,
// and a batch-1 inference forks a hundred times. When the pool is busy (a
// fork inside a fork, or two programs at once) or too small, fork starts
// goroutines instead.
func fork(p int, run func(worker int)) {
	if p <= 1 {
		run(0)
		return
	}
	pool := forkers()
	if p-1 > len(pool.wake) || !pool.busy.CompareAndSwap(false, true) {
		var wg sync.WaitGroup
		wg.Add(p - 1)
		for i := 1; i < p; i++ {
			go func() {
				defer wg.Done()
				run(i)
			}()
		}
		run(0)
		wg.Wait()
		return
	}
	job := &forkJob{run: run, workers: p - 1}
	job.pending.Store(int32(p - 1))
	pool.job.Store(job)
	for i := 0; i < p-1; i++ {
		if pool.parked[i].Load() {
			select {
			case pool.wake[i] <- struct{}{}:
			default: // a wake-up is pending already
			}
		}
	}
	run(0)
	for spins := 0; job.pending.Load() != 0; spins++ {
		if spins%64 == 63 {
			goruntime.Gosched()
		}
	}
	pool.busy.Store(false)
}

// forkSpin is how long a worker of fork's pool waits for the next job
// before it sleeps.
const forkSpin = 100 * time.Microsecond

type forkJob struct {
	run     func(worker int)
	workers int          // the pool's workers 0 to workers-1 take part
	pending atomic.Int32 // workers not done yet
}

type forkPool struct {
	busy atomic.Bool
	// job is the latest job: a new one is a new pointer (the workers hold
	// on to the one before, so its address is not reused).
	job    atomic.Pointer[forkJob]
	parked []atomic.Bool
	wake   []chan struct{}
}

var (
	forkOnce sync.Once
	forkPl   *forkPool
)

// forkers returns fork's pool: GOMAXPROCS-1 workers, started on first use.
func forkers() *forkPool {
	forkOnce.Do(func() {
		n := goruntime.GOMAXPROCS(0) - 1
		forkPl = &forkPool{parked: make([]atomic.Bool, n), wake: make([]chan struct{}, n)}
		for i := range n {
			forkPl.wake[i] = make(chan struct{}, 1)
			go forkPl.work(i)
		}
	})
	return forkPl
}

func (pool *forkPool) work(i int) {
	var seen *forkJob // the first job is new to every worker, however late it starts
	for {
		// Spin until the next job, then sleep until woken.
		start := time.Now()
		for spins := 0; pool.job.Load() == seen; spins++ {
			if spins%256 == 255 && time.Since(start) > forkSpin {
				pool.parked[i].Store(true)
				if pool.job.Load() == seen {
					<-pool.wake[i]
				}
				pool.parked[i].Store(false)
				start = time.Now()
			}
		}
		seen = pool.job.Load()
		if i < seen.workers {
			seen.run(i + 1)
			seen.pending.Add(-1)
		}
	}
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
