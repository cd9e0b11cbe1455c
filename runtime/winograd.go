package runtime

import (
	goruntime "runtime"
	"sync"
)

// Winograd's F(2x2, 3x3) convolution (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015): each 2x2 block of output of a 3x3,
// stride-1 convolution is computed from the 4x4 block of input under it
// with 16 multiplications per (input, output) channel pair instead of 36.
// The input block d, the kernel g and the 4x4 product block m are
// transformed as
//
//	V = Bᵀ d B,  U = G g Gᵀ,  Y = Aᵀ m A,  m[ξ] = Σ_c U[ξ][k][c] V[ξ][c]
//
// so the work is 16 GEMMs (one per position ξ of the 4x4 block) of the
// transformed kernels, K x C, by the transformed inputs, C x tiles, with
// the transforms around them (interpolation points 0, ±1 and ∞: Bᵀ and Aᵀ
// only add and subtract, G halves).
//
// It changes float32 rounding, not the function: 3.5e-7 of the output's
// scale per layer against 1.1e-7 for a direct sum (random data, 64
// channels). F(4x4, 3x3), which needs 9 multiplications per 4 where this
// needs 16, rounds 40 times worse than a direct sum (4.3e-6: its
// transforms scale by up to 8 and cancel); it moved small GoogLeNet's
// logits by 1.1e-4 of 13, past the families' run tolerance, and was
// dropped. Where the program's weights are fixed (Options.FixedWeights), U
// is computed once, on the first run, and kept; else on every call, into
// the workspace, and only for convolutions of enough tiles to pay for it
// (winoMinTilesPerCall).

const (
	winoM     = 2 // output block
	winoA     = 4 // input block: winoM + 3 - 1
	winoA2    = winoA * winoA
	winoTiles = 512 // tiles per pass: the GEMMs' N, bounded to bound the scratch
	// winoMinTiles is the fewest tiles per pass worth it: below, the GEMMs
	// are too narrow to pay for reading U, 16/9 times the weights.
	winoMinTiles = 16
	// winoMinTilesPerCall is the fewest tiles worth transforming the
	// weights on every call for: a transform costs about what 40 tiles
	// save.
	winoMinTilesPerCall = 64
)

// winograd is the F(2x2, 3x3) plan of one convolution: n images of c
// channels, h x w, padded by ph, pw at the top and left, to k channels of
// oh x ow.
type winograd struct {
	n, c, k, h, w, oh, ow, ph, pw int
	th, tw                        int // tiles per image along h and w
	chunk                         int // images per pass
	// The input is read from a zero-padded copy of one channel of a
	// pass's images, hp x wp each; offsets[t] is where tile t's 6x6 block
	// starts in it.
	hp, wp  int
	offsets []int32
	// fixed marks weights that never change: U is computed once and kept
	// packed for the GEMMs' kernel (see sgemmA), its 16 matrices in
	// packedU. Else each call computes it into filters (the workspace's).
	fixed   bool
	fold    []float64 // scales w's kernels by output channel (see conv.fold)
	packedU []*sgemmPackedA
	uMu     sync.Mutex
	filters *scratch[float32]
	// turned marks the plan of an input gradient (see dxWindow): its
	// kernel g[k][c] is the weight w[c][k] turned 180 degrees.
	turned bool
	// v and m hold a pass's transformed tiles and their products (the
	// program's workspace's).
	v, m *scratch[float32]
}

// winoInputGroups and winoOutputGroups, when set (winograd_amd64.go),
// transform 8 tiles at a time: V of the blocks of src at offsets idx (rows
// wp apart) into dst[ξ*ds + tile], and Y of the products m[ξ*ms + tile]
// into stage[(r*2+s)*ss + tile], for groups of 8 tiles. The
// scalar winoInputTransform and winoOutputTransform do the rest.
var (
	winoInputGroups  func(src []float32, wp int, idx []int32, groups int, dst []float32, ds int)
	winoOutputGroups func(m []float32, ms, groups int, stage []float32, ss int)
	// winoGradTileGroups transforms groups of 8 whole tiles along a row of
	// an output gradient for gradTiles: see winoGradTilesAVX.
	winoGradTileGroups func(src []float32, ow, groups int, dst []float32, stride int)
	// winoFilterGroups transforms groups of 8 kernels for winogradFilter:
	// those at w[(8g+j)*step], element ξ of U to u[rowOf[ξ] + 8g + j].
	winoFilterGroups func(w []float32, step, groups int, u []float32, rowOf *[winoA2]int)
	// winoGradOutputGroups adds Gᵀ m G for groups of 8 (k, c) pairs for
	// gradOutputs: the sums at acc[ξ*stride + 8g + j] into dw[(8g+j)*9:].
	winoGradOutputGroups func(acc []float32, stride, groups int, dw []float32)
)

