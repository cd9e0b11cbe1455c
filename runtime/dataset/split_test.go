package dataset

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// idxSet returns an IDX data set where class c has counts[c] examples,
// interleaved.
func idxSet(t *testing.T, counts []int) *Dataset {
	t.Helper()
	var labels []int
	left := slices.Clone(counts)
	for more := true; more; {
		more = false
		for c := range left {
			if left[c] > 0 {
				labels = append(labels, c)
				left[c]--
				more = true
			}
		}
	}
	images, lab := writeIDX(t, labels)
	ds, err := IDX(images, lab)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestSplitStratified(t *testing.T) {
	counts := []int{1, 2, 5, 10, 23, 40}
	ds := idxSet(t, counts)
	tr, va, err := Split(ds, 0.2, 7)
	if err != nil {
		t.Fatal(err)
	}
	for c, n := range counts {
		k := int(math.Round(0.2 * float64(n)))
		if n >= 2 {
			k = min(max(k, 1), n-1)
		} else {
			k = 0
		}
		if va.ClassCounts()[c] != k || tr.ClassCounts()[c] != n-k {
			t.Errorf("class %d of %d: %d validation, %d training examples; want %d and %d",
				c, n, va.ClassCounts()[c], tr.ClassCounts()[c], k, n-k)
		}
	}
	// Disjoint, together the whole set, labels and order kept.
	seen := map[int]int{}
	for _, s := range []*Dataset{tr, va} {
		prev := -1
		for i := range s.Len() {
			r := s.rows[i]
			if r <= prev {
				t.Fatal("order not kept")
			}
			prev = r
			seen[r]++
			if s.Label(i) != ds.Label(r) {
				t.Fatalf("example %d relabelled", r)
			}
		}
	}
	if len(seen) != ds.Len() || tr.Len()+va.Len() != ds.Len() {
		t.Errorf("%d + %d examples cover %d of %d", tr.Len(), va.Len(), len(seen), ds.Len())
	}
	if !slices.Equal(tr.Classes(), ds.Classes()) || !slices.Equal(va.Classes(), ds.Classes()) {
		t.Error("classes changed")
	}

	// Deterministic by seed.
	tr2, va2, _ := Split(ds, 0.2, 7)
	if !slices.Equal(tr.rows, tr2.rows) || !slices.Equal(va.rows, va2.rows) {
		t.Error("the same seed split differently")
	}
	_, va3, _ := Split(ds, 0.2, 8)
	if slices.Equal(va.rows, va3.rows) {
		t.Error("another seed split the same way")
	}

	for _, f := range []float64{0, 1, -0.5, math.NaN()} {
		if _, _, err := Split(ds, f, 1); err == nil || !strings.Contains(err.Error(), "validation fraction") {
			t.Errorf("fraction %v: error %v", f, err)
		}
	}
}

func TestIDXSelectPerClass(t *testing.T) {
	ds := idxSet(t, []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	if ds.Len() != 75 || len(ds.Classes()) != 10 || ds.Classes()[7] != "7" {
		t.Fatalf("%d examples, classes %q", ds.Len(), ds.Classes())
	}
	sel, err := ds.Select(5, 6, 7, 8, 9)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"5", "6", "7", "8", "9"}; !slices.Equal(sel.Classes(), want) {
		t.Errorf("classes %q", sel.Classes())
	}
	if !slices.Equal(sel.ClassCounts(), []int{8, 9, 10, 11, 12}) {
		t.Errorf("counts %v", sel.ClassCounts())
	}
	for i := range sel.Len() {
		if ds.Label(sel.rows[i]) != sel.Label(i)+5 {
			t.Fatalf("example %d: label %d, was %d", i, sel.Label(i), ds.Label(sel.rows[i]))
		}
	}
	rev, err := ds.Select(9, 0)
	if err != nil || !slices.Equal(rev.ClassCounts(), []int{12, 3}) || rev.Classes()[0] != "9" {
		t.Errorf("Select(9, 0): %v %v", rev, err)
	}

	lim, err := sel.PerClass(9, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lim.ClassCounts(), []int{8, 9, 9, 9, 9}) {
		t.Errorf("per class counts %v", lim.ClassCounts())
	}
	if !slices.IsSorted(lim.rows) {
		t.Error("PerClass reordered examples")
	}
	lim2, _ := sel.PerClass(9, 3)
	lim3, _ := sel.PerClass(9, 4)
	if !slices.Equal(lim.rows, lim2.rows) || slices.Equal(lim.rows, lim3.rows) {
		t.Error("PerClass is not a function of its seed")
	}

	named, err := rev.WithClassNames("nine", "zero")
	if err != nil || named.Classes()[1] != "zero" || rev.Classes()[1] != "0" {
		t.Errorf("WithClassNames: %q, %v", named.Classes(), err)
	}

	for _, c := range []struct {
		err  error
		want string
	}{
		{second(ds.Select()), "no classes"},
		{second(ds.Select(3, 10)), "select class 10"},
		{second(ds.Select(2, 2)), "class 2 selected twice"},
		{second(sel.PerClass(0, 1)), "0 examples per class"},
		{second(ds.WithClassNames("a")), "1 class names for 10 classes"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("error %v, want %q", c.err, c.want)
		}
	}
	images, labels := writeIDX(t, []int{0, 2, 0, 2})
	if _, err := IDX(images, labels, 0, 1); err == nil || err.Error() != "dataset "+images+": selected class 1 (1) has no examples" {
		t.Errorf("empty selected class: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

func TestIDXErrors(t *testing.T) {
	images, labels := writeIDX(t, []int{0, 1, 2})
	_, other := writeIDX(t, []int{0, 1})
	if _, err := IDX(images, other); err == nil || !strings.Contains(err.Error(), "holds 3 images") || !strings.Contains(err.Error(), other) {
		t.Errorf("count mismatch: %v", err)
	}
	if _, err := IDX(labels, labels); err == nil || !strings.Contains(err.Error(), labels) {
		t.Errorf("labels as images: %v", err)
	}
	if _, err := IDX(images, images); err == nil || !strings.Contains(err.Error(), images) {
		t.Errorf("images as labels: %v", err)
	}
}
