package runtime

import (
	"fmt"
	"slices"
	"strings"

	"github.com/graft-dev/graft/onnx"
)

// registerEinsum adds Einsum: every equation numpy accepts, with explicit
// or implicit output, "..." and repeated labels (diagonals). Dimensions of
// size 1 broadcast, as in numpy and PyTorch. Two operands contract as a
// batched matrix product on the runtime's gemm (the attention products
// exporters emit); more contract pairwise from the left; one is a
// transpose, diagonal or sum. An equation that does not fit its inputs is
// an error naming it.
func registerEinsum[T Float](r registry[T]) {
	r["Einsum"] = buildEinsum[T]
}

// Labels are letters by their byte value; the dimensions "..." stands for
// are ellipsisLabel+i, i counting from the left of the widest "...".
const ellipsisLabel = 256

func labelName(l int) string {
	if l >= ellipsisLabel {
		return fmt.Sprintf("...[%d]", l-ellipsisLabel)
	}
	return string(rune(l))
}

// parseEinsumTerm reads one term's labels for an operand of the given rank
// (-1 for the output, whose "..." stands for all ellipsis dimensions).
func parseEinsumTerm(term string, rank, ellipsis int) ([]int, error) {
	var labels []int
	letters := len(strings.ReplaceAll(term, "...", ""))
	seen := false
	for i := 0; i < len(term); i++ {
		c := term[i]
		switch {
		case strings.HasPrefix(term[i:], "..."):
			if seen {
				return nil, fmt.Errorf("term %q has \"...\" twice", term)
			}
			seen = true
			e := ellipsis
			if rank >= 0 {
				e = rank - letters
				if e < 0 {
					return nil, fmt.Errorf("term %q names %d dimensions, its operand has %d", term, letters, rank)
				}
			}
			for j := 0; j < e; j++ {
				labels = append(labels, ellipsisLabel+ellipsis-e+j)
			}
			i += 2
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			labels = append(labels, int(c))
		default:
			return nil, fmt.Errorf("term %q has %q, which is not a letter or \"...\"", term, c)
		}
	}
	if rank >= 0 && len(labels) != rank {
		return nil, fmt.Errorf("term %q names %d dimensions, its operand has %d", term, len(labels), rank)
	}
	return labels, nil
}

// parseEinsum returns the labels of each operand's dimensions and of the
// output's.
func parseEinsum(eq string, shapes [][]int) (ins [][]int, out []int, err error) {
	eq = strings.ReplaceAll(eq, " ", "")
	lhs, rhs, explicit := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	if len(terms) != len(shapes) {
		return nil, nil, fmt.Errorf("has %d terms for %d inputs", len(terms), len(shapes))
	}
	ellipsis := 0
	for i, t := range terms {
		if strings.Contains(t, "...") {
			letters := len(strings.ReplaceAll(t, "...", ""))
			ellipsis = max(ellipsis, len(shapes[i])-letters)
		}
	}
	count := map[int]int{}
	for i, t := range terms {
		l, err := parseEinsumTerm(t, len(shapes[i]), ellipsis)
		if err != nil {
			return nil, nil, fmt.Errorf("operand %d: %w", i, err)
		}
		ins = append(ins, l)
		for _, x := range l {
			count[x]++
		}
	}
	if explicit {
		if out, err = parseEinsumTerm(rhs, -1, ellipsis); err != nil {
			return nil, nil, fmt.Errorf("output: %w", err)
		}
		for i, l := range out {
			if count[l] == 0 {
				return nil, nil, fmt.Errorf("output label %s is in no input", labelName(l))
			}
			if slices.Contains(out[:i], l) {
				return nil, nil, fmt.Errorf("output label %s repeats", labelName(l))
			}
		}
		return ins, out, nil
	}
	// Implicit output: the ellipsis dimensions, then the labels used once,
	// in alphabetical order.
	for l := range ellipsis {
		out = append(out, ellipsisLabel+l)
	}
	var once []int
	for l, c := range count {
		if c == 1 && l < ellipsisLabel {
			once = append(once, l)
		}
	}
	slices.Sort(once)
	return ins, append(out, once...), nil
}