// newWinograd returns the plan for a convolution, or nil when Winograd's
// algorithm does not apply (not a 2-d 3x3 stride-1 undilated ungrouped
// window) or does not pay (few channels: the transforms dominate; few
// tiles: see winoMinTiles and winoMinTilesPerCall). fixed says the weights
// never change; turned that the plan computes an input gradient.
func newWinograd(n, c, k, group int, win *window, ws *workspace[float32], fixed, turned bool) *winograd {
	if len(win.in) != 2 || group != 1 || c < 16 || k < 16 {
		return nil
	}
	for d := 0; d < 2; d++ {
		if win.kernel[d] != 3 || win.strides[d] != 1 || win.dilations[d] != 1 || win.out[d] < 2 {
			return nil
		}
	}
	p := planWinograd(n, c, k, win)
	if p.chunk*p.th*p.tw < winoMinTiles || !fixed && n*p.th*p.tw < winoMinTilesPerCall {
		return nil
	}
	p.v, p.m, p.filters = &ws.tiles, &ws.products, &ws.filters
	p.fixed, p.turned = fixed, turned
	return p
}

// planWinograd lays out the plan of a 2-d 3x3 stride-1 convolution.
func planWinograd(n, c, k int, win *window) *winograd {
	p := &winograd{n: n, c: c, k: k, h: win.in[0], w: win.in[1], oh: win.out[0], ow: win.out[1], ph: win.padsBegin[0], pw: win.padsBegin[1],
		v: new(scratch[float32]), m: new(scratch[float32]), filters: new(scratch[float32])}
	p.th, p.tw = (p.oh+winoM-1)/winoM, (p.ow+winoM-1)/winoM
	p.chunk = min(n, max(1, (winoTiles+p.th*p.tw-1)/(p.th*p.tw)))
	p.hp, p.wp = winoM*p.th+2, winoM*p.tw+2
	for img := 0; img < p.chunk; img++ {
		for ty := 0; ty < p.th; ty++ {
			for tx := 0; tx < p.tw; tx++ {
				p.offsets = append(p.offsets, int32(img*p.hp*p.wp+ty*winoM*p.wp+tx*winoM))
			}
		}
	}
	return p
}

// scratchBytes counts what the plan keeps: U, for fixed weights.
func (p *winograd) scratchBytes() int64 {
	if !p.fixed {
		return 0
	}
	return winoA2 * packedBytes(p.k, p.c)
}

// workspaceBytes counts what it uses while it runs: U for weights that
// change, one pass's transformed inputs and products, and per core a
// padded channel and a stage (allocated by each run: they are small).
func (p *winograd) workspaceBytes(need func(buf any, bytes int64)) {
	if !p.fixed {
		need(p.filters, 4*winoA2*int64(filterStride(p.k, p.c)))
	}
	t := int64(p.chunk * p.th * p.tw)
	need(p.v, 4*winoA2*int64(p.c)*t)
	need(p.m, 4*winoA2*int64(winoGradStride(p.k, int(t)))) // weightGrad's tiles; the products take less
	need(&winoPerCore, 4*(int64(p.chunk*p.hp*p.wp)+winoM*winoM*t)*int64(goruntime.GOMAXPROCS(0)))
}

// winoPerCore names the per-core buffers in a workspace estimate.
var winoPerCore byte

// filterStride is the distance between U's 16 matrices of k x c: a cache
// line more than their size, so that the 16 rows winogradFilter writes at
// once do not all fall in one cache set when k*c is a large power of two
// (they did: 4 times slower).
func filterStride(k, c int) int { return k*c + 16 }

