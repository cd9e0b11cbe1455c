package dataset

import (
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/graft-dev/graft/runtime/data"
)

// writeImage writes a w×h test image (a pattern drawn from seed) as PNG or
// JPEG, by the file's extension, creating the folders.
func writeImage(t testing.TB, path string, w, h int, gray bool, seed int) {
	t.Helper()
	var m image.Image
	if gray {
		g := image.NewGray(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				g.SetGray(x, y, color.Gray{uint8(x*7 + y*3 + seed*41)})
			}
		}
		m = g
	} else {
		c := image.NewRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				c.SetRGBA(x, y, color.RGBA{uint8(x*5 + seed*13), uint8(y*9 + seed*29), uint8((x ^ y) + seed*7), 255})
			}
		}
		m = c
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	switch filepath.Ext(path) {
	case ".png":
		err = png.Encode(f, m)
	default:
		err = jpeg.Encode(f, m, &jpeg.Options{Quality: 90})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyTestImage copies one of runtime/data's committed test images.
func copyTestImage(t testing.TB, name, dst string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "data", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, b)
}

// smallFolder makes an image folder of classes "a" (n images) and "b"
// (n images), mixed PNG/JPEG, gray/RGB, and sizes.
func smallFolder(t testing.TB, n int) string {
	t.Helper()
	root := t.TempDir()
	for c, class := range []string{"a", "b"} {
		for i := range n {
			ext := ".png"
			if i%2 == 1 {
				ext = ".jpg"
			}
			writeImage(t, filepath.Join(root, class, "img"+string(rune('0'+i/10))+string(rune('0'+i%10))+ext),
				20+3*i, 18+2*c+i, (i+c)%3 == 0, 10*c+i)
		}
	}
	return root
}

// collect runs one epoch and returns its batches, failing on an error.
func collect(t testing.TB, src Source, epoch int) []Batch {
	t.Helper()
	var out []Batch
	for b, err := range src.Batches(epoch) {
		if err != nil {
			t.Fatalf("epoch %d, batch %d: %v", epoch, len(out), err)
		}
		out = append(out, b)
	}
	return out
}

func sameBatches(t testing.TB, what string, a, b []Batch) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d and %d batches", what, len(a), len(b))
	}
	for i := range a {
		if !slices.Equal(a[i].Labels, b[i].Labels) {
			t.Fatalf("%s: batch %d labels %v and %v", what, i, a[i].Labels, b[i].Labels)
		}
		if !slices.Equal(a[i].X.Shape(), b[i].X.Shape()) {
			t.Fatalf("%s: batch %d shapes %v and %v", what, i, a[i].X.Shape(), b[i].X.Shape())
		}
		if !slices.Equal(a[i].X.Data().([]float32), b[i].X.Data().([]float32)) {
			t.Fatalf("%s: batch %d values differ", what, i)
		}
	}
}

// tensorOf is one example's values in a batch.
func tensorOf(b Batch, k int) []float32 {
	x := b.X.Data().([]float32)
	row := len(x) / b.X.Shape()[0]
	return x[k*row : (k+1)*row]
}

// checkNoLeak waits briefly for the goroutine count to come back to base.
func checkNoLeak(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeIDX writes an IDX data set of 28×28 images whose labels are given;
// image i's pixels are a pattern of i.
func writeIDX(t testing.TB, labels []int) (images, labelsPath string) {
	t.Helper()
	dir := t.TempDir()
	m := &data.IDXImages{Count: len(labels), Rows: 28, Cols: 28, Pixels: make([]uint8, len(labels)*28*28)}
	for i := range m.Pixels {
		m.Pixels[i] = uint8(i*31 + i/784*17)
	}
	images, labelsPath = filepath.Join(dir, "train-images-idx3-ubyte"), filepath.Join(dir, "train-labels-idx1-ubyte.gz")
	if err := data.WriteIDXImages(images, m); err != nil {
		t.Fatal(err)
	}
	if err := data.WriteIDXLabels(labelsPath, labels); err != nil {
		t.Fatal(err)
	}
	return images, labelsPath
}
