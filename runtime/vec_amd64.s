//go:build amd64 && !purego

#include "textflag.h"

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
	VADDPD Y1, Y0, Y0
	VADDPD Y3, Y2, Y2
	VADDPD Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPD X1, X0, X0
	VHADDPD X0, X0, X0
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
	VADDPD Y1, Y0, Y0
	VADDPD Y3, Y2, Y2
	VADDPD Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPD X1, X0, X0
	VHADDPD X0, X0, X0
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