// winogradFilter writes U = G g Gᵀ for every (k, c) into u, laid out
// [16][k][c] (the matrices filterStride apart), from the kernels g[k][c] =
// w[k][c], or when turned w[c][k] turned 180 degrees (w is then
// [c][k][3][3]). Turning g is P U Pᵀ with P swapping rows 0 and 3 (G's
// rows reversed are G's rows 3, 1, 2, 0), so a turned plan transforms w
// as it lies and writes element (i, j) of U to slot (p(i), p(j)).
func winogradFilter(u, w []float32, k, c int, turned bool) {
	winogradFilterRows(u, w, k, c, turned, 0, k)
}

// winogradFilterRows is winogradFilter for output channels [k0, k1) only,
// written to u as winogradFilter would write a weight of k1-k0 of them.
func winogradFilterRows(u, w []float32, k, c int, turned bool, k0, k1 int) {
	kc := filterStride(k1-k0, c)
	var rowOf [winoA2]int // where element ξ of U goes, in floats
	for xi := range rowOf {
		i, j := xi/winoA, xi%winoA
		if turned {
			i, j = winoTurn(i), winoTurn(j)
		}
		rowOf[xi] = (i*winoA + j) * kc
	}
	// The kernel for (kk, cc) is at base + cc*step.
	step := 9
	if turned {
		step = 9 * k
	}
	parallelFor(k1-k0, (k1-k0)*c*winoA2, func(lo, hi int) {
		for kk := k0 + lo; kk < k0+hi; kk++ {
			row := (kk - k0) * c // of U's matrices
			base := kk * c * 9
			if turned {
				base = kk * 9
			}
			cc := 0
			if winoFilterGroups != nil {
				groups := c / 8
				winoFilterGroups(w[base:], step, groups, u[row:], &rowOf)
				cc = 8 * groups
			}
			var rows [winoA2][]float32 // rows[ξ][cc]: element ξ for (kk, cc)
			for xi, r := range rowOf {
				rows[xi] = u[r+row : r+row+c]
			}
			for ; cc < c; cc++ {
				// In float64, rounded once (the gradients of a whole
				// network to the input are sensitive to it), in
				// winoFilterAVX's order of operations, so that both give
				// the same bits; straight-line code (arrays and loops here
				// took twice as long). G's rows are [1 0 0] [½ ½ ½]
				// [½ -½ ½] [0 0 1]; G g's rows 0 and 3 are g's, rows 1
				// and 2 (g0j + g2j ± g1j)/2.
				t := (*[9]float32)(w[base+cc*step:])
				g0, g1, g2 := float64(t[0]), float64(t[1]), float64(t[2])
				g3, g4, g5 := float64(t[3]), float64(t[4]), float64(t[5])
				g6, g7, g8 := float64(t[6]), float64(t[7]), float64(t[8])
				s0, s1, s2 := g0+g6, g1+g7, g2+g8
				a10, a11, a12 := (s0+g3)*0.5, (s1+g4)*0.5, (s2+g5)*0.5
				a20, a21, a22 := (s0-g3)*0.5, (s1-g4)*0.5, (s2-g5)*0.5
				// Row i of G g, b, times Gᵀ: b0, (b0 + b2 ± b1)/2, b2.
				put := func(i int, b0, b1, b2 float64) {
					s := b0 + b2
					rows[i*winoA][cc] = float32(b0)
					rows[i*winoA+1][cc] = float32((s + b1) * 0.5)
					rows[i*winoA+2][cc] = float32((s - b1) * 0.5)
					rows[i*winoA+3][cc] = float32(b2)
				}
				put(0, g0, g1, g2)
				put(1, a10, a11, a12)
				put(2, a20, a21, a22)
				put(3, g6, g7, g8)
			}
		}
	})
}

// winoTurn is P's permutation: 0 and 3 swap places.
func winoTurn(i int) int {
	if i == 0 || i == winoA-1 {
		return winoA - 1 - i
	}
	return i
}