func buildEinsum[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	eq := n.AttrString("equation", "")
	if len(in) == 0 {
		return nil, fmt.Errorf("equation %q: needs at least one input", eq)
	}
	shapes := make([][]int, len(in))
	for i, v := range in {
		if v == nil {
			return nil, fmt.Errorf("equation %q: input %d is missing", eq, i)
		}
		shapes[i] = v.shape
	}
	labels, outLabels, err := parseEinsum(eq, shapes)
	if err != nil {
		return nil, fmt.Errorf("equation %q: %w", eq, err)
	}
	// Label sizes; a dimension of size 1 broadcasts, and is dropped from its
	// operand where the label is larger.
	dims := map[int]int{}
	for i, ls := range labels {
		for j, l := range ls {
			d := shapes[i][j]
			switch old, ok := dims[l]; {
			case !ok || old == 1:
				dims[l] = d
			case d != old && d != 1:
				return nil, fmt.Errorf("equation %q: label %s is %d in input %d and %d elsewhere (inputs %v)", eq, labelName(l), d, i, old, shapes)
			}
		}
	}
	ops := make([]einsumTerm[T], len(in))
	for i, ls := range labels {
		ops[i] = einsumTerm[T]{v: in[i]}
		for j, l := range ls {
			if shapes[i][j] == 1 && dims[l] != 1 {
				l = -1 // broadcast: the dimension contributes nothing
			}
			ops[i].labels = append(ops[i].labels, l)
		}
	}
	// Contract from the left; an intermediate keeps the labels the output or
	// a later operand needs.
	acc := ops[0]
	if len(ops) == 1 {
		return one(b.einsum(eq, dims, []einsumTerm[T]{acc}, outLabels))
	}
	for i := 1; i < len(ops); i++ {
		var out []int
		if i == len(ops)-1 {
			out = outLabels
		} else {
			keep := append([]int{}, outLabels...)
			for _, o := range ops[i+1:] {
				keep = append(keep, o.labels...)
			}
			out = pairLabels(acc.labels, ops[i].labels, keep)
		}
		v, err := b.einsum(eq, dims, []einsumTerm[T]{acc, ops[i]}, out)
		if err != nil {
			return nil, err
		}
		acc = einsumTerm[T]{v: v, labels: out}
	}
	return []*val[T]{acc.v}, nil
}

// einsumTerm is an operand with the label of each dimension (-1 for a
// broadcast dimension of size 1).
type einsumTerm[T Float] struct {
	v      *val[T]
	labels []int
}

// pairLabels is the natural output of contracting a with b when keep lists
// what is needed afterwards: batch labels (in both, kept), then a's own,
// then b's own, each in first-seen order.
func pairLabels(a, b, keep []int) []int {
	var batch, own, other []int
	for _, l := range a {
		switch {
		case l < 0 || !slices.Contains(keep, l) || slices.Contains(batch, l) || slices.Contains(own, l):
		case slices.Contains(b, l):
			batch = append(batch, l)
		default:
			own = append(own, l)
		}
	}
	for _, l := range b {
		if l >= 0 && slices.Contains(keep, l) && !slices.Contains(a, l) && !slices.Contains(other, l) {
			other = append(other, l)
		}
	}
	return append(append(batch, own...), other...)
}

// einsum adds one kernel computing the output labels out from one operand
// or two.
func (b *builder[T]) einsum(eq string, dims map[int]int, ops []einsumTerm[T], out []int) (*val[T], error) {
	sizes := func(ls []int) []int {
		s := make([]int, len(ls))
		for i, l := range ls {
			s[i] = dims[l]
		}
		return s
	}
	k := &einsumOp[T]{eq: eq, out: sizes(out)}
	var args []*val[T]
	for _, o := range ops {
		args = append(args, o.v)
		if err := checkIndexable(o.v.shape); err != nil {
			return nil, fmt.Errorf("equation %q: %w", eq, err)
		}
	}
	if len(ops) == 1 {
		k.terms = []einsumLayout{layout(ops[0], out, dims)}
		return b.apply(k, args...)
	}
	a, c := ops[0].labels, ops[1].labels
	has := func(ls []int, l int) bool { return l >= 0 && slices.Contains(ls, l) }
	var batch, m, kk, nn []int
	add := func(dst *[]int, l int) {
		if !slices.Contains(*dst, l) {
			*dst = append(*dst, l)
		}
	}
	for _, l := range a {
		switch {
		case !has(c, l):
			if slices.Contains(out, l) {
				add(&m, l)
			}
		case slices.Contains(out, l):
			add(&batch, l)
		default:
			add(&kk, l)
		}
	}
	for _, l := range c {
		if !has(a, l) && slices.Contains(out, l) {
			add(&nn, l)
		}
	}
	k.batch, k.m, k.k, k.n = size(sizes(batch)), size(sizes(m)), size(sizes(kk)), size(sizes(nn))
	k.terms = []einsumLayout{
		layout(ops[0], append(append(slices.Clone(batch), m...), kk...), dims),
		layout(ops[1], append(append(slices.Clone(batch), kk...), nn...), dims),
	}
	// The product is laid out [batch, m, n]; the output reads it in its order.
	prod := append(append(slices.Clone(batch), m...), nn...)
	if !slices.Equal(prod, out) {
		st := rowMajorStrides(sizes(prod))
		step := make([]int, len(out))
		for i, l := range out {
			step[i] = st[slices.Index(prod, l)]
		}
		k.outIdx = affineIndex(k.out, 0, step)
	}
	return b.apply(k, args...)
}

