package runtime

import (
	"math"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
)

// einsumCases are equations with letters only, and operand shapes.
var einsumCases = []struct {
	eq     string
	shapes [][]int
}{
	{"bij,bjk->bik", [][]int{{2, 3, 4}, {2, 4, 5}}},
	{"bhid,bhjd->bhij", [][]int{{2, 3, 4, 5}, {2, 3, 6, 5}}},
	{"bhij,bhjd->bhid", [][]int{{2, 3, 4, 6}, {2, 3, 6, 5}}},
	{"BGHID,BGHJD->BGHIJ", [][]int{{1, 2, 2, 3, 4}, {1, 2, 2, 5, 4}}},
	{"ij->ji", [][]int{{3, 4}}},
	{"ij->i", [][]int{{3, 4}}},
	{"ijk->", [][]int{{2, 3, 4}}},
	{"ii->i", [][]int{{3, 3}}},
	{"iij->ji", [][]int{{3, 3, 2}}},
	{"i,i->", [][]int{{5}, {5}}},
	{"i,j->ji", [][]int{{3}, {4}}},
	{"ij,ij->ij", [][]int{{3, 4}, {3, 4}}},
	{"ij,jk->ki", [][]int{{3, 4}, {4, 5}}},
	{"bij,bkj->bk", [][]int{{2, 3, 4}, {2, 5, 4}}},
	{"ii,ij->j", [][]int{{3, 3}, {3, 4}}},
	{"bik,kj->jbi", [][]int{{2, 3, 4}, {4, 5}}},
	{"ij,ij->ij", [][]int{{1, 4}, {3, 4}}}, // i broadcasts
}

// naiveEinsum sums the products over every assignment of the labels.
func naiveEinsum(terms []string, out string, shapes [][]int, in [][]float64) []float64 {
	dims := map[byte]int{}
	var labels []byte
	for i, term := range terms {
		for j := range len(term) {
			if _, ok := dims[term[j]]; !ok {
				labels = append(labels, term[j])
			}
			dims[term[j]] = max(dims[term[j]], shapes[i][j])
		}
	}
	index := func(term string, shape []int, pos map[byte]int) int {
		off := 0
		for j := range len(term) {
			p := pos[term[j]]
			if shape[j] == 1 {
				p = 0
			}
			off = off*shape[j] + p
		}
		return off
	}
	outShape := make([]int, len(out))
	for j := range len(out) {
		outShape[j] = dims[out[j]]
	}
	res := make([]float64, size(outShape))
	pos := map[byte]int{}
	var walk func(d int)
	walk = func(d int) {
		if d == len(labels) {
			p := 1.0
			for i, term := range terms {
				p *= in[i][index(term, shapes[i], pos)]
			}
			res[index(out, outShape, pos)] += p
			return
		}
		for v := range dims[labels[d]] {
			pos[labels[d]] = v
			walk(d + 1)
		}
	}
	walk(0)
	return res
}

func TestEinsumForwardAndGradients(t *testing.T) {
	for _, c := range einsumCases {
		oc := opCase{op: "Einsum", opset: 12, shapes: c.shapes, attrs: []*onnx.Attribute{aString("equation", c.eq)}}
		k := oc.kernel(t)
		in := randomInputs(50, c.shapes)
		checkGrad(t, k, in)
		lhs, rhs, _ := strings.Cut(c.eq, "->")
		want := naiveEinsum(strings.Split(lhs, ","), rhs, c.shapes, in)
		out := make([]float64, size(k.outShape()))
		k.forward(in, out)
		for i := range want {
			if math.Abs(out[i]-want[i]) > 1e-12*(1+math.Abs(want[i])) {
				t.Errorf("%s: out[%d] = %g, want %g", c.eq, i, out[i], want[i])
				break
			}
		}
	}
}

// A chain of three operands is two kernels: the first keeps the labels the
// third operand needs.
func TestEinsumChain(t *testing.T) {
	shapes := [][]int{{2, 3}, {3, 4}, {4, 2, 5}}
	oc := opCase{op: "Einsum", opset: 12, shapes: shapes, attrs: []*onnx.Attribute{aString("equation", "ij,jk,kil->l")}}
	b, outs := oc.build(t)
	if len(b.kernels) != 2 || len(outs[0].shape) != 1 || outs[0].shape[0] != 5 {
		t.Fatalf("built %d kernels, output %v; want 2 kernels, [5]", len(b.kernels), outs[0].shape)
	}
	if s := b.kernels[0].outShape(); len(s) != 2 || s[0] != 2 || s[1] != 4 {
		t.Errorf("intermediate %v, want [2 4] (i, k)", s)
	}
	in := randomInputs(51, shapes)
	w := []float64{0.3, -1, 2, 0.5, 1.5}
	out, grads := graphGrads(t, oc, in, w)
	want := naiveEinsum([]string{"ij", "jk", "kil"}, "l", shapes, in)
	for i := range want {
		if math.Abs(out[i]-want[i]) > 1e-12*(1+math.Abs(want[i])) {
			t.Fatalf("out[%d] = %g, want %g", i, out[i], want[i])
		}
	}
	// Finite differences of the whole chain.
	loss := func() float64 {
		o := naiveEinsum([]string{"ij", "jk", "kil"}, "l", shapes, in)
		s := 0.0
		for i := range o {
			s += w[i] * o[i]
		}
		return s
	}
	for i := range in {
		for j := range in[i] {
			x := in[i][j]
			in[i][j] = x + 1e-6
			lp := loss()
			in[i][j] = x - 1e-6
			lm := loss()
			in[i][j] = x
			if num := (lp - lm) / 2e-6; math.Abs(num-grads[i][j]) > 1e-6*(1+math.Abs(num)) {
				t.Errorf("d/d input %d [%d]: %g, finite difference %g", i, j, grads[i][j], num)
			}
		}
	}
}

func TestEinsumErrors(t *testing.T) {
	for _, c := range []struct {
		eq     string
		shapes [][]int
		want   string
	}{
		{"ij,jk->ik", [][]int{{2, 3}}, `equation "ij,jk->ik": has 2 terms for 1 inputs`},
		{"ij->ik", [][]int{{2, 3}}, `equation "ij->ik": output label k is in no input`},
		{"ij->ii", [][]int{{2, 3}}, `equation "ij->ii": output label i repeats`},
		{"ijk->i", [][]int{{2, 3}}, `equation "ijk->i": operand 0: term "ijk" names 3 dimensions, its operand has 2`},
		{"i1->i", [][]int{{2, 3}}, `equation "i1->i": operand 0: term "i1" has '1', which is not a letter or "..."`},
		{"ij,jk->ik", [][]int{{2, 3}, {4, 5}}, `equation "ij,jk->ik": label j is 4 in input 1 and 3 elsewhere`},
		{"ii->i", [][]int{{2, 3}}, `equation "ii->i": label i is 3 in input 0 and 2 elsewhere`},
		{"......->", [][]int{{2, 3}}, `has "..." twice`},
		{"...ijk->", [][]int{{2, 3}}, `term "...ijk" names 3 dimensions, its operand has 2`},
		{"", [][]int{{2}}, `equation "": operand 0: term "" names 0 dimensions, its operand has 1`},
	} {
		in := make([]*val[float64], len(c.shapes))
		for i, s := range c.shapes {
			in[i] = &val[float64]{shape: s}
		}
		n := &onnx.Node{Name: "n", OpType: "Einsum", Attrs: []*onnx.Attribute{aString("equation", c.eq)}}
		if _, err := buildEinsum(nil, n, in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %v: error %v, want %q", c.eq, c.shapes, err, c.want)
		}
	}
}
