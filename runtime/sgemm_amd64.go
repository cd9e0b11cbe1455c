//go:build amd64 && !purego

package runtime

import "golang.org/x/sys/cpu"

// sgemmKernel6x16E is one tile of sgemmKernel6x16N with alpha 1 and an epilogue: see
// sgemmKernel.fnEpi.
//
//go:noescape
func sgemmKernel6x16E(k int, a *float32, rsa, csa int, b, c *float32, ldc int, beta float32, bias *float32, relu int)

// sgemmKernel6x16N is the AVX2+FMA micro-kernel (sgemm_amd64.s): 6x16
// tiles in twelve ymm accumulators, A read with any strides, tiles of
// them down C in one call (sgemmKernel.fn is one, fnN several). See
// sgemmKernel for the contract.
//
//go:noescape
func sgemmKernel6x16N(k int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32, tiles, aStep int)

// sgemmKernel6x8 is sgemmKernel.half for sgemmKernel6x16N (sgemm_amd64.s).
//
//go:noescape
func sgemmKernel6x8(k int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32)

// sgemmPackB16 is sgemmKernel.packB for nr = 16 (sgemm_amd64.s).
//
//go:noescape
func sgemmPackB16(kc, panels int, src *float32, ldb int, dst *float32)

// sgemmPackBT16 is sgemmKernel.packBT for nr = 16 (sgemm_amd64.s).
//
//go:noescape
func sgemmPackBT16(kc int, src *float32, ldb int, dst *float32)

func sgemmPackBTAVX(kc int, src []float32, ldb int, dst []float32) {
	_ = src[15*ldb+kc-1]
	_ = dst[16*kc-1]
	sgemmPackBT16(kc, &src[0], ldb, &dst[0])
}

// sgemmDotAVX and sgemmAxpyAVX are sgemmKernel.dot and .axpy
// (sgemm_amd64.s).
//
//go:noescape
func sgemmDotAVX(n int, x, y *float32) float32

//go:noescape
func sgemmAxpyAVX(n int, alpha float32, x, y *float32)

func sgemmDotAVX2(x, y []float32) float32 {
	if len(x) == 0 {
		return 0
	}
	_ = y[len(x)-1]
	return sgemmDotAVX(len(x), &x[0], &y[0])
}

func sgemmAxpyAVX2(alpha float32, x, y []float32) {
	if len(x) == 0 {
		return
	}
	_ = y[len(x)-1]
	sgemmAxpyAVX(len(x), alpha, &x[0], &y[0])
}

func sgemmKernelAVX2(k int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32) {
	// Bounds the assembly relies on, checked once per tile.
	_ = a[5*rsa+(k-1)*csa]
	_ = b[16*k-1]
	_ = c[5*ldc+15]
	sgemmKernel6x16N(k, &a[0], rsa, csa, &b[0], &c[0], ldc, alpha, beta, 1, 0)
}

func sgemmKernelAVX2Epi(k int, a []float32, rsa, csa int, b, c []float32, ldc int, beta float32, bias []float32, relu bool) {
	_ = a[5*rsa+(k-1)*csa]
	_ = b[16*k-1]
	_ = c[5*ldc+15]
	var bp *float32
	if bias != nil {
		_ = bias[5]
		bp = &bias[0]
	}
	r := 0
	if relu {
		r = 1
	}
	sgemmKernel6x16E(k, &a[0], rsa, csa, &b[0], &c[0], ldc, beta, bp, r)
}

func sgemmKernelAVX2N(k int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32, tiles, aStep int) {
	_ = a[(tiles-1)*aStep+5*rsa+(k-1)*csa]
	_ = b[16*k-1]
	_ = c[(6*tiles-1)*ldc+15]
	sgemmKernel6x16N(k, &a[0], rsa, csa, &b[0], &c[0], ldc, alpha, beta, tiles, aStep)
}

func sgemmKernelAVX2Half(k int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32) {
	_ = a[5*rsa+(k-1)*csa]
	_ = b[16*k-1]
	_ = c[5*ldc+7]
	sgemmKernel6x8(k, &a[0], rsa, csa, &b[0], &c[0], ldc, alpha, beta)
}

func sgemmPackBAVX(kc, panels int, src []float32, ldb int, dst []float32) {
	_ = src[(kc-1)*ldb+16*panels-1]
	_ = dst[16*panels*kc-1]
	sgemmPackB16(kc, panels, &src[0], ldb, &dst[0])
}

var sgemmAVX2 = &sgemmKernel{name: "avx2", mr: 6, nr: 16, strided: true, fn: sgemmKernelAVX2, half: sgemmKernelAVX2Half, fnEpi: sgemmKernelAVX2Epi, fnN: sgemmKernelAVX2N, packB: sgemmPackBAVX, packBT: sgemmPackBTAVX, dot: sgemmDotAVX2, axpy: sgemmAxpyAVX2}

func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		sgemmKern = sgemmAVX2
	}
}