// layout returns how to read operand o as the tensor of labels rows followed
// by the labels o has that are not in rows, which are summed.
func layout[T Float](o einsumTerm[T], rows []int, dims map[int]int) einsumLayout {
	var sum []int
	for _, l := range o.labels {
		if l >= 0 && !slices.Contains(rows, l) && !slices.Contains(sum, l) {
			sum = append(sum, l)
		}
	}
	all := append(slices.Clone(rows), sum...)
	st := rowMajorStrides(o.v.shape)
	shape := make([]int, len(all))
	step := make([]int, len(all))
	for i, l := range all {
		shape[i] = dims[l]
		// A label repeated in o walks its diagonal.
		for j, ol := range o.labels {
			if ol == l {
				step[i] += st[j]
			}
		}
	}
	g := 1
	for _, l := range sum {
		g *= dims[l]
	}
	l := einsumLayout{idx: affineIndex(shape, 0, step), group: g}
	l.direct = g == 1 && len(l.idx) == size(o.v.shape)
	for i, q := range l.idx {
		if !l.direct {
			break
		}
		l.direct = int(q) == i
	}
	return l
}

// einsumLayout reads an operand as a row-major tensor whose element p is
// the sum of the operand's elements idx[p*group : (p+1)*group]; direct
// when that is the operand itself.
type einsumLayout struct {
	idx    []int32
	group  int
	direct bool
}

// readLayout returns the operand x in the layout, x itself when direct.
func readLayout[T Float](l einsumLayout, x []T) []T {
	if l.direct {
		return x
	}
	dst := make([]T, len(l.idx)/l.group)
	for p := range dst {
		var s float64
		for _, q := range l.idx[p*l.group : (p+1)*l.group] {
			s += float64(x[q])
		}
		dst[p] = T(s)
	}
	return dst
}

// spreadLayout adds the gradient g of the layout into the operand's gradient gin.
func spreadLayout[T Float](l einsumLayout, g, gin []T) {
	for p, v := range g {
		for _, q := range l.idx[p*l.group : (p+1)*l.group] {
			gin[q] += v
		}
	}
}

// einsumOp computes one contraction: with one operand, its layout is the
// output; with two, the layouts are batched matrices [batch, m, k] and
// [batch, k, n] whose product [batch, m, n] the output reads through
// outIdx (nil: in order).
type einsumOp[T Float] struct {
	eq             string
	out            []int
	terms          []einsumLayout
	batch, m, k, n int
	outIdx         []int32
}

func (k *einsumOp[T]) describe() string { return fmt.Sprintf("Einsum(%q)%v", k.eq, k.out) }
func (k *einsumOp[T]) outShape() []int  { return k.out }
func (k *einsumOp[T]) differentiable() []bool {
	return []bool{true, len(k.terms) > 1}[:len(k.terms)]
}

func (k *einsumOp[T]) forward(in [][]T, out []T) error {
	if len(k.terms) == 1 {
		copy(out, readLayout(k.terms[0], in[0]))
		return nil
	}
	a, b := readLayout(k.terms[0], in[0]), readLayout(k.terms[1], in[1])
	c := out
	if k.outIdx != nil {
		c = make([]T, len(out))
	}
	mk, kn, mn := k.m*k.k, k.k*k.n, k.m*k.n
	for i := 0; i < k.batch; i++ {
		gemm(false, false, k.m, k.n, k.k, 1, a[i*mk:], k.k, b[i*kn:], k.n, 0, c[i*mn:], k.n)
	}
	for i, j := range k.outIdx {
		out[i] = c[j]
	}
	return nil
}

func (k *einsumOp[T]) backward(which int, in [][]T, _, gout, gin []T) error {
	t := k.terms[which]
	if len(k.terms) == 1 {
		spreadLayout(t, gout, gin)
		return nil
	}
	g := gout
	if k.outIdx != nil {
		g = make([]T, len(gout))
		for i, j := range k.outIdx {
			g[j] = gout[i]
		}
	}
	d := gin // the layout's gradient, written in place when direct
	if !t.direct {
		d = make([]T, len(t.idx)/t.group)
	}
	mk, kn, mn := k.m*k.k, k.k*k.n, k.m*k.n
	if which == 0 { // dA = G B^T
		b := readLayout(k.terms[1], in[1])
		for i := 0; i < k.batch; i++ {
			gemm(false, true, k.m, k.k, k.n, 1, g[i*mn:], k.n, b[i*kn:], k.n, 0, d[i*mk:], k.k)
		}
	} else { // dB = A^T G
		a := readLayout(k.terms[0], in[0])
		for i := 0; i < k.batch; i++ {
			gemm(true, false, k.k, k.n, k.m, 1, a[i*mk:], k.k, g[i*mn:], k.n, 0, d[i*kn:], k.n)
		}
	}
	if !t.direct {
		spreadLayout(t, d, gin)
	}
	return nil
}
