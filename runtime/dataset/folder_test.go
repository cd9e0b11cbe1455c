package dataset

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/runtime/data"
)

func TestImageFolderLayout(t *testing.T) {
	root := t.TempDir()
	j := func(p ...string) string { return filepath.Join(append([]string{root}, p...)...) }
	writeImage(t, j("zebra", "b.png"), 30, 20, false, 1)
	writeImage(t, j("zebra", "a.JPG"), 25, 40, true, 2)
	writeImage(t, j("zebra", "sub", "0.png"), 12, 12, false, 3)   // nested: after zebra/'s own files
	writeImage(t, j("zebra", "sub-x", "0.png"), 12, 12, false, 4) // torchvision sorts folders, then names: sub before sub-x
	writeImage(t, j("apple", "z.jpeg"), 50, 30, false, 5)
	copyTestImage(t, "shapes_317x211.jpg", j("Mango", "shapes.jpg"))
	copyTestImage(t, "rings_211x149_gray.png", j("Mango", "rings.png"))
	copyTestImage(t, "palette_45x37.png", j("Mango", "palette.png"))
	writeFile(t, j("Mango", "README.txt"), []byte("not an image"))
	writeImage(t, j("Mango", ".hidden.png"), 5, 5, true, 6)   // hidden: ignored
	writeImage(t, j(".cache", "x.png"), 5, 5, true, 7)        // hidden folder: not a class
	writeImage(t, j("stray.png"), 5, 5, true, 8)              // not in a class folder
	if err := os.Symlink(j("apple"), j("pear")); err != nil { // linked class folders count
		t.Fatal(err)
	}

	ds, err := ImageFolder(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Mango", "apple", "pear", "zebra"}; !slices.Equal(ds.Classes(), want) {
		t.Fatalf("classes %q, want %q", ds.Classes(), want)
	}
	wantPaths := []string{
		j("Mango", "palette.png"), j("Mango", "rings.png"), j("Mango", "shapes.jpg"),
		j("apple", "z.jpeg"),
		j("pear", "z.jpeg"),
		j("zebra", "a.JPG"), j("zebra", "b.png"), j("zebra", "sub", "0.png"), j("zebra", "sub-x", "0.png"),
	}
	wantLabels := []int{0, 0, 0, 1, 2, 3, 3, 3, 3}
	var paths []string
	for i := range ds.Len() {
		paths = append(paths, ds.Path(i))
	}
	if !slices.Equal(paths, wantPaths) {
		t.Errorf("paths\n%q\nwant\n%q", paths, wantPaths)
	}
	if !slices.Equal(ds.Labels(), wantLabels) {
		t.Errorf("labels %v, want %v", ds.Labels(), wantLabels)
	}
	if got := ds.ClassCounts(); !slices.Equal(got, []int{3, 1, 1, 4}) {
		t.Errorf("class counts %v", got)
	}
	if ds.Skipped() != 0 || ds.Source() != root {
		t.Errorf("skipped %d, source %s", ds.Skipped(), ds.Source())
	}

	// Mixed sizes and channel counts load once preprocessed to one size,
	// with the values data.Pipeline gives each file.
	pipe := evalPipeline(40, 32)
	l, err := NewLoader(ds, Config{BatchSize: 4, Pipeline: pipe})
	if err != nil {
		t.Fatal(err)
	}
	batches := collect(t, l, 0)
	if len(batches) != 3 || !slices.Equal(batches[0].X.Shape(), []int{4, 3, 32, 32}) || batches[2].X.Shape()[0] != 1 {
		t.Fatalf("%d batches, first %v", len(batches), batches[0].X.Shape())
	}
	want, err := pipe.Batch(wantPaths)
	if err != nil {
		t.Fatal(err)
	}
	var got []float32
	var labels []int
	for _, b := range batches {
		got = append(got, b.X.Data().([]float32)...)
		labels = append(labels, b.Labels...)
	}
	if !slices.Equal(got, want.Data().([]float32)) || !slices.Equal(labels, wantLabels) {
		t.Error("the loader's tensors or labels differ from data.Pipeline.Batch's")
	}
}

