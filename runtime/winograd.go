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
	// fixed marks weights that never change: U is computed once, into u.
	// Else each call computes it into filters (the workspace's).
	fixed   bool
	u       []float32
	uOnce   sync.Once
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
	return 4 * winoA2 * int64(filterStride(p.k, p.c))
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
	need(p.m, 4*winoA2*int64(p.k)*t)
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
// [16][k][c] (the matrices filterStride apart), computed in float64 and rounded once, from the kernels
// g[k][c] = w[k][c], or when turned w[c][k] turned 180 degrees (w is then
// [c][k][3][3]).
func winogradFilter(u, w []float32, k, c int, turned bool) {
	kc := filterStride(k, c)
	parallelFor(k, k*c*winoA2, func(lo, hi int) {
		var rows [winoA2][]float32 // rows[ξ][cc]: U[ξ][kk][cc]
		var t [9]float32
		for kk := lo; kk < hi; kk++ {
			for xi := range rows {
				rows[xi] = u[xi*kc+kk*c : xi*kc+kk*c+c]
			}
			for cc := 0; cc < c; cc++ {
				g := (*[9]float32)(w[(kk*c+cc)*9:])
				if turned {
					src := (*[9]float32)(w[(cc*k+kk)*9:])
					for i := range t {
						t[i] = src[8-i]
					}
					g = &t
				}
				// G g, column j (G's rows [1 0 0] [½ ½ ½] [½ -½ ½] [0 0 1]),
				// then (G g) Gᵀ, row i: straight-line code, in float64.
				var a [winoA][3]float64
				for j := 0; j < 3; j++ {
					g0, g1, g2 := float64(g[j]), float64(g[3+j]), float64(g[6+j])
					a[0][j], a[1][j], a[2][j], a[3][j] = g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2
				}
				for i := 0; i < winoA; i++ {
					a0, a1, a2 := a[i][0], a[i][1], a[i][2]
					rows[i*winoA][cc] = float32(a0)
					rows[i*winoA+1][cc] = float32((a0 + a1 + a2) / 2)
					rows[i*winoA+2][cc] = float32((a0 - a1 + a2) / 2)
					rows[i*winoA+3][cc] = float32(a2)
				}
			}
		}
	})
}

// forward computes out [n, k, oh, ow] from x [n, c, h, w], the weight w
// ([k, c, 3, 3], or [c, k, 3, 3] for a turned plan) and the optional bias,
// followed by a Relu when relu is set.
func (p *winograd) forward(x, w, bias, out []float32, relu bool) {
	var u []float32
	if p.fixed {
		p.uOnce.Do(func() {
			p.u = make([]float32, winoA2*filterStride(p.k, p.c))
			winogradFilter(p.u, w, p.k, p.c, p.turned)
		})
		u = p.u
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
				sgemmBlock(sgemmKern, wk, false, false, 0, p.k, 0, t, p.c, 1,
					u[xi*filterStride(p.k, p.c):], p.c, v[xi*p.c*t:], t, 0, m[xi*p.k*t:], t)
			}
			sgemmPool.Put(wk)
		})
		parallelFor(p.k, p.k*t*winoA2, func(lo, hi int) { p.outputs(m, bias, out, relu, i0, i1, lo, hi) })
		p.v.give(v)
		p.m.give(m)
	}
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

// outputs writes Y = Aᵀ m A (plus the bias) of output channels [k0, k1)
// of images [i0, i1) into out, from m laid out [16][k][tile].
func (p *winograd) outputs(m, bias, out []float32, relu bool, i0, i1, k0, k1 int) {
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
			plane := out[(img*p.k+k)*p.oh*p.ow : (img*p.k+k+1)*p.oh*p.ow]
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
					if relu {
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