// forward computes out [n, k, oh, ow] from x [n, c, h, w], the weight w
// ([k, c, 3, 3], or [c, k, 3, 3] for a turned plan), the optional bias and
// the optional residual res (of out's shape, added after the bias),
// followed by a Relu when relu is set.
func (p *winograd) forward(x, w, bias, res, out []float32, relu bool) {
	var u []float32
	var packed []*sgemmPackedA
	if p.fixed {
		packed = p.fixedFilters(w)
	} else {
		u = p.filters.take(winoA2 * filterStride(p.k, p.c))
		defer p.filters.give(u)
		winogradFilter(u, w, p.k, p.c, p.turned)
	}
	tiles := p.th * p.tw
	for i0 := 0; i0 < p.n; i0 += p.chunk {
		i1 := min(i0+p.chunk, p.n)
		t := (i1 - i0) * tiles
		v := p.v.take(winoA2 * p.c * t)
		m := p.m.take(winoA2 * p.k * t)
		parallelFor(p.c, p.c*t*winoA2, func(lo, hi int) { p.inputs(x, v, i0, i1, lo, hi) })
		// 16 independent products, spread over the cores whole.
		parallelFor(winoA2, winoA2*p.k*p.c*t, func(lo, hi int) {
			wk := sgemmPool.Get().(*sgemmWork)
			for xi := lo; xi < hi; xi++ {
				opA := sgemmA{lda: p.c}
				if packed != nil {
					opA.packed = packed[xi]
				} else {
					opA.a = u[xi*filterStride(p.k, p.c):]
				}
				sgemmBlockFrom(sgemmKern, wk, opA, 0, p.k, 0, t, p.c, 1, sgemmB{b: v[xi*p.c*t:], ldb: t}, 0, m[xi*p.k*t:], t, nil)
			}
			sgemmPool.Put(wk)
		})
		parallelFor(p.k, p.k*t*winoA2, func(lo, hi int) { p.outputs(m, bias, res, out, relu, i0, i1, lo, hi) })
		p.v.give(v)
		p.m.give(m)
	}
}

// fixedFilters returns U for fixed weights w, computed and packed on first
// use (again if the GEMMs' kernel has changed since: tests switch it).
func (p *winograd) fixedFilters(w []float32) []*sgemmPackedA {
	p.uMu.Lock()
	defer p.uMu.Unlock()
	if p.packedU == nil || p.packedU[0].kern != sgemmKern {
		kern := sgemmKern
		if p.fold != nil {
			w = scaleRows(w, p.fold, p.c*9)
		}
		p.packedU = make([]*sgemmPackedA, winoA2)
		for xi := range p.packedU {
			p.packedU[xi] = newPackedA(kern, p.k, p.c)
		}
		// By blocks of output channels (whole panels), so that U is
		// never held both whole and packed.
		block := min(p.k, 16*kern.mr)
		u := make([]float32, winoA2*filterStride(block, p.c))
		for k0 := 0; k0 < p.k; k0 += block {
			k1 := min(k0+block, p.k)
			kc := filterStride(k1-k0, p.c)
			winogradFilterRows(u, w, p.k, p.c, p.turned, k0, k1)
			parallelFor(winoA2, winoA2*(k1-k0)*p.c, func(lo, hi int) {
				for xi := lo; xi < hi; xi++ {
					p.packedU[xi].packRows(u[xi*kc:], p.c, k0, k1-k0)
				}
			})
		}
	}
	return p.packedU
}

// inputs writes V = Bᵀ d B of channels [c0, c1) of images [i0, i1) into v,
// laid out [16][c][tile].
func (p *winograd) inputs(x, v []float32, i0, i1, c0, c1 int) {
	t := (i1 - i0) * p.th * p.tw
	pad := make([]float32, (i1-i0)*p.hp*p.wp) // borders stay zero
	groups := 0
	if winoInputGroups != nil {
		groups = t / 8
	}
	var d [winoA2]float32
	for c := c0; c < c1; c++ {
		for img := i0; img < i1; img++ {
			plane := x[(img*p.c+c)*p.h*p.w : (img*p.c+c+1)*p.h*p.w]
			dst := pad[(img-i0)*p.hp*p.wp:]
			for r := 0; r < p.h && p.ph+r < p.hp; r++ {
				n := min(p.w, p.wp-p.pw)
				copy(dst[(p.ph+r)*p.wp+p.pw:(p.ph+r)*p.wp+p.pw+n], plane[r*p.w:r*p.w+n])
			}
		}
		if groups > 0 {
			winoInputGroups(pad, p.wp, p.offsets, groups, v[c*t:], p.c*t)
		}
		for tile := 8 * groups; tile < t; tile++ {
			o := int(p.offsets[tile])
			for r := 0; r < winoA; r++ {
				row := pad[o+r*p.wp : o+r*p.wp+winoA]
				copy(d[r*winoA:(r+1)*winoA], row)
			}
			winoInputTransform(&d)
			for xi := 0; xi < winoA2; xi++ {
				v[xi*p.c*t+c*t+tile] = d[xi]
			}
		}
	}
}

