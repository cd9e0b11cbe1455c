package runtime

import (
	goruntime "runtime"
	"sync"
	"sync/atomic"
)

// sgemm is the float32 GEMM behind gemm: row-major
// C = alpha*op(A)*op(B) + beta*C, op transposing when asked.
//
// It follows the GotoBLAS/BLIS structure. The columns of C are walked in
// blocks of nc, the shared dimension in blocks of kc and the rows in blocks
// of mc. For each (kc, nc) block, op(B) is packed into column panels nr wide
// (each panel stored row after row, kc rows of nr values); for each (mc, kc)
// block, op(A) is packed into row panels mr tall (stored column after column,
// kc columns of mr values). Transposition is resolved while packing, so the
// register-blocked micro-kernel only ever sees one layout: it multiplies an
// mr x kc panel of A by a kc x nr panel of B into an mr x nr tile of C. The
// packed A block is sized for L2 and one B panel for L1. Panels are padded
// with zeros to whole tiles; tiles crossing the edge of C are computed into a
// scratch tile and merged.
//
// Large products are split over GOMAXPROCS goroutines along whichever of M or
// N has more tiles; each goroutine runs the blocked algorithm on its own part
// of C with its own packing buffers (pooled), so the only cost of the split is
// packing the other operand once per goroutine.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmWith(sgemmKern, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// sgemmKernel is a register-blocked micro-kernel with its packing helpers.
//
// fn sets the mr x nr tile at c (row stride ldc) to alpha*A*B + beta*C, not
// reading C when beta is zero, where B is a k x nr panel packed row by row
// (nr values per step) and A is mr x k with element (r, p) at a[r*rsa+p*csa]:
// a packed panel has rsa = 1, csa = mr. A kernel marked strided accepts any
// strides, so row-major A (rsa = lda, csa = 1) needs no packing.
//
// packB packs whole panels of a non-transposed B: for each of kc rows of
// src (stride ldb) it copies panels runs of nr values, run q of row p going
// to dst[(q*kc+p)*nr:]. packBT, if set, packs one whole panel of a
// transposed B, dst[p*nr+x] = src[x*ldb+p], for kc a multiple of 8.
//
// half, if set, is fn for an mr x nr/2 tile (the first nr/2 columns of the
// B panel), used for the last panel when at most nr/2 columns are left.
type sgemmKernel struct {
	name    string
	mr, nr  int
	strided bool
	fn      func(k int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32)
	half    func(k int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32)
	// fnEpi, if set, is fn for a whole tile with alpha 1 followed by an
	// epilogue: bias[r] added to tile row r (when bias is not nil), then
	// a Relu (when relu is set).
	fnEpi func(k int, a []float32, rsa, csa int, b, c []float32, ldc int, beta float32, bias []float32, relu bool)
	// fnN, if set, is fn on tiles whole tiles down C with one B panel:
	// tile i reads A from a[i*aStep:] and writes rows 6i.. of c.
	fnN    func(k int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32, tiles, aStep int)
	packB  func(kc, panels int, src []float32, ldb int, dst []float32)
	packBT func(kc int, src []float32, ldb int, dst []float32)
	// dot returns the dot product of x and y[:len(x)]; axpy adds alpha*x
	// to y[:len(x)]. They serve products with one row or column.
	dot  func(x, y []float32) float32
	axpy func(alpha float32, x, y []float32)
}

// Cache blocking. kc*nr*4 bytes (one B panel) should sit in L1 and
// mc*kc*4 bytes (the packed A block) in L2; nc bounds the packed B block.
const (
	sgemmKC = 256
	sgemmMC = 144
	sgemmNC = 3072
)

// sgemmParallelMin is the smallest m*n*k worth splitting over goroutines.
const sgemmParallelMin = 1 << 20

// sgemmVecWork weighs a matrix-vector product's m*n*k against
// sgemmParallelMin: it reads each element of the matrix once, from
// memory, and splitting the reads over the cores pays from a few hundred
// KiB (a classifier's 512x1000 weights at batch 1: 0.29 ms on one core,
// 0.23 on two).
const sgemmVecWork = 16

// sgemmBatchTiles lets sgemmBlockFrom hand whole runs of tiles to
// sgemmKernel.fnN (a switch for benchmarks).
var sgemmBatchTiles = true

