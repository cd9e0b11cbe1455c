package dataset

import (
	"errors"
	"math"
	"math/rand"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graft-dev/graft/runtime/data"
)

func augmentConfig(workers, prefetch int) Config {
	pp := ForInput(3, 16, 16)
	pp.Augment = true
	return Config{BatchSize: 3, Shuffle: true, Seed: 42, Pipeline: pp.Pipeline(), Augment: pp.Augmentation(),
		Workers: workers, Prefetch: prefetch}
}

func TestLoaderDeterministic(t *testing.T) {
	ds, err := ImageFolder(smallFolder(t, 5))
	if err != nil {
		t.Fatal(err)
	}
	// One worker against several: the same batches, augmentation included.
	serial, err := NewLoader(ds, augmentConfig(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	parallel, err := NewLoader(ds, augmentConfig(4, 3))
	if err != nil {
		t.Fatal(err)
	}
	e0 := collect(t, serial, 0)
	sameBatches(t, "1 and 4 workers, epoch 0", e0, collect(t, parallel, 0))
	sameBatches(t, "epoch 0 again", e0, collect(t, parallel, 0))
	e1 := collect(t, serial, 1)
	sameBatches(t, "1 and 4 workers, epoch 1", e1, collect(t, parallel, 1))

	// Batches follow Order; epochs shuffle and augment differently.
	o0, o1 := serial.Order(0), serial.Order(1)
	if slices.Equal(slices.Concat(o0...), slices.Concat(o1...)) {
		t.Error("epochs 0 and 1 have the same order")
	}
	aug0, aug1 := map[int][]float32{}, map[int][]float32{}
	for _, c := range []struct {
		order   [][]int
		batches []Batch
		aug     map[int][]float32
	}{{o0, e0, aug0}, {o1, e1, aug1}} {
		if len(c.order) != 4 || len(c.batches) != 4 {
			t.Fatalf("%d batches, order of %d", len(c.batches), len(c.order))
		}
		for k, idx := range c.order {
			for j, i := range idx {
				if c.batches[k].Labels[j] != ds.Label(i) {
					t.Fatalf("batch %d, example %d: label %d, example %d has %d", k, j, c.batches[k].Labels[j], i, ds.Label(i))
				}
				c.aug[i] = tensorOf(c.batches[k], j)
			}
		}
	}
	differ := 0
	for i := range ds.Len() {
		if !slices.Equal(aug0[i], aug1[i]) {
			differ++
		}
	}
	if differ < ds.Len()/2 {
		t.Errorf("only %d of %d examples augmented differently in epochs 0 and 1", differ, ds.Len())
	}

	// Another seed, another shuffle.
	cfg := augmentConfig(2, 2)
	cfg.Seed = 43
	other, _ := NewLoader(ds, cfg)
	if slices.Equal(slices.Concat(other.Order(0)...), slices.Concat(o0...)) {
		t.Error("seeds 42 and 43 shuffle alike")
	}
}

func TestAugmentRand(t *testing.T) {
	draw := func(seed int64, epoch, i int) [4]int64 {
		r := AugmentRand(seed, epoch, i)
		return [4]int64{r.Int63(), r.Int63(), int64(r.Intn(1000)), int64(r.Float64() * 1e9)}
	}
	if draw(1, 2, 3) != draw(1, 2, 3) {
		t.Error("not a function of its arguments")
	}
	seen := map[[4]int64]bool{}
	for _, a := range [][3]int{{1, 0, 0}, {1, 0, 1}, {1, 1, 0}, {2, 0, 0}, {1, 2, 3}, {1, 3, 2}} {
		d := draw(int64(a[0]), a[1], a[2])
		if seen[d] {
			t.Errorf("%v draws like another", a)
		}
		seen[d] = true
	}
}

func TestLoaderIDXMatchesMemory(t *testing.T) {
	ds := idxSet(t, []int{7, 9, 8})
	// The fast path serves pixel/255 in NewMemory's shuffle order.
	l, err := NewLoader(ds, Config{BatchSize: 5, Shuffle: true, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	if !l.direct {
		t.Fatal("no fast path for IDX data without a transform")
	}
	mem, err := NewMemory(ds.images.Tensor(0, ds.Len()), ds.Labels(), 5, true, 9)
	if err != nil {
		t.Fatal(err)
	}
	for epoch := range 2 {
		sameBatches(t, "loader and memory", collect(t, l, epoch), collect(t, mem, epoch))
		if !slices.Equal(slices.Concat(l.Order(epoch)...), slices.Concat(mem.Order(epoch)...)) {
			t.Error("orders differ")
		}
	}
}

func TestLoaderIDXFastPathEqualsPipeline(t *testing.T) {
	ds := idxSet(t, []int{4, 5, 6})
	pp := ForInput(1, 28, 28)
	pp.Mean, pp.Std = []float32{0.2860}, []float32{0.3530}
	cfg, err := pp.Config(ds, 4, true, 3)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := NewLoader(ds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !fast.direct {
		t.Fatal("Preprocessing.Config did not pick the fast path for 28×28 IDX images")
	}
	slow, err := NewLoader(ds, Config{BatchSize: 4, Shuffle: true, Seed: 3, Pipeline: pp.Pipeline(), Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if slow.direct {
		t.Fatal("fast path with a transform")
	}
	sameBatches(t, "fast path and pipeline", collect(t, fast, 1), collect(t, slow, 1))

	// Other input sizes and channels preprocess the in-memory images.
	pp3 := ForInput(3, 32, 32)
	cfg3, err := pp3.Config(ds, 4, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	l3, _ := NewLoader(ds, cfg3)
	b := collect(t, l3, 0)
	if l3.direct || !slices.Equal(b[0].X.Shape(), []int{4, 3, 32, 32}) {
		t.Fatalf("shape %v", b[0].X.Shape())
	}
	im, _ := ds.image(1, 1)
	want, err := pp3.Pipeline().Apply(im)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tensorOf(b[0], 1), want.Data) {
		t.Error("IDX example preprocessed differently from data.Pipeline")
	}
}

func TestLoaderEarlyBreakNoLeak(t *testing.T) {
	ds, err := ImageFolder(smallFolder(t, 8))
	if err != nil {
		t.Fatal(err)
	}
	var examples atomic.Int64
	pp := ForInput(3, 16, 16)
	cfg := Config{BatchSize: 2, Pipeline: pp.Pipeline(), Workers: 2, Prefetch: 1,
		Augment: func(*rand.Rand) data.Transform {
			examples.Add(1)
			return data.Compose(data.Resize(16), data.CenterCrop(16))
		}}
	l, err := NewLoader(ds, cfg)
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	for range l.Batches(0) {
		// While this batch trains, only the next one is prepared.
		for deadline := time.Now().Add(2 * time.Second); examples.Load() < 4 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		if n := examples.Load(); n != 4 {
			t.Errorf("%d examples prepared with one batch of 2 in hand and a prefetch of 1, want 4", n)
		}
		break
	}
	checkNoLeak(t, base)

	// Breaking later, finishing, and failing leak nothing either.
	for _, stopAt := range []int{3, 100} {
		n := 0
		for _, err := range l.Batches(1) {
			if err != nil {
				t.Fatal(err)
			}
			if n++; n == stopAt {
				break
			}
		}
		checkNoLeak(t, base)
	}
	root, bad := badFolder(t)
	bds, _ := ImageFolder(root)
	bl, _ := NewLoader(bds, Config{BatchSize: 1, Pipeline: pp.Pipeline(), Prefetch: 4})
	var last error
	for _, err := range bl.Batches(0) {
		last = err
	}
	if last == nil || !strings.Contains(last.Error(), bad[0]) {
		t.Errorf("last error %v", last)
	}
	checkNoLeak(t, base)
}

func TestLoaderErrors(t *testing.T) {
	ds := idxSet(t, []int{2, 2})
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "batch size 0"},
		{Config{BatchSize: 1, Workers: -1}, "-1 workers"},
		{Config{BatchSize: 1, Pipeline: &data.Pipeline{Channels: 2}}, "not 2"},
		{Config{BatchSize: 1, Pipeline: &data.Pipeline{Channels: 3, Mean: []float32{1, 2}}}, "2 mean and 0 std values for 3 channels"},
		{Config{BatchSize: 1, Pipeline: &data.Pipeline{Std: []float32{0}}}, "std[0] is 0, want a finite number other than 0"},
		{Config{BatchSize: 1, Pipeline: &data.Pipeline{Mean: []float32{float32(math.NaN())}, Std: []float32{1}}}, "mean[0] is NaN, want a finite number"},
	} {
		if _, err := NewLoader(ds, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
	if _, err := NewLoader(ds.Subset(nil), Config{BatchSize: 1}); err == nil {
		t.Error("no error for an empty data set")
	}

	// Images that do not come out one size: the error names both files.
	root := t.TempDir()
	writeImage(t, root+"/a/1.png", 10, 10, false, 1)
	writeImage(t, root+"/b/1.png", 12, 10, false, 2)
	fds, _ := ImageFolder(root)
	l, _ := NewLoader(fds, Config{BatchSize: 2})
	for _, err := range l.Batches(0) {
		var de *data.Error
		if !errors.As(err, &de) || de.File != root+"/b/1.png" || !strings.Contains(err.Error(), root+"/a/1.png") {
			t.Errorf("error %v", err)
		}
	}
}

func TestPreprocessing(t *testing.T) {
	for _, c := range []struct {
		c, h, w, resize int
		mean            bool
	}{
		{3, 224, 224, 256, true},
		{3, 299, 299, 342, true},
		{3, 160, 128, 146, true},
		{1, 28, 28, 28, false},
		{3, 32, 32, 32, true},
		{1, 64, 64, 73, false},
	} {
		p := ForInput(c.c, c.h, c.w)
		if p.Resize != c.resize || (p.Mean != nil) != c.mean || p.Augment || p.Check() != nil {
			t.Errorf("ForInput(%d, %d, %d) = %+v", c.c, c.h, c.w, p)
		}
	}
	ds := idxSet(t, []int{2, 2})
	bad := func(f func(*Preprocessing)) Preprocessing {
		p := ForInput(3, 224, 224)
		f(&p)
		return p
	}
	for _, c := range []struct {
		p    Preprocessing
		want string
	}{
		{bad(func(p *Preprocessing) { p.Channels = 4 }), "preprocessing: images can have 1 or 3 channels, not 4"},
		{ForInput(28, 28, 1), "preprocessing: the model's input layout is [N,H,W,C] (28x28 images with 1 channel last), not NCHW [N,C,H,W], which images are fed as"},
		{ForInput(8, 8, 3), "preprocessing: the model's input layout is [N,H,W,C] (8x8 images with 3 channels last), not NCHW [N,C,H,W], which images are fed as"},
		{bad(func(p *Preprocessing) { p.Mean = []float32{0, 0, float32(math.Inf(1))} }), "preprocessing: mean[2] is +Inf, want a finite number"},
		{bad(func(p *Preprocessing) { p.Std = []float32{float32(math.NaN())} }), "preprocessing: std[0] is NaN, want a finite number other than 0"},
		{bad(func(p *Preprocessing) { p.Width = 0 }), "preprocessing: input size 224x0"},
		{bad(func(p *Preprocessing) { p.Resize = -1 }), "preprocessing: resize to -1"},
		{bad(func(p *Preprocessing) { p.Augment, p.Width = true, 200 }), "preprocessing: augmentation makes square images; the input is 224x200"},
		{bad(func(p *Preprocessing) { p.Mean = []float32{1, 2} }), "preprocessing: 2 mean and 3 std values for 3 channels (give 1 or 3)"},
		{bad(func(p *Preprocessing) { p.Std = []float32{0} }), "preprocessing: std[0] is 0, want a finite number other than 0"},
	} {
		if _, err := c.p.Config(ds, 1, false, 0); err == nil || err.Error() != c.want {
			t.Errorf("%+v: error %v, want %q", c.p, err, c.want)
		}
	}
	aug := ForInput(1, 28, 28)
	aug.Augment = true
	cfg, err := aug.Config(ds, 2, true, 5)
	if err != nil || cfg.Augment == nil || cfg.Pipeline.Transform == nil {
		t.Fatalf("augmenting config %+v, %v", cfg, err)
	}
	l, _ := NewLoader(ds, cfg)
	if b := collect(t, l, 0); l.direct || !slices.Equal(b[0].X.Shape(), []int{2, 1, 28, 28}) {
		t.Errorf("augmented IDX batch %v (fast path %v)", b[0].X.Shape(), l.direct)
	}
}
