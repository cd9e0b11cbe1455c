package runtime

import (
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fork runs every worker index exactly once per call and returns only when
// all are done: back to back (the pool's workers spinning), after the
// workers have gone to sleep, nested (a fork inside a fork) and from
// several goroutines at once (the pool busy: goroutines instead).
func TestFork(t *testing.T) {
	defer goruntime.GOMAXPROCS(goruntime.GOMAXPROCS(4))
	check := func(what string, p int) {
		counts := make([]atomic.Int32, p)
		fork(p, func(w int) {
			time.Sleep(time.Duration(w) * 10 * time.Microsecond) // the caller's share ends first
			counts[w].Add(1)
		})
		for w := range counts {
			if n := counts[w].Load(); n != 1 {
				t.Fatalf("%s: fork(%d) ran worker %d %d times", what, p, w, n)
			}
		}
	}
	for i := 0; i < 1000; i++ {
		check("back to back", 1+i%4)
	}
	time.Sleep(3 * forkSpin)
	check("after sleeping", 4)
	fork(2, func(int) { check("nested", 3) })
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				check("concurrent", 2+i%3)
			}
		}()
	}
	wg.Wait()
	// parallelForWorker numbers its goroutines below GOMAXPROCS: a buffer
	// per worker index is never used twice at once.
	var busy [4]atomic.Bool
	parallelForWorker(64, 1<<30, func(w, lo, hi int) {
		if !busy[w].CompareAndSwap(false, true) {
			t.Errorf("worker %d runs twice at once", w)
		}
		time.Sleep(20 * time.Microsecond)
		busy[w].Store(false)
	})
}