func TestImageFolderErrors(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file.png")
	writeImage(t, file, 4, 4, true, 0)

	noClasses := filepath.Join(root, "noclasses")
	writeImage(t, filepath.Join(noClasses, "x.png"), 4, 4, true, 0)

	empty := filepath.Join(root, "empty")
	writeImage(t, filepath.Join(empty, "cat", "x.png"), 4, 4, true, 0)
	writeFile(t, filepath.Join(empty, "dog", "notes.txt"), []byte("no images here"))

	single := filepath.Join(root, "single")
	writeImage(t, filepath.Join(single, "cat", "x.png"), 4, 4, true, 0)

	for _, c := range []struct {
		name, root string
		want       []string
	}{
		{"missing", filepath.Join(root, "nope"), []string{filepath.Join(root, "nope"), "no such file"}},
		{"file", file, []string{file, "not a folder"}},
		{"no classes", noClasses, []string{noClasses, "no class folders"}},
		{"empty class", empty, []string{filepath.Join(empty, "dog"), "no images"}},
		{"single class", single, []string{single, "only one class (cat)", "at least 2"}},
	} {
		_, err := ImageFolder(c.root)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
	if _, err := ImageFolder(filepath.Join(root, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing root: %v is not fs.ErrNotExist", err)
	}
}

func TestImageFoldersClasses(t *testing.T) {
	root := t.TempDir()
	tr, va := filepath.Join(root, "train"), filepath.Join(root, "val")
	for _, c := range []string{"cat", "dog", "fox"} {
		writeImage(t, filepath.Join(tr, c, "1.png"), 8, 8, false, 1)
	}
	for _, c := range []string{"cat", "dog", "owl", "yak"} {
		writeImage(t, filepath.Join(va, c, "1.png"), 8, 8, false, 1)
	}
	_, _, err := ImageFolders(tr, va)
	if err == nil {
		t.Fatal("no error for different classes")
	}
	for _, w := range []string{"only in " + tr + `: "fox"`, "only in " + va + `: "owl", "yak"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	os.RemoveAll(filepath.Join(va, "owl"))
	os.RemoveAll(filepath.Join(va, "yak"))
	writeImage(t, filepath.Join(va, "fox", "2.jpg"), 8, 8, false, 1)
	train, val, err := ImageFolders(tr, va)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(train.Classes(), val.Classes()) || val.Len() != 3 {
		t.Errorf("classes %q and %q, %d validation images", train.Classes(), val.Classes(), val.Len())
	}
}

// badFolder makes classes "a" (3 good images) and "b" (a good one, then
// two corrupt ones), and returns the corrupt files.
func badFolder(t *testing.T) (root string, bad []string) {
	root = t.TempDir()
	for i := range 3 {
		writeImage(t, filepath.Join(root, "a", string(rune('0'+i))+".png"), 16, 16, false, i)
	}
	writeImage(t, filepath.Join(root, "b", "0.png"), 16, 16, false, 5)
	good, err := os.ReadFile(filepath.Join(root, "b", "0.png"))
	if err != nil {
		t.Fatal(err)
	}
	bad = []string{filepath.Join(root, "b", "1.png"), filepath.Join(root, "b", "2.jpg")}
	writeFile(t, bad[0], good[:len(good)/2])                     // truncated
	writeFile(t, bad[1], []byte("\xff\xd8\xff this is no JPEG")) // garbage
	return root, bad
}

func TestCorruptImageFailsItsBatch(t *testing.T) {
	root, bad := badFolder(t)
	ds, err := ImageFolder(root) // listing only: no error yet
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 6 {
		t.Fatalf("%d examples", ds.Len())
	}
	l, err := NewLoader(ds, Config{BatchSize: 2, Pipeline: evalPipeline(16, 16)})
	if err != nil {
		t.Fatal(err)
	}
	base := 0
	n := 0
	for b, err := range l.Batches(0) {
		if n < 2 {
			if err != nil {
				t.Fatalf("batch %d: %v", n, err)
			}
			base += len(b.Labels)
		} else {
			var de *data.Error
			if !errors.As(err, &de) || de.File != bad[0] || !strings.Contains(err.Error(), bad[0]) {
				t.Fatalf("batch %d: error %v, want one naming %s", n, err, bad[0])
			}
		}
		n++
	}
	if n != 3 || base != 4 {
		t.Errorf("%d batches (%d examples) before the error ended the epoch", n, base)
	}
}

func TestSkipBad(t *testing.T) {
	root, bad := badFolder(t)
	writeFile(t, filepath.Join(root, "a", "empty.jpeg"), nil)
	bad = append([]string{filepath.Join(root, "a", "empty.jpeg")}, bad...)
	ds, err := ImageFolder(root, SkipBad())
	if err != nil {
		t.Fatal(err)
	}
	if ds.Skipped() != 3 || ds.Len() != 4 || !slices.Equal(ds.ClassCounts(), []int{3, 1}) {
		t.Fatalf("skipped %d, %d examples %v", ds.Skipped(), ds.Len(), ds.ClassCounts())
	}
	for i, err := range ds.SkippedErrors() {
		var de *data.Error
		if !errors.As(err, &de) || de.File != bad[i] {
			t.Errorf("skipped error %d: %v, want one naming %s", i, err, bad[i])
		}
	}
	for i := range ds.Len() {
		if slices.Contains(bad, ds.Path(i)) {
			t.Errorf("%s kept", ds.Path(i))
		}
	}
	// The same examples every epoch, all loadable.
	l, err := NewLoader(ds, Config{BatchSize: 3, Shuffle: true, Seed: 1, Pipeline: evalPipeline(16, 16)})
	if err != nil {
		t.Fatal(err)
	}
	for epoch := range 2 {
		if got := collect(t, l, epoch); len(got) != 2 {
			t.Errorf("epoch %d: %d batches", epoch, len(got))
		}
	}

	// A class whose images are all bad is an error naming it.
	os.Remove(filepath.Join(root, "b", "0.png"))
	_, err = ImageFolder(root, SkipBad())
	if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "b")+" has no readable images") {
		t.Errorf("error %v", err)
	}
}

// evalPipeline is the default preprocessing of a 3-channel crop×crop model,
// with another resize.
func evalPipeline(resize, crop int) *data.Pipeline {
	pp := ForInput(3, crop, crop)
	pp.Resize = resize
	return pp.Pipeline()
}
