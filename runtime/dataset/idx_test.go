package dataset

import (
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/graft-dev/graft/runtime/data"
)

const heldoutImages = "../../testdata/models/lenet_mnist/heldout-images-idx3-ubyte.gz"

// heldoutLabels returns the real digits' labels, changed by edit, written
// as an IDX file.
func heldoutLabels(t *testing.T, edit func(labels []int) []int) string {
	t.Helper()
	labels, err := data.ReadIDXLabels("../../testdata/models/lenet_mnist/heldout-labels-idx1-ubyte.gz")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "labels-idx1-ubyte")
	if err := data.WriteIDXLabels(path, edit(labels)); err != nil {
		t.Fatal(err)
	}
	return path
}

// One stray label among real digits is an error naming its example, not an
// extra 191 classes (issue 8 §3).
func TestIDXStrayLabel(t *testing.T) {
	stray := heldoutLabels(t, func(l []int) []int { l[17], l[1500] = 200, 200; return l })
	_, err := IDX(heldoutImages, stray)
	want := "IDX labels file " + stray + "[17] is 200, but no label is from 10 to 199: a stray label? (the classes run from 0 to the largest label; to use only some classes, select them)"
	if err == nil || err.Error() != want {
		t.Errorf("stray label: %v\nwant %s", err, want)
	}
	// Selecting the classes leaves the stray examples out.
	ds, err := IDX(heldoutImages, stray, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 1998 || len(ds.Classes()) != 10 {
		t.Errorf("selected: %d examples of %d classes, want 1998 of 10", ds.Len(), len(ds.Classes()))
	}
	// A file of digits 0-9 plus one 10 has no gap: an 11-class data set,
	// which a 10-class model's check refuses, naming the example.
	ten := heldoutLabels(t, func(l []int) []int { l[42] = 10; return l })
	ds, err = IDX(heldoutImages, ten)
	if err != nil {
		t.Fatal(err)
	}
	want = "../../testdata/models/lenet_mnist/heldout-images-idx3-ubyte.gz[42] has label 10, but the model has 10 classes (0 to 9)"
	if err := ds.CheckClasses(10); err == nil || err.Error() != want {
		t.Errorf("CheckClasses(10): %v, want %s", err, want)
	}
	if err := ds.CheckClasses(11); err != nil {
		t.Error(err)
	}
}

// Real subsets: only the higher digits (no gap, the lower classes empty);
// a gap in the middle is refused unless the classes are selected.
func TestIDXSubsets(t *testing.T) {
	var keep []int
	high := heldoutLabels(t, func(l []int) []int {
		var out []int
		for i, x := range l {
			if x >= 5 {
				keep, out = append(keep, i), append(out, x)
			}
		}
		return out
	})
	// The images of those labels.
	all, err := data.ReadIDXImages(heldoutImages)
	if err != nil {
		t.Fatal(err)
	}
	size := all.Rows * all.Cols
	sub := &data.IDXImages{Count: len(keep), Rows: all.Rows, Cols: all.Cols}
	for _, i := range keep {
		sub.Pixels = append(sub.Pixels, all.Pixels[i*size:(i+1)*size]...)
	}
	images := filepath.Join(t.TempDir(), "images-idx3-ubyte")
	if err := data.WriteIDXImages(images, sub); err != nil {
		t.Fatal(err)
	}
	ds, err := IDX(images, high)
	if err != nil {
		t.Fatal(err)
	}
	counts := ds.ClassCounts()
	if len(counts) != 10 || !slices.Equal(counts[:5], []int{0, 0, 0, 0, 0}) || slices.Contains(counts[5:], 0) {
		t.Errorf("digits 5-9: class counts %v, want 10 classes, 0-4 empty", counts)
	}
	sel, err := IDX(images, high, 5, 6, 7, 8, 9)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sel.Classes(), []string{"5", "6", "7", "8", "9"}) || sel.Len() != ds.Len() || sel.Label(0) != ds.Label(0)-5 {
		t.Errorf("digits 5-9 selected: classes %v, %d examples", sel.Classes(), sel.Len())
	}

	// Digits 0-2 and 7-9 (3-6 relabelled out): a gap.
	gap := heldoutLabels(t, func(l []int) []int {
		for i, x := range l {
			if x >= 3 && x <= 6 {
				l[i] = 0
			}
		}
		return l
	})
	ten := heldoutLabels(t, func(l []int) []int { return l })
	firstHigh := slices.IndexFunc(mustLabels(t, gap), func(l int) bool { return l >= 7 })
	_, err = IDX(heldoutImages, gap)
	want := "IDX labels file " + gap + "[" + itoa(firstHigh) + "] is " + itoa(mustLabels(t, gap)[firstHigh]) + ", but no label is from 3 to 6: a stray label? (the classes run from 0 to the largest label; to use only some classes, select them)"
	if err == nil || err.Error() != want {
		t.Errorf("gap: %v\nwant %s", err, want)
	}
	sel, err = IDX(heldoutImages, gap, 0, 1, 2, 7, 8, 9)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sel.Classes(), []string{"0", "1", "2", "7", "8", "9"}) || sel.Len() != 2000 {
		t.Errorf("gap selected: classes %v, %d examples", sel.Classes(), sel.Len())
	}
	// One missing class gives the singular form.
	one := heldoutLabels(t, func(l []int) []int {
		for i, x := range l {
			if x == 1 {
				l[i] = 0
			}
		}
		return l
	})
	first2 := slices.IndexFunc(mustLabels(t, one), func(l int) bool { return l >= 2 })
	_, err = IDX(heldoutImages, one)
	want = "IDX labels file " + one + "[" + itoa(first2) + "] is " + itoa(mustLabels(t, one)[first2]) + ", but no label is 1: a stray label? (the classes run from 0 to the largest label; to use only some classes, select them)"
	if err == nil || err.Error() != want {
		t.Errorf("one missing: %v\nwant %s", err, want)
	}
	// Selecting a class the file does not have.
	_, err = IDX(heldoutImages, ten, 3, 12)
	want = "dataset " + heldoutImages + ": select class 12, the labels run from 0 to 9"
	if err == nil || err.Error() != want {
		t.Errorf("select 12: %v, want %s", err, want)
	}
}

func mustLabels(t *testing.T, path string) []int {
	t.Helper()
	l, err := data.ReadIDXLabels(path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var itoa = strconv.Itoa
