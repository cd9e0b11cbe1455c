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
