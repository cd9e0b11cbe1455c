package dataset

import (
	"errors"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/internal/memtest"
)

// A named pipe called x.png in a class folder is never opened (opening it
// would wait for a writer forever): without SkipBad the folder is refused,
// naming it; with SkipBad it is left out and counted.
func TestImageFolderFIFO(t *testing.T) {
	root := t.TempDir()
	writeImage(t, filepath.Join(root, "cat", "a.png"), 8, 8, false, 1)
	writeImage(t, filepath.Join(root, "cat", "b.png"), 8, 8, false, 2)
	writeImage(t, filepath.Join(root, "dog", "c.png"), 8, 8, false, 3)
	pipe := filepath.Join(root, "dog", "x.png")
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, err := ImageFolder(root)
	want := "image folder " + root + ": image " + pipe + ": a named pipe (FIFO), not a regular file (use SkipBad to leave such files out)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if !errors.Is(err, ErrNotRegular) {
		t.Errorf("%v does not wrap ErrNotRegular", err)
	}
	ds, err := ImageFolder(root, SkipBad())
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 3 || ds.Skipped() != 1 || ds.SkippedErrors()[0].Error() != "image "+pipe+": a named pipe (FIFO), not a regular file" {
		t.Errorf("%d examples, skipped %v", ds.Len(), ds.SkippedErrors())
	}
	for i := range ds.Len() {
		if ds.Path(i) == pipe {
			t.Errorf("the pipe is example %d", i)
		}
	}
}

// Resize 100000 is refused by Check, before any image is read.
func TestResizeMemory(t *testing.T) {
	workers := runtime.GOMAXPROCS(0)
	if workers != 2 {
		t.Skipf("the message below is for 2 workers, this machine has %d", workers)
	}
	r := memtest.Run(t, func() error {
		p := ForInput(3, 224, 224)
		p.Resize = 100000
		_, err := p.Config(nil, 8, false, 1)
		return err
	}, memlimit.EnvVar+"=16GiB")
	r.Want(t, "preprocessing: resizing images to 100000 pixels on the shorter side and cropping them to 224x224, in 2 workers with batches of 1 needs 111.8 GiB, over graft's memory limit of 16.0 GiB (set by GRAFT_MEMORY_LIMIT); set GRAFT_MEMORY_LIMIT or --memory-limit to change it", 300<<20)
}

func TestResizeWithinLimit(t *testing.T) {
	p := ForInput(3, 224, 224)
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	defer memlimit.Set(0, "")
	// Each worker: two 256x256 RGB images, five 224x224 RGB images' worth
	// for the crop and its float32 tensor; 3 batches in flight, twice over.
	need := int64(runtime.GOMAXPROCS(0)*(2*256*256*3+5*224*224*3) + 3*2*224*224*3*4)
	memlimit.Set(need, "--memory-limit")
	if err := p.Check(); err != nil {
		t.Errorf("at exactly the limit: %v", err)
	}
	memlimit.Set(need-1, "--memory-limit")
	if err := p.Check(); !errors.Is(err, memlimit.ErrExceeded) {
		t.Errorf("a byte under: %v", err)
	}
	// A batch of 64 takes more than Check's batch of 1.
	memlimit.Set(need+1000, "--memory-limit")
	if _, err := p.Config(nil, 64, false, 1); !errors.Is(err, memlimit.ErrExceeded) {
		t.Errorf("batches of 64: %v", err)
	}
}

// The tiny model of issue 8 takes [batch,1,60000,60000]: its usual
// preprocessing (resize to 68571, crop to 60000) is refused up front.
func TestHugeInputPreprocessing(t *testing.T) {
	defer memlimit.Set(0, "")
	memlimit.Set(16<<30, "--memory-limit")
	p := ForInput(1, 60000, 60000)
	_, err := p.Config(nil, 1, false, 1)
	want := "preprocessing: resizing images to 68571 pixels on the shorter side and cropping them to 60000x60000, in " +
		strconv.Itoa(runtime.GOMAXPROCS(0)) + " workers with batches of 1 needs "
	if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, memlimit.ErrExceeded) {
		t.Errorf("got %v\nwant %s...", err, want)
	}
}