// winoInputTransform replaces d with Bᵀ d B; Bᵀ's rows are [1 0 -1 0]
// [0 1 1 0] [0 -1 1 0] [0 1 0 -1].
func winoInputTransform(d *[winoA2]float32) {
	var t [winoA2]float32
	for j := 0; j < winoA; j++ { // Bᵀ d, column j
		d0, d1, d2, d3 := d[j], d[winoA+j], d[2*winoA+j], d[3*winoA+j]
		t[j], t[winoA+j], t[2*winoA+j], t[3*winoA+j] = d0-d2, d1+d2, d2-d1, d1-d3
	}
	for i := 0; i < winoA; i++ { // (Bᵀ d) B, row i
		r := t[i*winoA : (i+1)*winoA]
		d0, d1, d2, d3 := r[0], r[1], r[2], r[3]
		o := d[i*winoA : (i+1)*winoA]
		o[0], o[1], o[2], o[3] = d0-d2, d1+d2, d2-d1, d1-d3
	}
}

// outputs writes Y = Aᵀ m A (plus the bias, then res) of output channels
// [k0, k1) of images [i0, i1) into out, from m laid out [16][k][tile].
func (p *winograd) outputs(m, bias, res, out []float32, relu bool, i0, i1, k0, k1 int) {
	tiles := p.th * p.tw
	t := (i1 - i0) * tiles
	stage := make([]float32, winoM*winoM*t) // y[r][s] of tile j at stage[(r*winoM+s)*t+j]
	groups := 0
	if winoOutputGroups != nil {
		groups = t / 8
	}
	var blk [winoA2]float32
	var y [winoM * winoM]float32
	for k := k0; k < k1; k++ {
		if groups > 0 {
			winoOutputGroups(m[k*t:], p.k*t, groups, stage, t)
		}
		for tile := 8 * groups; tile < t; tile++ {
			for xi := 0; xi < winoA2; xi++ {
				blk[xi] = m[xi*p.k*t+k*t+tile]
			}
			winoOutputTransform(&blk, &y)
			for e, val := range y {
				stage[e*t+tile] = val
			}
		}
		var b float32
		if bias != nil {
			b = bias[k]
		}
		// Row r of a tile row is row r of each of its tiles, side by side.
		whole := p.ow / winoM // tiles wholly inside a row
		for img := i0; img < i1; img++ {
			po := (img*p.k + k) * p.oh * p.ow
			plane := out[po : po+p.oh*p.ow]
			for ty := 0; ty < p.th; ty++ {
				first := (img-i0)*tiles + ty*p.tw
				for r := 0; r < winoM && ty*winoM+r < p.oh; r++ {
					row := plane[(ty*winoM+r)*p.ow : (ty*winoM+r+1)*p.ow]
					s0 := stage[(r*winoM)*t+first : (r*winoM)*t+first+p.tw]
					s1 := stage[(r*winoM+1)*t+first : (r*winoM+1)*t+first+p.tw]
					for tx := 0; tx < whole; tx++ {
						o := row[tx*winoM : tx*winoM+winoM]
						o[0], o[1] = s0[tx]+b, s1[tx]+b
					}
					for w := whole * winoM; w < p.ow; w++ { // a last, partial tile
						row[w] = stage[(r*winoM+w%winoM)*t+first+whole] + b
					}
					switch {
					case res != nil && relu:
						add := res[po+(ty*winoM+r)*p.ow:][:len(row)]
						for w, v := range row {
							row[w] = max(v+add[w], 0)
						}
					case res != nil:
						add := res[po+(ty*winoM+r)*p.ow:][:len(row)]
						for w, v := range row {
							row[w] = v + add[w]
						}
					case relu:
						for w, v := range row {
							row[w] = max(v, 0)
						}
					}
				}
			}
		}
	}
}

