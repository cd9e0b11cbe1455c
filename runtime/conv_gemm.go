package runtime

import "slices"

// A convolution's forward pass as a GEMM without an im2col matrix.
//
// out[m, o] = Σ_r w[m, r] · cols[r, o], where row r of the im2col matrix
// is one (channel, kernel row, kernel column) and column o one output
// position. The blocked GEMM (sgemmBlockFrom) only ever reads cols as
// packed panels of nr columns, so convPanels packs those panels straight
// from the input instead of writing the whole matrix out and packing it
// again: for a 7x7 stride-2 stem that matrix is 49 times the input.
//
// To make each packed row one contiguous copy, the input is first split
// into its polyphase components, zero padding included: with strides
// (sh, sw), plane (u, v) of channel c holds the padded input's rows
// u, u+sh, u+2sh, ... and columns v, v+sw, ... Output position (y, x)
// with kernel tap (i, j) reads padded input (y·sh + i·dh, x·sw + j·dw),
// which is element (y + i·dh/sh, x + j·dw/sw) of plane (i·dh mod sh,
// j·dw mod sw): so nr output positions along one output row read nr
// consecutive elements of one plane, whatever the stride. The split is one
// pass over the input, about its size; only the planes some tap reads are
// made.
//
// The sums are those of the im2col path, in the same order (the same
// kernel over the same blocks of r), so the results are the same to the
// bit. The bias and a fused Relu are applied to each tile of the output
// in the micro-kernel, while it is still in registers.

// convPack16, when set (vec_amd64.go), packs contiguous panel rows of 16:
// dst[16r:16r+16] = x[off[r]+base:][:16], where lo and hi bound off.
var convPack16 func(dst, x []float32, off []int32, base, lo, hi int)

// convBlend16, when set with convPack16, replaces the lanes l of
// dst[16r:16r+16] where mask[l] is all ones with x[off[r]+base+l:].
var convBlend16 func(dst, x []float32, off []int32, base, lo, hi int, mask *[16]int32)

// convPack16S2 and convBlend16S2, when set (vec_amd64.go), are
// convPack16 and convBlend16 for panel rows of every other element:
// x[off[r]+base+2l] to lane l (reading a float past the last lane's).
var (
	convPack16S2  func(dst, x []float32, off []int32, base, lo, hi int)
	convBlend16S2 func(dst, x []float32, off []int32, base, lo, hi int, mask *[16]int32)
)

// lanesFrom[a] masks lanes a to 15 of 16 (all ones there, else zero).
var lanesFrom = func() (m [17][16]int32) {
	for a := range m {
		for l := a; l < 16; l++ {
			m[a][l] = -1
		}
	}
	return m
}()

// convNC bounds the output positions packed per block: kc rows of convNC
// columns, about 256 KiB, stay in L2 while every block of output channels
// runs over them.
const convNC = 256

// convPanels packs the im2col matrix of one image's group of channels (see
// above). It is built once per convolution; x is set to an image's
// polyphase planes before packing.
type convPanels struct {
	cg         int // channels per group
	hq, wq     int // size of a polyphase plane
	nu, nv     int // planes made per channel along each axis
	chanStride int // floats per channel: nu*nv*hq*wq
	// off[r] is where row r of the im2col matrix reads output position
	// (0, 0), relative to the group's first channel; output position
	// (y, x) adds y·ys + x·xs: y·wq + x in polyphase planes.
	off          []int32
	offLo, offHi int // the least and greatest of off
	ow           int
	ys, xs       int
	// The polyphase split: phase row u of the planes made is padded input
	// row a·sh + us[u] (likewise vs for columns). For strides of 2, sh and
	// sw are 1 (see newConvPanels).
	sh, sw, ph, pw, h, w int
	us, vs               []int
	x                    []float32
}

