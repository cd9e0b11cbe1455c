package dataset

import (
	"slices"
	"testing"

	"gorgonia.org/tensor"
)

// rows returns an [n, 2] tensor whose row i is (i, -i), and labels i%3.
func rows(n int) (*tensor.Dense, []int) {
	d := make([]float32, 2*n)
	labels := make([]int, n)
	for i := range n {
		d[2*i], d[2*i+1] = float32(i), float32(-i)
		labels[i] = i % 3
	}
	return tensor.New(tensor.WithShape(n, 2), tensor.WithBacking(d)), labels
}

// batchOrder lists the examples of an epoch's batches, from their rows.
func batchOrder(t *testing.T, s Source, epoch int) (order []int, sizes []int) {
	t.Helper()
	for b, err := range s.Batches(epoch) {
		if err != nil {
			t.Fatal(err)
		}
		d := b.X.Data().([]float32)
		for i, l := range b.Labels {
			j := int(d[2*i])
			if d[2*i+1] != -d[2*i] || l != j%3 {
				t.Fatalf("batch row %d is (%g, %g) with label %d", i, d[2*i], d[2*i+1], l)
			}
			order = append(order, j)
		}
		sizes = append(sizes, len(b.Labels))
	}
	return order, sizes
}

func TestMemorySource(t *testing.T) {
	x, labels := rows(10)
	m, err := NewMemory(x, labels, 4, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	order, sizes := batchOrder(t, m, 3)
	if !slices.Equal(order, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) || !slices.Equal(sizes, []int{4, 4, 2}) {
		t.Errorf("unshuffled: order %v in batches %v", order, sizes)
	}
	if m.Len() != 10 {
		t.Errorf("Len %d", m.Len())
	}

	s, _ := NewMemory(x, labels, 4, true, 42)
	s2, _ := NewMemory(x, labels, 4, true, 42)
	other, _ := NewMemory(x, labels, 4, true, 43)
	e0, sizes := batchOrder(t, s, 0)
	e1, _ := batchOrder(t, s, 1)
	again, _ := batchOrder(t, s2, 1)
	o0, _ := batchOrder(t, other, 0)
	if !slices.Equal(sizes, []int{4, 4, 2}) {
		t.Errorf("shuffled batch sizes %v", sizes)
	}
	for _, o := range [][]int{e0, e1, o0} {
		if !slices.Equal(slices.Sorted(slices.Values(o)), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
			t.Errorf("epoch order %v is not a permutation", o)
		}
	}
	if slices.Equal(e0, e1) || slices.Equal(e0, o0) || slices.Equal(e0, order) {
		t.Errorf("shuffles repeat: %v %v %v", e0, e1, o0)
	}
	if !slices.Equal(e1, again) {
		t.Errorf("the same seed and epoch gave %v and %v", e1, again)
	}
	// The pinned order: the shuffle must not change between releases, or
	// resumed runs would see other batches.
	if want := []int{8, 6, 1, 0, 5, 9, 2, 7, 4, 3}; !slices.Equal(e0, want) {
		t.Errorf("seed 42 epoch 0 gives %v, it used to give %v", e0, want)
	}
	// Order agrees with Batches.
	if got := slices.Concat(s.Order(1)...); !slices.Equal(got, e1) {
		t.Errorf("Order(1) %v, Batches(1) %v", got, e1)
	}
	// Breaking out of the loop is fine.
	for range s.Batches(0) {
		break
	}

	for _, c := range []struct {
		name   string
		x      *tensor.Dense
		labels []int
		bs     int
	}{
		{"labels", x, labels[:9], 4},
		{"batch", x, labels, 0},
		{"ints", tensor.New(tensor.WithShape(2), tensor.WithBacking([]int{1, 2})), []int{0, 1}, 1},
		{"nil", nil, nil, 1},
	} {
		if _, err := NewMemory(c.x, c.labels, c.bs, false, 0); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}
