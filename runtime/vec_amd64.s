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
