package runtime

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
)

func registerLinalg[T Float](r registry[T]) {
	r["Gemm"] = buildGemm[T]
	r["MatMul"] = buildMatMul[T]
}

// gemmOp is ONNX Gemm: Y = alpha * A' * B' + beta * C, where A' and B' are
// A and B, transposed if asked, and C broadcasts to [M, N].
type gemmOp[T Float] struct {
	m, n, k        int
	transA, transB bool
	alpha, beta    T
	hasC           bool
	ic             []int32 // C's element per output element, nil if C is [M, N]
}

func buildGemm[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) < 2 || in[0] == nil || in[1] == nil {
		return nil, fmt.Errorf("needs A and B")
	}
	a, bs := in[0].shape, in[1].shape
	if len(a) != 2 || len(bs) != 2 {
		return nil, fmt.Errorf("A %v and B %v must be matrices", a, bs)
	}
	k := &gemmOp[T]{
		transA: n.AttrInt("transA", 0) == 1, transB: n.AttrInt("transB", 0) == 1,
		alpha: T(n.AttrFloat("alpha", 1)), beta: T(n.AttrFloat("beta", 1)),
	}
	k.m, k.k = a[0], a[1]
	if k.transA {
		k.m, k.k = a[1], a[0]
	}
	kb, nb := bs[0], bs[1]
	if k.transB {
		kb, nb = bs[1], bs[0]
	}
	if kb != k.k {
		return nil, fmt.Errorf("A %v (transA=%v) times B %v (transB=%v): inner dimensions %d and %d differ", a, k.transA, bs, k.transB, k.k, kb)
	}
	k.n = nb
	args := []*val[T]{in[0], in[1]}
	if len(in) > 2 && in[2] != nil {
		if _, err := broadcast(in[2].shape, []int{k.m, k.n}); err != nil || len(in[2].shape) > 2 {
			return nil, fmt.Errorf("C %v does not broadcast to [%d %d]", in[2].shape, k.m, k.n)
		}
		k.hasC = true
		if size(in[2].shape) != k.m*k.n {
			k.ic = broadcastIndex(in[2].shape, []int{k.m, k.n})
		}
		args = append(args, in[2])
	}
	return one(b.apply(k, args...))
}

func (k *gemmOp[T]) describe() string {
	return fmt.Sprintf("Gemm(%dx%dx%d tA=%v tB=%v a=%g b=%g)", k.m, k.k, k.n, k.transA, k.transB, k.alpha, k.beta)
}
func (k *gemmOp[T]) outShape() []int { return []int{k.m, k.n} }
func (k *gemmOp[T]) differentiable() []bool {
	if k.hasC {
		return []bool{true, true, true}
	}
	return []bool{true, true}
}

// ld is the leading dimension of a stored matrix: its column count.
func ld(rows, cols int, trans bool) int {
	if trans {
		return rows
	}
	return cols
}

func (k *gemmOp[T]) forward(in [][]T, out []T) error {
	if k.hasC && k.beta != 0 {
		c := in[2]
		for i := range out {
			out[i] = k.beta * c[at(k.ic, i)]
		}
	}
	gemm(k.transA, k.transB, k.m, k.n, k.k, k.alpha, in[0], ld(k.m, k.k, k.transA), in[1], ld(k.k, k.n, k.transB), 1, out, k.n)
	return nil
}