// winoOutputTransform writes Aᵀ m A into y; Aᵀ's rows are [1 1 1 0]
// [0 1 -1 -1].
func winoOutputTransform(m *[winoA2]float32, y *[winoM * winoM]float32) {
	var t [winoM * winoA]float32
	for j := 0; j < winoA; j++ { // Aᵀ m, column j
		m0, m1, m2, m3 := m[j], m[winoA+j], m[2*winoA+j], m[3*winoA+j]
		t[j], t[winoA+j] = m0+m1+m2, m1-m2-m3
	}
	for i := 0; i < winoM; i++ { // (Aᵀ m) A, row i
		r := t[i*winoA : (i+1)*winoA]
		y[i*winoM], y[i*winoM+1] = r[0]+r[1]+r[2], r[1]-r[2]-r[3]
	}
}

// The weight gradient of a 3x3 stride-1 convolution, dw[k][c] = Σ over
// images and output positions of gout[k][y][x] · x[c][y+i-p][x+j-p], is
// Winograd's F(3x3, 2x2) on the same 4x4 input tiles as the forward pass,
// with each 2x2 block of the output gradient as the "kernel". Transposing
// the forward algorithm's trilinear form Σ_ξ (G g)_ξ (Bᵀ d)_ξ (A y)_ξ
// gives it:
//
//	dw(tile) = Gᵀ [(Bᵀ d B) ⊙ (A gout Aᵀ)] G
//
// summed over tiles, which is 16 GEMMs, K x tiles by tiles x C, of the
// transformed output gradients by the transformed inputs, and one 4x4 to
// 3x3 transform per (k, c) at the end: 4 multiplications per weight and
// output position instead of 9.

// winoGradStride is the distance between the 16 matrices of transformed
// output gradients, k x t: a cache line more than their size (see
// filterStride).
func winoGradStride(k, t int) int { return k*t + 16 }

// weightGrad adds the weight gradient [k, c, 3, 3] of the convolution of
// x [n, c, h, w] whose output gradient is gout [n, k, oh, ow] into dw.
func (p *winograd) weightGrad(x, gout, dw []float32) {
	tiles := p.th * p.tw
	stride := filterStride(p.k, p.c)
	acc := p.filters.take(winoA2 * stride) // Σ over tiles, [16][k][c]
	defer p.filters.give(acc)
	for i0 := 0; i0 < p.n; i0 += p.chunk {
		i1 := min(i0+p.chunk, p.n)
		t := (i1 - i0) * tiles
		gs := winoGradStride(p.k, t)
		v := p.v.take(winoA2 * p.c * t)
		g := p.m.take(winoA2 * gs)
		parallelFor(p.c, p.c*t*winoA2, func(lo, hi int) { p.inputs(x, v, i0, i1, lo, hi) })
		parallelFor(p.k, p.k*t*winoA2, func(lo, hi int) { p.gradTiles(gout, g, gs, i0, i1, lo, hi) })
		beta := float32(1)
		if i0 == 0 {
			beta = 0
		}
		parallelFor(winoA2, winoA2*p.k*p.c*t, func(lo, hi int) {
			wk := sgemmPool.Get().(*sgemmWork)
			for xi := lo; xi < hi; xi++ {
				sgemmBlock(sgemmKern, wk, false, true, 0, p.k, 0, p.c, t, 1,
					g[xi*gs:], t, v[xi*p.c*t:], t, beta, acc[xi*stride:], p.c)
			}
			sgemmPool.Put(wk)
		})
		p.v.give(v)
		p.m.give(g)
	}
	p.gradOutputs(acc, dw)
}

