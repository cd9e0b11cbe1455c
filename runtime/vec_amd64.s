//go:build amd64 && !purego

#include "textflag.h"

// HSUM4PD adds the four accumulators Y0-Y3 of doubles into the low double
// of X0 (Y1-Y3 spent).
#define HSUM4PD \
	VADDPD Y1, Y0, Y0; \
	VADDPD Y3, Y2, Y2; \
	VADDPD Y2, Y0, Y0; \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPD X1, X0, X0; \
	VHADDPD X0, X0, X0

// func vmaxAVX(n int, dst, x, y *float32)
//
// dst[i] = max(x[i], y[i]) for i < n, n a multiple of 8; NaN if either
// is NaN (VMAXPS alone gives y's value when x is NaN: a blend puts x's
// NaN back).
TEXT ·vmaxAVX(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ x+16(FP), SI
	MOVQ y+24(FP), DX
	SHRQ $3, CX
	JEQ done

loop:
	VMOVUPS (SI), Y0
	VMOVUPS (DX), Y1
	VMAXPS Y1, Y0, Y2
	VCMPPS $3, Y0, Y0, Y3
	VBLENDVPS Y3, Y0, Y2, Y2
	VMOVUPS Y2, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNE loop

done:
	VZEROUPPER
	RET

// func reluAVX(n int, dst, x *float32)
//
// dst[i] = max(x[i], 0) for i < n, n a multiple of 8, as Go's max gives
// it: VMAXPS returns its second (Intel) source, x, when x is NaN or both
// are zero, and adding +0 turns a -0 into +0 and changes nothing else.
TEXT ·reluAVX(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ x+16(FP), SI
	SHRQ $3, CX
	JEQ rdone
	VXORPS Y7, Y7, Y7

rloop:
	VMOVUPS (SI), Y0
	VMAXPS Y0, Y7, Y0
	VADDPS Y7, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNE rloop

rdone:
	VZEROUPPER
	RET

// func reluGradAVX(n int, dst, grad, y *float32)
//
// dst[i] = grad[i] where y[i] > 0, else 0, for i < n, n a multiple of 8.
TEXT ·reluGradAVX(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ grad+16(FP), SI
	MOVQ y+24(FP), DX
	SHRQ $3, CX
	JEQ gdone
	VXORPS Y7, Y7, Y7

gloop:
	VMOVUPS (DX), Y0
	VCMPPS $0x1e, Y7, Y0, Y1 // y > 0 (ordered, quiet)
	VANDPS (SI), Y1, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNE gloop

gdone:
	VZEROUPPER
	RET

// func convPack16AVX(rows int, dst, x *float32, off *int32, base int)
//
// For r < rows, copies the 16 floats at x[off[r]+base:] to dst[16r:]:
// one row of a convolution's GEMM panel (see convPanels.pack).
TEXT ·convPack16AVX(SB), NOSPLIT, $0-40
	MOVQ rows+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ x+16(FP), SI
	MOVQ off+24(FP), DX
	MOVQ base+32(FP), R8
	LEAQ (SI)(R8*4), SI
	TESTQ CX, CX
	JEQ pdone

ploop:
	MOVLQSX (DX), AX
	VMOVUPS (SI)(AX*4), Y0
	VMOVUPS 32(SI)(AX*4), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $4, DX
	ADDQ $64, DI
	DECQ CX
	JNE ploop

pdone:
	VZEROUPPER
	RET

// EVENS16 sets Y0, Y1 to the even elements of the 32 floats at
// (SI)(AX*4): lanes 2l of a panel row of stride 2.
#define EVENS16 \
	VMOVUPS (SI)(AX*4), Y0; \
	VMOVUPS 32(SI)(AX*4), Y1; \
	VMOVUPS 64(SI)(AX*4), Y2; \
	VMOVUPS 96(SI)(AX*4), Y3; \
	VSHUFPS $0x88, Y1, Y0, Y0; \
	VPERMPD $0xD8, Y0, Y0; \
	VSHUFPS $0x88, Y3, Y2, Y1; \
	VPERMPD $0xD8, Y1, Y1

// func convPack16S2AVX(rows int, dst, x *float32, off *int32, base int)
//
// For r < rows, dst[16r+l] = x[off[r]+base+2l] for l < 16 (reading one
// float past the last): convPack16AVX for a stride of 2.
TEXT ·convPack16S2AVX(SB), NOSPLIT, $0-40
	MOVQ rows+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ x+16(FP), SI
	MOVQ off+24(FP), DX
	MOVQ base+32(FP), R8
	LEAQ (SI)(R8*4), SI
	TESTQ CX, CX
	JEQ p2done

p2loop:
	MOVLQSX (DX), AX
	EVENS16
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $4, DX
	ADDQ $64, DI
	DECQ CX
	JNE p2loop

p2done:
	VZEROUPPER
	RET

// func convBlend16S2AVX(rows int, dst, x *float32, off *int32, base int, mask *[16]int32)
//
// convBlend16AVX for a stride of 2: lane l, where mask[l] is all ones,
// becomes x[off[r]+base+2l].
TEXT ·convBlend16S2AVX(SB), NOSPLIT, $0-48
	MOVQ rows+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ x+16(FP), SI
	MOVQ off+24(FP), DX
	MOVQ base+32(FP), R8
	MOVQ mask+40(FP), R9
	LEAQ (SI)(R8*4), SI
	VMOVDQU (R9), Y14
	VMOVDQU 32(R9), Y15
	TESTQ CX, CX
	JEQ b2done

b2loop:
	MOVLQSX (DX), AX
	EVENS16
	VMOVUPS (DI), Y2
	VMOVUPS 32(DI), Y3
	VBLENDVPS Y14, Y0, Y2, Y0
	VBLENDVPS Y15, Y1, Y3, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $4, DX
	ADDQ $64, DI
	DECQ CX
	JNE b2loop

b2done:
	VZEROUPPER
	RET

// func convBlend16AVX(rows int, dst, x *float32, off *int32, base int, mask *[16]int32)
//
// For r < rows, replaces the lanes l of dst[16r:16r+16] whose mask[l] is
// all ones with x[off[r]+base+l]: a panel's positions past the end of an
// output row, read from the next row (see convPanels.pack).
TEXT ·convBlend16AVX(SB), NOSPLIT, $0-48
	MOVQ rows+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ x+16(FP), SI
	MOVQ off+24(FP), DX
	MOVQ base+32(FP), R8
	MOVQ mask+40(FP), R9
	LEAQ (SI)(R8*4), SI
	VMOVDQU (R9), Y14
	VMOVDQU 32(R9), Y15
	TESTQ CX, CX
	JEQ bdone

bloop:
	MOVLQSX (DX), AX
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VBLENDVPS Y14, (SI)(AX*4), Y0, Y0
	VBLENDVPS Y15, 32(SI)(AX*4), Y1, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $4, DX
	ADDQ $64, DI
	DECQ CX
	JNE bloop

bdone:
	VZEROUPPER
	RET

// func evensAVX(groups int, dst, src *float32)
//
// dst[i] = src[2i] for i < 8*groups (reading src[:16*groups]): the
// columns a stride of 2 reads. Per group: shuffle the even elements of two
// vectors together, then put their 64-bit pairs in order.
TEXT ·evensAVX(SB), NOSPLIT, $0-24
	MOVQ groups+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI
	TESTQ CX, CX
	JEQ edone

eloop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VSHUFPS $0x88, Y1, Y0, Y2
	VPERMPD $0xD8, Y2, Y2
	VMOVUPS Y2, (DI)
	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNE eloop

edone:
	VZEROUPPER
	RET

// func sumF32AVX(n int, x *float32) float64
//
// The sum of x[:n] in float64, n a multiple of 16: 16 running sums (four
// ymm of four), added lane by lane at the end.
TEXT ·sumF32AVX(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ x+8(FP), SI
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	SHRQ $4, CX
	JEQ sdone

sloop:
	VCVTPS2PD (SI), Y4
	VCVTPS2PD 16(SI), Y5
	VCVTPS2PD 32(SI), Y6
	VCVTPS2PD 48(SI), Y7
	VADDPD Y4, Y0, Y0
	VADDPD Y5, Y1, Y1
	VADDPD Y6, Y2, Y2
	VADDPD Y7, Y3, Y3
	ADDQ $64, SI
	DECQ CX
	JNE sloop

sdone:
	HSUM4PD
	VZEROUPPER
	MOVSD X0, ret+16(FP)
	RET

// func sqDevF32AVX(n int, x *float32, mu float64) float64
//
// The sum of (x[i] - mu)^2 over x[:n] in float64, n a multiple of 16, as
// sumF32AVX sums.
TEXT ·sqDevF32AVX(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ x+8(FP), SI
	VBROADCASTSD mu+16(FP), Y8
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	SHRQ $4, CX
	JEQ qdone

qloop:
	VCVTPS2PD (SI), Y4
	VCVTPS2PD 16(SI), Y5
	VCVTPS2PD 32(SI), Y6
	VCVTPS2PD 48(SI), Y7
	VSUBPD Y8, Y4, Y4
	VSUBPD Y8, Y5, Y5
	VSUBPD Y8, Y6, Y6
	VSUBPD Y8, Y7, Y7
	VFMADD231PD Y4, Y4, Y0
	VFMADD231PD Y5, Y5, Y1
	VFMADD231PD Y6, Y6, Y2
	VFMADD231PD Y7, Y7, Y3
	ADDQ $64, SI
	DECQ CX
	JNE qloop

qdone:
	HSUM4PD
	VZEROUPPER
	MOVSD X0, ret+24(FP)
	RET

// func affineAVX(n int, dst, x *float32, a, c float32, relu int)
//
// dst[i] = x[i]*a + c for i < n, n a multiple of 8, rounded after the
// product and after the sum as Go computes it; then max(v, 0) with Go's
// zeros and NaNs (see reluAVX) when relu is not zero.
TEXT ·affineAVX(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ x+16(FP), SI
	VBROADCASTSS a+24(FP), Y6
	VBROADCASTSS c+28(FP), Y7
	VXORPS Y5, Y5, Y5
	MOVQ relu+32(FP), AX
	SHRQ $3, CX
	JEQ adone
	TESTQ AX, AX
	JNE areluloop

aloop:
	VMULPS (SI), Y6, Y0
	VADDPS Y7, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNE aloop
	JMP adone

areluloop:
	VMULPS (SI), Y6, Y0
	VADDPS Y7, Y0, Y0
	VMAXPS Y0, Y5, Y0
	VADDPS Y5, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNE areluloop

adone:
	VZEROUPPER
	RET

// GSLOAD(off) loads 4 of g (masked where y's bits, as int32, are not
// positive: y a Relu's output, not positive exactly there), as float64,
// into Y8 and the matching 4 of x minus the shift into Y9. R9 is not zero
// when y is given (DX).
#define GSLOAD(off) \
	VMOVUPS off(SI), X8; \
	TESTQ R9, R9; \
	JEQ 4(PC); \
	VMOVUPS off(DX), X10; \
	VPCMPGTD X15, X10, X10; \
	VANDPS X10, X8, X8; \
	VCVTPS2PD X8, Y8; \
	VCVTPS2PD off(DI), Y9; \
	VSUBPD Y14, Y9, Y9

// func gradSumsAVX(n int, grad, y, x *float32, shift float64, sums *[4]float64)
//
// For d = x - shift over i < n (n a multiple of 8) and g masked by y (nil:
// no mask), sums[0..3] = Σ g, Σ g·d, Σ d², Σ d in float64, 8 running sums
// of each.
TEXT ·gradSumsAVX(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ grad+8(FP), SI
	MOVQ y+16(FP), DX
	MOVQ DX, R9
	MOVQ x+24(FP), DI
	VBROADCASTSD shift+32(FP), Y14
	VPXOR X15, X15, X15
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	SHRQ $3, CX
	JEQ gsdone

gsloop:
	GSLOAD(0)
	VADDPD Y8, Y0, Y0
	VFMADD231PD Y8, Y9, Y1
	VFMADD231PD Y9, Y9, Y2
	VADDPD Y9, Y3, Y3
	GSLOAD(16)
	VADDPD Y8, Y4, Y4
	VFMADD231PD Y8, Y9, Y5
	VFMADD231PD Y9, Y9, Y6
	VADDPD Y9, Y7, Y7
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, DX
	DECQ CX
	JNE gsloop

gsdone:
	MOVQ sums+40(FP), AX
	VADDPD Y4, Y0, Y0
	VADDPD Y5, Y1, Y1
	VADDPD Y6, Y2, Y2
	VADDPD Y7, Y3, Y3
	VEXTRACTF128 $1, Y0, X8
	VADDPD X8, X0, X0
	VHADDPD X0, X0, X0
	MOVSD X0, (AX)
	VEXTRACTF128 $1, Y1, X8
	VADDPD X8, X1, X1
	VHADDPD X1, X1, X1
	MOVSD X1, 8(AX)
	VEXTRACTF128 $1, Y2, X8
	VADDPD X8, X2, X2
	VHADDPD X2, X2, X2
	MOVSD X2, 16(AX)
	VEXTRACTF128 $1, Y3, X8
	VADDPD X8, X3, X3
	VHADDPD X3, X3, X3
	MOVSD X3, 24(AX)
	VZEROUPPER
	RET

// func bnDxAVX(n int, dx, grad, y, x *float32, coef *[3]float64)
//
// dx[i] = float32(a·g[i] + c1·x[i] + c0) for i < n (n a multiple of 4),
// coef = a, c1, c0, computed in float64 in Go's order with g masked as
// gradSumsAVX masks it (y nil: no mask).
TEXT ·bnDxAVX(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ dx+8(FP), R8
	MOVQ grad+16(FP), SI
	MOVQ y+24(FP), DX
	MOVQ DX, R9
	MOVQ x+32(FP), DI
	MOVQ coef+40(FP), AX
	VBROADCASTSD (AX), Y11
	VBROADCASTSD 8(AX), Y12
	VBROADCASTSD 16(AX), Y13
	VXORPD Y14, Y14, Y14
	VPXOR X15, X15, X15
	SHRQ $2, CX
	JEQ dxdone

dxloop:
	GSLOAD(0) // Y14 is 0: Y9 is x
	VMULPD Y11, Y8, Y8
	VMULPD Y12, Y9, Y9
	VADDPD Y9, Y8, Y8
	VADDPD Y13, Y8, Y8
	VCVTPD2PSY Y8, X8
	VMOVUPS X8, (R8)
	ADDQ $16, SI
	ADDQ $16, DI
	ADDQ $16, DX
	ADDQ $16, R8
	DECQ CX
	JNE dxloop

dxdone:
	VZEROUPPER
	RET

// func passPositiveAVX(n int, dst, grad, y *float32, add int)
//
// For i < n (a multiple of 8): m = grad[i] where y[i]'s bits, as an int32,
// are positive (y a Relu's output: positive exactly there), else 0; dst[i]
// = m, or dst[i] += m when add is not zero.
TEXT ·passPositiveAVX(SB), NOSPLIT, $0-40
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ grad+16(FP), SI
	MOVQ y+24(FP), DX
	MOVQ add+32(FP), AX
	VPXOR Y15, Y15, Y15
	SHRQ $3, CX
	JEQ ppdone
	TESTQ AX, AX
	JNE ppadd

ppset:
	VMOVUPS (DX), Y0
	VPCMPGTD Y15, Y0, Y0
	VANDPS (SI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNE ppset
	JMP ppdone

ppadd:
	VMOVUPS (DX), Y0
	VPCMPGTD Y15, Y0, Y0
	VANDPS (SI), Y0, Y0
	VADDPS (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNE ppadd

ppdone:
	VZEROUPPER
	RET