// newConvPanels returns the packer for a 1-d or 2-d window over cg
// channels per group, or nil for other windows.
func newConvPanels(win *window, cg int) *convPanels {
	d := len(win.in)
	if d > 2 {
		return nil
	}
	// A 1-d window is a 2-d one of height 1.
	at := func(s []int, i, def int) int {
		if d == 1 {
			if i == 0 {
				return def
			}
			return s[0]
		}
		return s[i]
	}
	h, w := at(win.in, 0, 1), at(win.in, 1, 1)
	oh, ow := at(win.out, 0, 1), at(win.out, 1, 1)
	kh, kw := at(win.kernel, 0, 1), at(win.kernel, 1, 1)
	sh, sw := at(win.strides, 0, 1), at(win.strides, 1, 1)
	dh, dw := at(win.dilations, 0, 1), at(win.dilations, 1, 1)
	ph, pw := at(win.padsBegin, 0, 0), at(win.padsBegin, 1, 0)
	if oh <= 0 || ow <= 0 {
		return nil
	}
	// Rows of the padded input read: up to (oh-1)·sh + (kh-1)·dh.
	hp, wp := (oh-1)*sh+(kh-1)*dh+1, (ow-1)*sw+(kw-1)*dw+1
	// Strides of 2 (stems, downsampling), undilated, a kernel larger than
	// 1x1: one plane, the padded input, whose panels' rows read every
	// other element (the packers have a form for it). Its split is a copy
	// of whole rows; the polyphase split's rows are a quarter as long,
	// and ResNet-18's took a tenth of its strided convolutions' time in
	// per-row work. (A 1x1 kernel reads one polyphase plane of the four:
	// its split copies a quarter of the input.)
	ssh, ssw := sh, sw // the split's strides
	if sh == 2 && sw == 2 && dh == 1 && dw == 1 && kh*kw > 1 {
		ssh, ssw = 1, 1
	}
	p := &convPanels{cg: cg, sh: ssh, sw: ssw, ph: ph, pw: pw, h: h, w: w, ow: ow}
	p.hq, p.wq = (hp+ssh-1)/ssh, (wp+ssw-1)/ssw
	p.ys, p.xs = sh/ssh*p.wq, sw/ssw
	uIndex, vIndex := map[int]int{}, map[int]int{}
	for i := 0; i < kh; i++ {
		if u := i * dh % ssh; uIndex[u] == 0 {
			p.us = append(p.us, u)
			uIndex[u] = len(p.us)
		}
	}
	for j := 0; j < kw; j++ {
		if v := j * dw % ssw; vIndex[v] == 0 {
			p.vs = append(p.vs, v)
			vIndex[v] = len(p.vs)
		}
	}
	p.nu, p.nv = len(p.us), len(p.vs)
	plane := p.hq * p.wq
	p.chanStride = p.nu * p.nv * plane
	if int64(cg)*int64(p.chanStride) > 1<<31-1 {
		return nil
	}
	p.off = make([]int32, 0, cg*kh*kw)
	for c := 0; c < cg; c++ {
		for i := 0; i < kh; i++ {
			for j := 0; j < kw; j++ {
				u, v := uIndex[i*dh%ssh]-1, vIndex[j*dw%ssw]-1
				o := c*p.chanStride + (u*p.nv+v)*plane + (i*dh/ssh)*p.wq + j*dw/ssw
				p.off = append(p.off, int32(o))
			}
		}
	}
	if len(p.off) > 0 {
		p.offLo, p.offHi = int(slices.Min(p.off)), int(slices.Max(p.off))
	}
	return p
}

// size is the floats of one image's planes, c channels.
func (p *convPanels) size(c int) int { return c * p.chanStride }

// convPanelsSlack is the floats a buffer of planes holds past them: a
// panel row of stride 2 loads a float past its last.
const convPanelsSlack = 16

// split writes the polyphase planes of channels [c0, c1) of one image x
// ([c, h, w]) into dst.
func (p *convPanels) split(x, dst []float32, c0, c1 int) {
	plane := p.hq * p.wq
	for c := c0; c < c1; c++ {
		src := x[c*p.h*p.w : (c+1)*p.h*p.w]
		for u, uu := range p.us {
			for v, vv := range p.vs {
				pl := dst[c*p.chanStride+(u*p.nv+v)*plane : c*p.chanStride+(u*p.nv+v+1)*plane]
				// Columns b read input column b·sw + vv - pw: those in
				// [lo, hi) are inside the input.
				lo, hi := 0, p.wq
				for lo < hi && lo*p.sw+vv-p.pw < 0 {
					lo++
				}
				for hi > lo && (hi-1)*p.sw+vv-p.pw >= p.w {
					hi--
				}
				for a := 0; a < p.hq; a++ {
					row := pl[a*p.wq : (a+1)*p.wq]
					y := a*p.sh + uu - p.ph
					if y < 0 || y >= p.h || lo >= hi {
						clear(row)
						continue
					}
					clear(row[:lo])
					clear(row[hi:])
					in := src[y*p.w : (y+1)*p.w]
					first := lo*p.sw + vv - p.pw
					switch p.sw {
					case 1:
						copy(row[lo:hi], in[first:])
					case 2:
						evens(row[lo:hi], in[first:])
					default:
						for b := lo; b < hi; b++ {
							row[b] = in[b*p.sw+vv-p.pw]
						}
					}
				}
			}
		}
	}
}