// gradOutputs adds Gᵀ m G (3x3) for each (k, c) into dw, from the sums m
// in acc, laid out [16][k][c] with the 16 matrices filterStride apart.
func (p *winograd) gradOutputs(acc, dw []float32) {
	c, stride := p.c, filterStride(p.k, p.c)
	parallelFor(p.k, p.k*c*winoA2, func(lo, hi int) {
		var rows [winoA2][]float32 // rows[ξ][cc]: the sum for (kk, cc)
		for kk := lo; kk < hi; kk++ {
			for xi := range rows {
				rows[xi] = acc[xi*stride+kk*c : xi*stride+kk*c+c]
			}
			d := dw[kk*c*9 : (kk+1)*c*9]
			r0, r1, r2, r3 := rows[0][:c], rows[1][:c], rows[2][:c], rows[3][:c]
			r4, r5, r6, r7 := rows[4][:c], rows[5][:c], rows[6][:c], rows[7][:c]
			r8, r9, r10, r11 := rows[8][:c], rows[9][:c], rows[10][:c], rows[11][:c]
			r12, r13, r14, r15 := rows[12][:c], rows[13][:c], rows[14][:c], rows[15][:c]
			cc0 := 0
			if winoGradOutputGroups != nil {
				groups := c / 8
				winoGradOutputGroups(acc[kk*c:], stride, groups, d)
				cc0 = 8 * groups
			}
			for cc := cc0; cc < c; cc++ {
				// Gᵀ m G, straight-line: Gᵀ's rows are [1 ½ ½ 0]
				// [0 ½ -½ 0] [0 ½ ½ 1]; Gᵀ m's row i, column j is tij.
				s0, h0 := (r4[cc]+r8[cc])*0.5, (r4[cc]-r8[cc])*0.5
				s1, h1 := (r5[cc]+r9[cc])*0.5, (r5[cc]-r9[cc])*0.5
				s2, h2 := (r6[cc]+r10[cc])*0.5, (r6[cc]-r10[cc])*0.5
				s3, h3 := (r7[cc]+r11[cc])*0.5, (r7[cc]-r11[cc])*0.5
				t00, t01, t02, t03 := r0[cc]+s0, r1[cc]+s1, r2[cc]+s2, r3[cc]+s3
				t10, t11, t12, t13 := h0, h1, h2, h3
				t20, t21, t22, t23 := s0+r12[cc], s1+r13[cc], s2+r14[cc], s3+r15[cc]
				o := (*[9]float32)(d[cc*9:])
				s, h := (t01+t02)*0.5, (t01-t02)*0.5
				o[0] += t00 + s
				o[1] += h
				o[2] += s + t03
				s, h = (t11+t12)*0.5, (t11-t12)*0.5
				o[3] += t10 + s
				o[4] += h
				o[5] += s + t13
				s, h = (t21+t22)*0.5, (t21-t22)*0.5
				o[6] += t20 + s
				o[7] += h
				o[8] += s + t23
			}
		}
	})
}

// gradTiles writes A g Aᵀ of the 2x2 blocks g of the output gradient of
// channels [k0, k1) of images [i0, i1) into dst, laid out [16][k][tile]
// with the 16 matrices stride apart; A's rows are [1 0] [1 1] [1 -1]
// [0 -1]. Blocks past the output's edge are zero there.
func (p *winograd) gradTiles(gout, dst []float32, stride, i0, i1, k0, k1 int) {
	t := (i1 - i0) * p.th * p.tw
	for k := k0; k < k1; k++ {
		tile := 0
		for img := i0; img < i1; img++ {
			plane := gout[(img*p.k+k)*p.oh*p.ow : (img*p.k+k+1)*p.oh*p.ow]
			for ty := 0; ty < p.th; ty++ {
				y := ty * winoM
				tx0 := 0
				if winoGradTileGroups != nil && y+1 < p.oh {
					// Groups of 8 whole tiles (both columns inside).
					groups := p.ow / winoM / 8
					winoGradTileGroups(plane[y*p.ow:], p.ow, groups, dst[k*t+tile:], stride)
					tx0 = 8 * groups
					tile += tx0
				}
				for tx := tx0; tx < p.tw; tx, tile = tx+1, tile+1 {
					x := tx * winoM
					var g00, g01, g10, g11 float32
					g00 = plane[y*p.ow+x]
					if x+1 < p.ow {
						g01 = plane[y*p.ow+x+1]
					}
					if y+1 < p.oh {
						g10 = plane[(y+1)*p.ow+x]
						if x+1 < p.ow {
							g11 = plane[(y+1)*p.ow+x+1]
						}
					}
					// A g: rows g0, g0+g1, g0-g1, -g1; then each row
					// [a, b] times Aᵀ: a, a+b, a-b, -b.
					rows := [winoA][2]float32{{g00, g01}, {g00 + g10, g01 + g11}, {g00 - g10, g01 - g11}, {-g10, -g11}}
					o := k*t + tile
					for i, r := range rows {
						a, b := r[0], r[1]
						dst[(i*winoA)*stride+o] = a
						dst[(i*winoA+1)*stride+o] = a + b
						dst[(i*winoA+2)*stride+o] = a - b
						dst[(i*winoA+3)*stride+o] = -b
					}
				}
			}
		}
	}
}
