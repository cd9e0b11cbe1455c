package runtime

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestMinMaxGradients(t *testing.T) {
	for _, shapes := range [][][]int{
		{{2, 3, 4}},
		{{2, 3, 4}, {2, 3, 4}},
		{{2, 3, 4}, {3, 1}},
		{{4}, {2, 3, 4}, {3, 1}},
		{{5}, {}, {2, 1}, {1, 5}},
	} {
		for _, op := range []string{"Max", "Min"} {
			c := opCase{op: op, opset: 13, shapes: shapes}
			// Random values: no ties.
			checkGrad(t, c.kernel(t), randomInputs(30, shapes))
		}
	}
}

// Ties split the gradient evenly; NaN wins and takes it.
func TestMinMaxTies(t *testing.T) {
	k := opCase{op: "Max", shapes: [][]int{{4}, {4}, {4}}}.kernel(t)
	in := [][]float64{{1, 2, 3, math.NaN()}, {1, 2, 0, 5}, {1, 0, 0, 6}}
	out := make([]float64, 4)
	k.forward(in, out)
	if !(out[0] == 1 && out[1] == 2 && out[2] == 3 && math.IsNaN(out[3])) {
		t.Fatalf("Max = %v, want [1 2 3 NaN]", out)
	}
	gout := []float64{6, 6, 6, 6}
	want := [][]float64{{2, 3, 6, 6}, {2, 3, 0, 0}, {2, 0, 0, 0}}
	for i := range in {
		g := make([]float64, 4)
		k.backward(i, in, out, gout, g)
		if fmt.Sprint(g) != fmt.Sprint(want[i]) {
			t.Errorf("gradient of input %d: %v, want %v", i, g, want[i])
		}
	}
	// A broadcast input collects the gradient of every element it won.
	k = opCase{op: "Min", shapes: [][]int{{3}, {}}}.kernel(t)
	in = [][]float64{{1, 2, 0}, {1}}
	out = make([]float64, 3)
	k.forward(in, out)
	g := make([]float64, 1)
	k.backward(1, in, out, []float64{4, 4, 4}, g)
	if g[0] != 6 { // half of the tie at 0, all of element 1
		t.Errorf("gradient of the scalar: %g, want 6", g[0])
	}
}

// Integer Min and Max (shape arithmetic) are computed at compile time.
func TestMinMaxInts(t *testing.T) {
	_, outs := opCase{op: "Max", ints: map[int][]int64{0: {3, -7, 5}, 1: {4}, 2: {-1, 9, 0}}}.build(t)
	if fmt.Sprint(outs[0].ints) != "[4 9 5]" || outs[0].node != nil {
		t.Errorf("Max of integers: %v (node %v), want [4 9 5] at compile time", outs[0].ints, outs[0].node)
	}
	_, outs = opCase{op: "Min", ints: map[int][]int64{0: {3, -7, 5}, 1: {4}}}.build(t)
	if fmt.Sprint(outs[0].ints) != "[3 -7 4]" {
		t.Errorf("Min of integers: %v, want [3 -7 4]", outs[0].ints)
	}
}

func TestMinMaxErrors(t *testing.T) {
	f := registryFor[float64]()["Max"]
	for _, c := range []struct {
		in   []*val[float64]
		want string
	}{
		{nil, "needs at least one input"},
		{[]*val[float64]{{shape: []int{2, 3}}, {shape: []int{4}}}, "inputs [[2 3] [4]]: shapes [2 3] and [4] do not broadcast"},
		{[]*val[float64]{{shape: []int{2}}, nil}, "input 1 is missing"},
	} {
		if _, err := f(nil, nil, c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
}