// pack packs rows [p0, p0+kc) and columns [j0, j0+nc) of the im2col
// matrix of the planes in p.x into panels of nr columns, zero-padded (the
// layout of sgemmPackB).
func (p *convPanels) pack(nr int, dst []float32, p0, kc, j0, nc int) {
	off := p.off[p0 : p0+kc]
	x := p.x
	xs := p.xs
	pack16, blend16 := convPack16, convBlend16
	if xs == 2 {
		pack16, blend16 = convPack16S2, convBlend16S2
	}
	var pos [16]int32 // offsets in a plane of a panel's positions (nr is at most 16)
	for q := 0; q*nr < nc; q++ {
		j := j0 + q*nr
		lanes := min(nr, j0+nc-j)
		d := dst[q*kc*nr : (q+1)*kc*nr]
		y, xx := j/p.ow, j%p.ow
		base := y*p.ys + xx*xs
		// The panel's positions are xs apart in a plane when they lie in
		// one output row, or the planes' rows are the output's.
		if lanes == nr && (xx+nr <= p.ow || p.ys == p.ow*xs) {
			if nr == 16 && pack16 != nil {
				pack16(d, x, off, base, p.offLo, p.offHi)
				continue
			}
			if xs == 1 {
				for r, o := range off {
					copy(d[r*nr:(r+1)*nr], x[int(o)+base:])
				}
				continue
			}
			for r, o := range off {
				s := x[int(o)+base:]
				for l := range d[r*nr : (r+1)*nr] {
					d[r*nr+l] = s[l*xs]
				}
			}
			continue
		}
		if lanes == nr && nr == 16 && blend16 != nil {
			// The panel runs on past the end of output row y: lane l of
			// the run in row y+k, which starts at lane a (at column l-a),
			// reads (y+k)·ys + (l-a)·xs = base + l·xs + k·(ys - ow·xs).
			// Each run is blended over the lanes from a on.
			skip := p.ys - p.ow*xs
			pack16(d, x, off, base, p.offLo, p.offHi)
			for k, a := 1, p.ow-xx; a < nr; k, a = k+1, a+p.ow {
				blend16(d, x, off, base+k*skip, p.offLo, p.offHi, &lanesFrom[a])
			}
			continue
		}
		for l := range lanes {
			pos[l] = int32(y*p.ys + xx*xs)
			if xx++; xx == p.ow {
				y, xx = y+1, 0
			}
		}
		for r, o := range off {
			dr := d[r*nr : (r+1)*nr]
			s := x[o:]
			for l, po := range pos[:lanes] {
				dr[l] = s[po]
			}
			clear(dr[lanes:])
		}
	}
}

// panelsShared reports whether k's groups' products have more tiles of
// output channels than of positions (for kern's tile): the goroutines
// then split the channels and share B, packed once, in k.packed.
func (k *conv[T]) panelsShared(kern *sgemmKernel) bool {
	_, mg, _, oN, _ := k.sizes()
	return (oN+kern.nr-1)/kern.nr < (mg+kern.mr-1)/kern.mr
}

// convForwardPanels computes k's output from x into out with k.panels:
// per image, the polyphase split, then each group's GEMM with the bias
// and Relu as its epilogue.
func convForwardPanels(k *conv[float32], x, w, bias, out []float32) {
	cg, mg, kN, oN, iN := k.sizes()
	p := k.panels
	planes := k.cols.take(p.size(k.c) + convPanelsSlack)
	defer k.cols.give(planes)
	kern := sgemmKern
	rows := cg * kN
	padded := make([]float32, mg+kern.mr)
	for img := 0; img < k.n; img++ {
		xi := x[img*k.c*iN : (img+1)*k.c*iN]
		parallelFor(k.c, k.c*iN, func(lo, hi int) { p.split(xi, planes, lo, hi) })
		for g := 0; g < k.group; g++ {
			pg := *p
			pg.x = planes[g*p.size(cg):]
			epi := &sgemmEpilogue{relu: k.relu}
			if bias != nil {
				// Padded with zeros for the edge tiles (see sgemmEpilogue).
				copy(padded, bias[g*mg:(g+1)*mg])
				epi.bias = padded
			}
			opA := sgemmA{a: w[g*mg*rows : (g+1)*mg*rows], lda: rows}
			if k.fixed {
				opA.packed = k.packedWeights(g, opA.a, mg, rows)
				if k.fold != nil {
					opA.a = nil // unscaled: only the packed weights are right
				}
			}
			c := out[(img*k.m+g*mg)*oN : (img*k.m+(g+1)*mg)*oN]
			src := sgemmB{conv: &pg}
			if !k.panelsShared(kern) {
				sgemmSplit(oN, kern.nr, mg*oN*rows, func(wk *sgemmWork, lo, hi int) {
					sgemmBlockFrom(kern, wk, opA, 0, mg, lo, hi, rows, 1, src, 0, c, oN, epi)
				})
				continue
			}
			// More tiles down the output channels than along the
			// positions: the goroutines split the channels and share B,
			// packed once (in parallel, by blocks of rows).
			width := (oN + kern.nr - 1) / kern.nr * kern.nr
			packed := k.packed.take(rows * width)
			kc := balanced(rows, sgemmKC, 1)
			parallelFor((rows+kc-1)/kc, rows*width, func(lo, hi int) {
				for b := lo; b < hi; b++ {
					p0 := b * kc
					pg.pack(kern.nr, packed[p0*width:], p0, min(kc, rows-p0), 0, oN)
				}
			})
			src.packed = packed
			sgemmSplit(mg, kern.mr, mg*oN*rows, func(wk *sgemmWork, lo, hi int) {
				sgemmBlockFrom(kern, wk, opA, lo, hi, 0, oN, rows, 1, src, 0, c, oN, epi)
			})
			k.packed.give(packed)
		}
	}
}