func (k *gemmOp[T]) backward(which int, in [][]T, _, gout, gin []T) error {
	a, b := in[0], in[1]
	switch which {
	case 0: // dA' = alpha G B'^T, stored as A is.
		if k.transA { // dA = alpha B' G^T  [k, m]
			gemm(k.transB, true, k.k, k.m, k.n, k.alpha, b, ld(k.k, k.n, k.transB), gout, k.n, 0, gin, k.m)
		} else {
			gemm(false, !k.transB, k.m, k.k, k.n, k.alpha, gout, k.n, b, ld(k.k, k.n, k.transB), 0, gin, k.k)
		}
	case 1: // dB' = alpha A'^T G
		if k.transB { // dB = alpha G^T A'  [n, k]
			gemm(true, k.transA, k.n, k.k, k.m, k.alpha, gout, k.n, a, ld(k.m, k.k, k.transA), 0, gin, k.k)
		} else {
			gemm(!k.transA, false, k.k, k.n, k.m, k.alpha, a, ld(k.m, k.k, k.transA), gout, k.n, 0, gin, k.n)
		}
	case 2:
		for i, g := range gout {
			gin[at(k.ic, i)] += k.beta * g
		}
	}
	return nil
}

// matMul is numpy's matmul: batched over broadcast leading dimensions, with
// 1-d operands promoted to matrices and the added axis removed again.
type matMul[T Float] struct {
	m, n, k int
	out     []int
	batch   int
	offA    []int // per batch: start of A's and B's matrices
	offB    []int
	aN, bN  int // elements of A and B
}

func buildMatMul[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) != 2 || in[0] == nil || in[1] == nil {
		return nil, fmt.Errorf("needs 2 inputs")
	}
	a, bs := in[0].shape, in[1].shape
	if len(a) == 0 || len(bs) == 0 {
		return nil, fmt.Errorf("operands %v and %v must have at least one dimension", a, bs)
	}
	a2, b2 := a, bs
	if len(a) == 1 {
		a2 = []int{1, a[0]}
	}
	if len(bs) == 1 {
		b2 = []int{bs[0], 1}
	}
	k := &matMul[T]{m: a2[len(a2)-2], k: a2[len(a2)-1], n: b2[len(b2)-1], aN: size(a), bN: size(bs)}
	if b2[len(b2)-2] != k.k {
		return nil, fmt.Errorf("%v times %v: inner dimensions %d and %d differ", a, bs, k.k, b2[len(b2)-2])
	}
	batchA, batchB := a2[:len(a2)-2], b2[:len(b2)-2]
	batch, err := broadcast(batchA, batchB)
	if err != nil {
		return nil, err
	}
	k.batch = size(batch)
	ia, ib := broadcastIndex(batchA, batch), broadcastIndex(batchB, batch)
	for i := 0; i < k.batch; i++ {
		k.offA = append(k.offA, int(ia[i])*k.m*k.k)
		k.offB = append(k.offB, int(ib[i])*k.k*k.n)
	}
	k.out = append([]int{}, batch...)
	if len(a) > 1 {
		k.out = append(k.out, k.m)
	}
	if len(bs) > 1 {
		k.out = append(k.out, k.n)
	}
	return one(b.apply(k, in[0], in[1]))
}

func (k *matMul[T]) describe() string {
	return fmt.Sprintf("MatMul(%d x %dx%dx%d)", k.batch, k.m, k.k, k.n)
}
func (k *matMul[T]) outShape() []int        { return k.out }
func (k *matMul[T]) differentiable() []bool { return []bool{true, true} }

func (k *matMul[T]) forward(in [][]T, out []T) error {
	for i := 0; i < k.batch; i++ {
		gemm(false, false, k.m, k.n, k.k, 1, in[0][k.offA[i]:], k.k, in[1][k.offB[i]:], k.n, 0, out[i*k.m*k.n:], k.n)
	}
	return nil
}

func (k *matMul[T]) backward(which int, in [][]T, _, gout, gin []T) error {
	for i := 0; i < k.batch; i++ {
		g := gout[i*k.m*k.n:]
		if which == 0 { // dA += G B^T
			gemm(false, true, k.m, k.k, k.n, 1, g, k.n, in[1][k.offB[i]:], k.n, 1, gin[k.offA[i]:], k.k)
		} else { // dB += A^T G
			gemm(true, false, k.k, k.n, k.m, 1, in[0][k.offA[i]:], k.k, g, k.n, 1, gin[k.offB[i]:], k.n)
		}
	}
	return nil
}
