//go:build amd64 && !purego

package runtime

import "golang.org/x/sys/cpu"

// Vector loops over float32 slices (vec_amd64.s), 8 elements at a time;
// the Go wrappers set below do the whole groups of 8 and leave the rest
// to their callers.
//
//go:noescape
func vmaxAVX(n int, dst, x, y *float32)

//go:noescape
func reluAVX(n int, dst, x *float32)

//go:noescape
func reluGradAVX(n int, dst, grad, y *float32)

//go:noescape
func sumF32AVX(n int, x *float32) float64

//go:noescape
func sqDevF32AVX(n int, x *float32, mu float64) float64

//go:noescape
func affineAVX(n int, dst, x *float32, a, c float32, relu int)

//go:noescape
func gradSumsAVX(n int, grad, y, x *float32, shift float64, sums *[4]float64)

//go:noescape
func bnDxAVX(n int, dx, grad, y, x *float32, coef *[3]float64)

//go:noescape
func passPositiveAVX(n int, dst, grad, y *float32, add int)

//go:noescape
func convPack16AVX(rows int, dst, x *float32, off *int32, base int)

//go:noescape
func evensAVX(groups int, dst, src *float32)

//go:noescape
func convPack16S2AVX(rows int, dst, x *float32, off *int32, base int)

//go:noescape
func convBlend16S2AVX(rows int, dst, x *float32, off *int32, base int, mask *[16]int32)

//go:noescape
func convBlend16AVX(rows int, dst, x *float32, off *int32, base int, mask *[16]int32)

func init() {
	if !cpu.X86.HasAVX {
		return
	}
	if cpu.X86.HasAVX2 {
		passPositiveF32 = func(dst, g, y []float32, add bool) {
			n := len(dst) &^ 7
			if n == 0 {
				return
			}
			_, _ = g[n-1], y[n-1]
			a := 0
			if add {
				a = 1
			}
			passPositiveAVX(n, &dst[0], &g[0], &y[0], a)
		}
	}
	if cpu.X86.HasFMA && cpu.X86.HasAVX2 {
		gradSumsF32 = func(g, y, x []float32, shift float64) (sums [4]float64) {
			n := len(x) &^ 7
			if n == 0 {
				return
			}
			_ = g[n-1]
			var yp *float32
			if y != nil {
				_ = y[n-1]
				yp = &y[0]
			}
			gradSumsAVX(n, &g[0], yp, &x[0], shift, &sums)
			return
		}
		bnDxF32 = func(dx, g, y, x []float32, a, c1, c0 float64) {
			n := len(dx) &^ 3
			if n == 0 {
				return
			}
			_, _ = g[n-1], x[n-1]
			var yp *float32
			if y != nil {
				_ = y[n-1]
				yp = &y[0]
			}
			coef := [3]float64{a, c1, c0}
			bnDxAVX(n, &dx[0], &g[0], yp, &x[0], &coef)
		}
	}
	if cpu.X86.HasFMA {
		sumF32 = func(x []float32) float64 {
			n := len(x) &^ 15
			if n == 0 {
				return 0
			}
			return sumF32AVX(n, &x[0])
		}
		sqDevF32 = func(x []float32, mu float64) float64 {
			n := len(x) &^ 15
			if n == 0 {
				return 0
			}
			return sqDevF32AVX(n, &x[0], mu)
		}
	}
	affineF32 = func(dst, x []float32, a, c float32, relu bool) {
		n := len(dst) &^ 7
		if n == 0 {
			return
		}
		_ = x[n-1]
		r := 0
		if relu {
			r = 1
		}
		affineAVX(n, &dst[0], &x[0], a, c, r)
	}
	vmaxF32 = func(dst, x, y []float32) {
		n := len(dst) &^ 7
		if n == 0 {
			return
		}
		_, _ = x[n-1], y[n-1]
		vmaxAVX(n, &dst[0], &x[0], &y[0])
	}
	reluF32 = func(dst, x, _ []float32) {
		n := len(dst) &^ 7
		if n == 0 {
			return
		}
		_ = x[n-1]
		reluAVX(n, &dst[0], &x[0])
	}
	evensF32 = func(dst, src []float32) {
		g := len(dst) / 8
		if g == 0 {
			return
		}
		_ = src[16*g-1]
		evensAVX(g, &dst[0], &src[0])
	}
	// Panel rows of 16 floats, contiguous or at stride 2 (reading 16 or
	// 32): lo and hi bound off, so every read is inside x.
	convPack16 = func(dst, x []float32, off []int32, base, lo, hi int) {
		if panelRows(dst, x, off, base, lo, hi, 16) {
			convPack16AVX(len(off), &dst[0], &x[0], &off[0], base)
		}
	}
	convBlend16 = func(dst, x []float32, off []int32, base, lo, hi int, mask *[16]int32) {
		if panelRows(dst, x, off, base, lo, hi, 16) {
			convBlend16AVX(len(off), &dst[0], &x[0], &off[0], base, mask)
		}
	}
	convPack16S2 = func(dst, x []float32, off []int32, base, lo, hi int) {
		if panelRows(dst, x, off, base, lo, hi, 32) {
			convPack16S2AVX(len(off), &dst[0], &x[0], &off[0], base)
		}
	}
	convBlend16S2 = func(dst, x []float32, off []int32, base, lo, hi int, mask *[16]int32) {
		if panelRows(dst, x, off, base, lo, hi, 32) {
			convBlend16S2AVX(len(off), &dst[0], &x[0], &off[0], base, mask)
		}
	}
	reluGradF32 = func(dst, g, y []float32) {
		n := len(dst) &^ 7
		if n == 0 {
			return
		}
		_, _ = g[n-1], y[n-1]
		reluGradAVX(n, &dst[0], &g[0], &y[0])
	}
}

// panelRows reports whether the panel rows off (reading span floats each
// from x[off[r]+base:], lo and hi bounding off) have work for the
// assembly, panicking if a read would fall outside x or a write outside
// dst: the checks Go's indexing would make.
func panelRows(dst, x []float32, off []int32, base, lo, hi, span int) bool {
	if len(off) == 0 {
		return false
	}
	if base+lo < 0 || base+hi+span > len(x) {
		panic("a panel row read outside the planes")
	}
	_ = dst[16*len(off)-1]
	return true
}