var (
	sgemmGo4x4 = &sgemmKernel{name: "go4x4", mr: 4, nr: 4, fn: sgemmKernel4x4, packB: sgemmPackBRuns, dot: sgemmDotGo, axpy: sgemmAxpyGo}
	// sgemmKern is the micro-kernel in use: the pure-Go one unless an
	// architecture file selects an assembly kernel at init.
	sgemmKern = sgemmGo4x4
)

// sgemmWork holds one goroutine's packing buffers and edge scratch tile.
type sgemmWork struct {
	ap, bp []float32
	tile   []float32
}

var sgemmPool = sync.Pool{New: func() any { return new(sgemmWork) }}

func growF32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func sgemmWith(kern *sgemmKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	if k <= 0 || alpha == 0 {
		sgemmScale(m, n, beta, c, ldc)
		return
	}
	if m == 1 || n == 1 {
		sgemmVec(kern, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	// Split the dimension with more tiles into runs of whole tiles.
	mt := (m + kern.mr - 1) / kern.mr
	nt := (n + kern.nr - 1) / kern.nr
	if nt >= mt {
		sgemmSplit(n, kern.nr, m*n*k, func(w *sgemmWork, lo, hi int) {
			sgemmBlock(kern, w, transA, transB, 0, m, lo, hi, k, alpha, a, lda, b, ldb, beta, c, ldc)
		})
	} else {
		sgemmSplit(m, kern.mr, m*n*k, func(w *sgemmWork, lo, hi int) {
			sgemmBlock(kern, w, transA, transB, lo, hi, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		})
	}
}

// sgemmSplit calls fn over consecutive ranges [lo,hi) covering [0,total),
// each a multiple of unit long but the last, with a pooled sgemmWork. When
// the work (m*n*k) is large enough and GOMAXPROCS allows, the ranges are
// spread over goroutines: a few more ranges than goroutines, taken
// dynamically, keep the cores busy when one is slowed by other work on the
// machine.
func sgemmSplit(total, unit, work int, fn func(w *sgemmWork, lo, hi int)) {
	units := (total + unit - 1) / unit
	p := goruntime.GOMAXPROCS(0)
	if p <= 1 || work < sgemmParallelMin || units < 2 {
		w := sgemmPool.Get().(*sgemmWork)
		fn(w, 0, total)
		sgemmPool.Put(w)
		return
	}
	chunks := p
	if units >= 8*p && work >= 16*sgemmParallelMin {
		chunks = 2 * p
	}
	chunks = min(chunks, units)
	per := (units + chunks - 1) / chunks
	chunks = (units + per - 1) / per
	p = min(p, chunks)
	var next atomic.Int32
	run := func(int) {
		w := sgemmPool.Get().(*sgemmWork)
		for {
			i := int(next.Add(1)) - 1
			if i >= chunks {
				break
			}
			lo := i * per * unit
			fn(w, lo, min(lo+per*unit, total))
		}
		sgemmPool.Put(w)
	}
	fork(p, run)
}

// sgemmVec computes a product with a single row or column of C: a
// matrix-vector product, where packing would only add memory traffic. It is
// done with dot products of contiguous rows or with axpys along them,
// whichever the layout allows, split over goroutines along the output.
func sgemmVec(kern *sgemmKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	dot, axpy := kern.dot, kern.axpy
	if m == 1 {
		// c[j] = alpha * sum_p x[p]*op(B)(p,j) + beta*c[j], x = row 0 of op(A).
		x := a[:k:k]
		if transA { // op(A)(0,p) = a[p*lda]
			x = make([]float32, k)
			for p := range x {
				x[p] = a[p*lda]
			}
		}
		if transB { // op(B)(p,j) = b[j*ldb+p]: dot x with row j of b
			sgemmSplit(n, 16, sgemmVecWork*n*k, func(_ *sgemmWork, lo, hi int) {
				for j := lo; j < hi; j++ {
					v := alpha * dot(x, b[j*ldb:j*ldb+k])
					if beta != 0 {
						v += beta * c[j]
					}
					c[j] = v
				}
			})
			return
		}
		// op(B)(p,j) = b[p*ldb+j]: add alpha*x[p] times row p of b.
		sgemmSplit(n, 64, sgemmVecWork*n*k, func(_ *sgemmWork, lo, hi int) {
			sgemmScale(1, hi-lo, beta, c[lo:hi], 0)
			for p, xp := range x {
				axpy(alpha*xp, b[p*ldb+lo:p*ldb+hi], c[lo:hi])
			}
		})
		return
	}
	// n == 1: c[i*ldc] = alpha * sum_p op(A)(i,p)*y[p] + beta*c[i*ldc], y =
	// column 0 of op(B).
	y := b[:k:k]
	if !transB && ldb != 1 { // op(B)(p,0) = b[p*ldb]
		y = make([]float32, k)
		for p := range y {
			y[p] = b[p*ldb]
		}
	}
	if !transA { // op(A)(i,p) = a[i*lda+p]: dot row i of a with y
		sgemmSplit(m, 16, sgemmVecWork*m*k, func(_ *sgemmWork, lo, hi int) {
			for i := lo; i < hi; i++ {
				v := alpha * dot(a[i*lda:i*lda+k], y)
				if beta != 0 {
					v += beta * c[i*ldc]
				}
				c[i*ldc] = v
			}
		})
		return
	}
	// op(A)(i,p) = a[p*lda+i]: sum y[p] times row p of a, then store.
	sgemmSplit(m, 64, sgemmVecWork*m*k, func(w *sgemmWork, lo, hi int) {
		w.tile = growF32(w.tile, hi-lo)
		t := w.tile
		clear(t)
		for p, yp := range y {
			axpy(yp, a[p*lda+lo:p*lda+hi], t)
		}
		for i, v := range t {
			v *= alpha
			if beta != 0 {
				v += beta * c[(lo+i)*ldc]
			}
			c[(lo+i)*ldc] = v
		}
	})
}

// sgemmDotGo and sgemmAxpyGo are the portable dot and axpy of sgemmKernel.
func sgemmDotGo(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		xs, ys := x[i:i+4:i+4], y[i:i+4:i+4]
		s0 += xs[0] * ys[0]
		s1 += xs[1] * ys[1]
		s2 += xs[2] * ys[2]
		s3 += xs[3] * ys[3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func sgemmAxpyGo(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

// sgemmScale sets C = beta*C, writing zeros when beta is zero.
func sgemmScale(m, n int, beta float32, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
		} else if beta != 1 {
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

// balanced splits total into the fewest blocks of at most max, of near
// equal size rounded up to a multiple of unit.
func balanced(total, max, unit int) int {
	nb := (total + max - 1) / max
	s := (total + nb - 1) / nb
	return (s + unit - 1) / unit * unit
}

// sgemmBlock computes rows [i0,i1) and columns [j0,j1) of C with the
// blocked algorithm on one goroutine.
func sgemmBlock(kern *sgemmKernel, w *sgemmWork, transA, transB bool, i0, i1, j0, j1, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmBlockFrom(kern, w, sgemmA{trans: transA, a: a, lda: lda}, i0, i1, j0, j1, k, alpha, sgemmB{trans: transB, b: b, ldb: ldb}, beta, c, ldc, nil)
}

// sgemmA is the A operand of a blocked product: op(A) of a matrix a, or,
// when packed is set (for the kernel in use), all of A packed once.
type sgemmA struct {
	trans bool
	a     []float32
	lda   int
	// packed is A (m x k) packed by packAll: products of fixed weights
	// (Winograd's transformed filters, a convolution's kernels) pack them
	// on their first run. Each micro-kernel call then reads one
	// contiguous stream, where a row-major A read in place is mr streams a
	// row apart: at ResNet-18's last layers at batch 1, A is read once per
	// product and the product's speed is A's streaming speed.
	packed *sgemmPackedA
}

// sgemmPackedA is an m x k matrix packed for kern as sgemmBlockFrom reads
// it: by the blocks of columns it takes (kc wide, from column pc), each
// block, mp·kc floats from data[pc·mp:], in panels of mr rows (sgemmPackA's
// layout), rows past m zero (mp is m rounded up to panels). A block's
// panels follow one another, so a product streams A front to back.
type sgemmPackedA struct {
	kern  *sgemmKernel
	k, mp int
	data  []float32
}

// packAll packs the row-major m x k matrix a (rows lda apart) for kern.
func packAll(kern *sgemmKernel, a []float32, lda, m, k int) *sgemmPackedA {
	pa := newPackedA(kern, m, k)
	pa.packRows(a, lda, 0, m)
	return pa
}

// newPackedA returns an m x k sgemmPackedA for kern, all zeros.
func newPackedA(kern *sgemmKernel, m, k int) *sgemmPackedA {
	mp := (m + kern.mr - 1) / kern.mr * kern.mr
	return &sgemmPackedA{kern: kern, k: k, mp: mp, data: make([]float32, mp*k)}
}

// packRows packs rows [r0, r0+rows) of the matrix, r0 a multiple of mr,
// from a (rows lda apart, a's row 0 being row r0).
func (pa *sgemmPackedA) packRows(a []float32, lda, r0, rows int) {
	kc := balanced(pa.k, sgemmKC, 1)
	for pc := 0; pc < pa.k; pc += kc {
		kcb := min(kc, pa.k-pc)
		sgemmPackA(pa.data[pc*pa.mp+r0*kcb:], false, a, lda, 0, rows, pc, kcb, pa.kern.mr)
	}
}

// packedBytes is what packAll keeps for an m x k matrix.
func packedBytes(m, k int) int64 {
	return 4 * int64((m+sgemmKern.mr-1)/sgemmKern.mr*sgemmKern.mr) * int64(k)
}

// sgemmB is the B operand of a blocked product: op(B) of a matrix b, or,
// when conv is set, a convolution's im2col matrix, packed straight from
// its input (see convPanels).
type sgemmB struct {
	trans bool
	b     []float32
	ldb   int
	conv  *convPanels
	// packed, when set, is all of B packed already, by blocks of the
	// shared dimension as sgemmBlockFrom takes them, all columns in one
	// block: goroutines that split the rows of C share it.
	packed []float32
}

// panels returns rows [p0,p0+kc) and columns [j0,j0+nc) of B as panels of
// nr columns (see sgemmPackB), packed into dst or, for a packed B, in
// place.
func (s *sgemmB) panels(kern *sgemmKernel, dst []float32, p0, kc, j0, nc int) []float32 {
	if s.packed != nil {
		w := (nc + kern.nr - 1) / kern.nr * kern.nr
		return s.packed[p0*w : (p0+kc)*w]
	}
	if s.conv != nil {
		s.conv.pack(kern.nr, dst, p0, kc, j0, nc)
		return dst
	}
	sgemmPackB(kern, dst, s.trans, s.b, s.ldb, p0, kc, j0, nc)
	return dst
}

// sgemmEpilogue is applied to each tile of C once its last block of the
// shared dimension is in: row i gets bias[i] added (when bias is set),
// then a Relu (when relu is). A convolution's bias and fused Relu, done
// while the tile is in cache, so the output is not read again.
//
// A bias with mr zeros past its last row lets the micro-kernel's epilogue
// do the edge tiles too (in a scratch tile); without them, or without a
// bias, Go's loop does them.
type sgemmEpilogue struct {
	bias []float32
	relu bool
}

// apply applies e to the rows x cols tile at c whose first row is row i0.
func (e *sgemmEpilogue) apply(c []float32, ldc, i0, rows, cols int) {
	for i := 0; i < rows; i++ {
		row := c[i*ldc : i*ldc+cols]
		if e.bias != nil {
			b := e.bias[i0+i]
			for j := range row {
				row[j] += b
			}
		}
		if e.relu {
			for j, v := range row {
				row[j] = max(v, 0)
			}
		}
	}
}

// sgemmBlockFrom is sgemmBlock for any B operand, with an optional
// epilogue (alpha must then be 1).
func sgemmBlockFrom(kern *sgemmKernel, w *sgemmWork, opA sgemmA, i0, i1, j0, j1, k int, alpha float32, src sgemmB, beta float32, c []float32, ldc int, epi *sgemmEpilogue) {
	mr, nr := kern.mr, kern.nr
	transA, a, lda := opA.trans, opA.a, opA.lda
	pa := opA.packed
	if pa != nil && (pa.kern != kern || pa.k != k || i0%mr != 0) {
		pa = nil
	}
	m, n := i1-i0, j1-j0
	kc := balanced(k, sgemmKC, 1)
	mc := balanced(m, sgemmMC, mr)
	nc := balanced(n, sgemmNC, nr)
	switch {
	case src.packed != nil:
		nc = n
	case src.conv != nil:
		nc = balanced(n, convNC, nr)
	}
	// A row-major A is read in place by a strided kernel; only a last
	// panel of fewer than mr rows is packed (zero-padded).
	direct := kern.strided && !transA || pa != nil
	w.ap = growF32(w.ap, mc*kc)
	if src.packed == nil {
		w.bp = growF32(w.bp, nc*kc)
	}
	w.tile = growF32(w.tile, mr*nr)
	ap, tile := w.ap, w.tile
	for jc := j0; jc < j1; jc += nc {
		ncb := min(nc, j1-jc)
		for pc := 0; pc < k; pc += kc {
			kcb := min(kc, k-pc)
			bet := beta
			if pc > 0 {
				bet = 1
			}
			last := epi != nil && pc+kcb == k
			bp := src.panels(kern, w.bp, pc, kcb, jc, ncb)
			for ic := i0; ic < i1; ic += mc {
				mcb := min(mc, i1-ic)
				full := mcb / mr * mr // rows in whole panels
				switch {
				case pa != nil:
					full = mcb // a last panel is zero-padded already
				case !direct:
					sgemmPackA(ap, transA, a, lda, ic, mcb, pc, kcb, mr)
				case full < mcb:
					sgemmPackA(ap[full*kcb:], transA, a, lda, ic+full, mcb-full, pc, kcb, mr)
				}
				for jr := 0; jr < ncb; jr += nr {
					nrb := min(nr, ncb-jr)
					bpan := bp[jr*kcb : (jr+nr)*kcb]
					for ir := 0; ir < mcb; ir += mr {
						mrb := min(mr, mcb-ir)
						var apan []float32
						rsa, csa, aStep := 1, mr, mr*kcb
						if pa != nil {
							apan = pa.data[pc*pa.mp+(ic+ir)*kcb:]
						} else if direct && ir < full {
							if transA {
								apan = a[pc*lda+ic+ir:]
								rsa, csa, aStep = 1, lda, mr
							} else {
								apan = a[(ic+ir)*lda+pc:]
								rsa, csa, aStep = lda, 1, mr*lda
							}
						} else {
							apan = ap[ir*kcb : (ir+mr)*kcb]
						}
						off := (ic+ir)*ldc + jc + jr
						// Whole tiles in a row, with no epilogue: one call.
						if tiles := (full - ir) / mr; tiles > 1 && nrb == nr && kern.fnN != nil && sgemmBatchTiles && !(last && kern.fnEpi != nil) {
							if !direct {
								apan = ap[ir*kcb:]
							}
							kern.fnN(kcb, apan, rsa, csa, bpan, c[off:], ldc, alpha, bet, tiles, aStep)
							ir += (tiles - 1) * mr
							continue
						}
						fn, width := kern.fn, nr
						if nrb <= nr/2 && kern.half != nil {
							fn, width = kern.half, nr/2
						}
						if mrb == mr && nrb == nr && last && kern.fnEpi != nil {
							var bias []float32
							if epi.bias != nil {
								bias = epi.bias[ic+ir:]
							}
							kern.fnEpi(kcb, apan, rsa, csa, bpan, c[off:], ldc, bet, bias, epi.relu)
							continue
						}
						if last && kern.fnEpi != nil && width == nr && (epi.bias == nil || len(epi.bias) >= ic+ir+mr) {
							// An edge tile through the kernel's epilogue, in
							// the scratch tile: C's part copied in for beta.
							// (Not for the half kernel's tiles: it sums in
							// another order.)
							if bet != 0 {
								for i := 0; i < mrb; i++ {
									copy(tile[i*nr:i*nr+nrb], c[off+i*ldc:off+i*ldc+nrb])
								}
							}
							var bias []float32
							if epi.bias != nil {
								bias = epi.bias[ic+ir:]
							}
							kern.fnEpi(kcb, apan, rsa, csa, bpan, tile, nr, bet, bias, epi.relu)
							for i := 0; i < mrb; i++ {
								copy(c[off+i*ldc:off+i*ldc+nrb], tile[i*nr:i*nr+nrb])
							}
							continue
						}
						if mrb == mr && nrb == width {
							fn(kcb, apan, rsa, csa, bpan, c[off:], ldc, alpha, bet)
						} else {
							fn(kcb, apan, rsa, csa, bpan, tile, nr, alpha, 0)
							for i := 0; i < mrb; i++ {
								row := c[off+i*ldc : off+i*ldc+nrb]
								t := tile[i*nr : i*nr+nrb]
								if bet == 0 {
									copy(row, t)
								} else {
									for j := range row {
										row[j] = t[j] + bet*row[j]
									}
								}
							}
						}
						if last {
							epi.apply(c[off:], ldc, ic+ir, mrb, nrb)
						}
					}
				}
			}
		}
	}
}

// sgemmPackA packs rows [i0,i0+mc) and columns [p0,p0+kc) of op(A) into
// panels of mr rows: panel q holds, for each p, rows q*mr..q*mr+mr-1 of
// column p, zero-padded past mc.
func sgemmPackA(dst []float32, trans bool, a []float32, lda, i0, mc, p0, kc, mr int) {
	q0 := 0
	if trans && mr == 6 && mc >= 6 {
		// op(A)[i][p] = a[p*lda+i]: sweep the rows of a, dealing runs of six
		// to the panels.
		whole := mc / 6
		for p := 0; p < kc; p++ {
			row := a[(p0+p)*lda+i0 : (p0+p)*lda+i0+whole*6]
			for q := 0; q < whole; q++ {
				s := row[q*6 : q*6+6 : q*6+6]
				dp := dst[q*6*kc+p*6 : q*6*kc+p*6+6 : q*6*kc+p*6+6]
				dp[0], dp[1], dp[2] = s[0], s[1], s[2]
				dp[3], dp[4], dp[5] = s[3], s[4], s[5]
			}
		}
		q0 = whole * 6
	}
	for q := q0; q < mc; q += mr {
		rows := min(mr, mc-q)
		d := dst[q*kc : q*kc+mr*kc]
		i := i0 + q
		switch {
		case trans: // op(A)[i][p] = a[p*lda+i]: each column is contiguous
			for p := 0; p < kc; p++ {
				src := a[(p0+p)*lda+i : (p0+p)*lda+i+rows]
				dp := d[p*mr : p*mr+mr]
				copy(dp, src)
				clear(dp[rows:])
			}
		case rows == 6 && mr == 6:
			r0 := a[i*lda+p0 : i*lda+p0+kc]
			r1 := a[(i+1)*lda+p0 : (i+1)*lda+p0+kc]
			r2 := a[(i+2)*lda+p0 : (i+2)*lda+p0+kc]
			r3 := a[(i+3)*lda+p0 : (i+3)*lda+p0+kc]
			r4 := a[(i+4)*lda+p0 : (i+4)*lda+p0+kc]
			r5 := a[(i+5)*lda+p0 : (i+5)*lda+p0+kc]
			for p := range r0 {
				dp := d[p*6 : p*6+6]
				dp[0], dp[1], dp[2] = r0[p], r1[p], r2[p]
				dp[3], dp[4], dp[5] = r3[p], r4[p], r5[p]
			}
		case rows == 4 && mr == 4:
			r0 := a[i*lda+p0 : i*lda+p0+kc]
			r1 := a[(i+1)*lda+p0 : (i+1)*lda+p0+kc]
			r2 := a[(i+2)*lda+p0 : (i+2)*lda+p0+kc]
			r3 := a[(i+3)*lda+p0 : (i+3)*lda+p0+kc]
			for p := range r0 {
				dp := d[p*4 : p*4+4]
				dp[0], dp[1], dp[2], dp[3] = r0[p], r1[p], r2[p], r3[p]
			}
		default:
			if rows < mr {
				clear(d)
			}
			for r := 0; r < rows; r++ {
				src := a[(i+r)*lda+p0 : (i+r)*lda+p0+kc]
				for p, v := range src {
					d[p*mr+r] = v
				}
			}
		}
	}
}

// sgemmPackB packs rows [p0,p0+kc) and columns [j0,j0+nc) of op(B) into
// panels of nr columns: panel q holds, for each p, columns q*nr..q*nr+nr-1
// of row p, zero-padded past nc.
func sgemmPackB(kern *sgemmKernel, dst []float32, trans bool, b []float32, ldb, p0, kc, j0, nc int) {
	nr := kern.nr
	whole := nc / nr
	q0 := 0
	if !trans && whole > 0 {
		// op(B)[p][j] = b[p*ldb+j]: rows are contiguous.
		src := b[p0*ldb+j0 : (p0+kc-1)*ldb+j0+whole*nr]
		kern.packB(kc, whole, src, ldb, dst[:whole*nr*kc])
		q0 = whole * nr
	}
	for q := q0; q < nc; q += nr {
		cols := min(nr, nc-q)
		d := dst[q*kc : q*kc+nr*kc]
		j := j0 + q
		if !trans {
			for p := 0; p < kc; p++ {
				s := (p0+p)*ldb + j
				dp := d[p*nr : p*nr+nr]
				copy(dp, b[s:s+cols])
				clear(dp[cols:])
			}
			continue
		}
		// op(B)[p][j] = b[j*ldb+p]: each column is contiguous.
		p8 := 0
		if cols == nr && kern.packBT != nil {
			p8 = kc &^ 7
			if p8 > 0 {
				kern.packBT(p8, b[j*ldb+p0:(j+nr-1)*ldb+p0+p8], ldb, d[:p8*nr])
			}
		}
		if cols < nr {
			clear(d)
		}
		for col := 0; col < cols; col++ {
			src := b[(j+col)*ldb+p0+p8 : (j+col)*ldb+p0+kc]
			for p, v := range src {
				d[(p8+p)*nr+col] = v
			}
		}
	}
}

// sgemmPackBRuns is the portable packB of sgemmKernel.
func sgemmPackBRuns(kc, panels int, src []float32, ldb int, dst []float32) {
	nr := len(dst) / (kc * panels)
	for p := 0; p < kc; p++ {
		row := src[p*ldb : p*ldb+panels*nr]
		for q := 0; q < panels; q++ {
			d := dst[(q*kc+p)*nr : (q*kc+p)*nr+nr]
			s := row[q*nr : q*nr+nr]
			for x := range d {
				d[x] = s[x]
			}
		}
	}
}

// sgemmKernel4x4 is the portable micro-kernel for a 4x4 tile. It runs as
// two passes over the panels, each keeping a 4x2 half of the tile in eight
// scalar accumulators: sixteen would not fit the fifteen float registers Go
// allocates on amd64, and spilling them costs more than reloading A (from
// L1) for the second half.
func sgemmKernel4x4(k int, a []float32, _, _ int, b, c []float32, ldc int, alpha, beta float32) {
	a = a[:4*k]
	b = b[:4*k]
	c = c[:3*ldc+4]
	for h := 0; h < 4; h += 2 {
		var c00, c01, c10, c11, c20, c21, c30, c31 float32
		p := 0
		for ; p+1 < k; p += 2 {
			ap := a[4*p : 4*p+8 : 4*p+8]
			bp := b[4*p+h : 4*p+h+6 : 4*p+h+6]
			b0, b1 := bp[0], bp[1]
			c00 += ap[0] * b0
			c01 += ap[0] * b1
			c10 += ap[1] * b0
			c11 += ap[1] * b1
			c20 += ap[2] * b0
			c21 += ap[2] * b1
			c30 += ap[3] * b0
			c31 += ap[3] * b1
			b0, b1 = bp[4], bp[5]
			c00 += ap[4] * b0
			c01 += ap[4] * b1
			c10 += ap[5] * b0
			c11 += ap[5] * b1
			c20 += ap[6] * b0
			c21 += ap[6] * b1
			c30 += ap[7] * b0
			c31 += ap[7] * b1
		}
		if p < k {
			ap := a[4*p : 4*p+4 : 4*p+4]
			bp := b[4*p+h : 4*p+h+2 : 4*p+h+2]
			b0, b1 := bp[0], bp[1]
			c00 += ap[0] * b0
			c01 += ap[0] * b1
			c10 += ap[1] * b0
			c11 += ap[1] * b1
			c20 += ap[2] * b0
			c21 += ap[2] * b1
			c30 += ap[3] * b0
			c31 += ap[3] * b1
		}
		sgemmStore2(c[h:h+2], c00, c01, alpha, beta)
		sgemmStore2(c[ldc+h:ldc+h+2], c10, c11, alpha, beta)
		sgemmStore2(c[2*ldc+h:2*ldc+h+2], c20, c21, alpha, beta)
		sgemmStore2(c[3*ldc+h:3*ldc+h+2], c30, c31, alpha, beta)
	}
}

func sgemmStore2(c []float32, v0, v1, alpha, beta float32) {
	c = c[:2]
	if beta == 0 {
		c[0], c[1] = alpha*v0, alpha*v1
		return
	}
	c[0] = alpha*v0 + beta*c[0]
	c[1] = alpha*v1 + beta*c[1]
}
