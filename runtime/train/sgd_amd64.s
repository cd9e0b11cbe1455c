//go:build amd64 && !purego

#include "textflag.h"

// func sgdMomentumAVX(n int, p, grad, buf *float32, wd, mom, damp1, lr float32)
//
// For i < n (a multiple of 8), with each product and sum rounded to
// float32 as sgdStep rounds them: g = grad[i] (+ wd*p[i] when wd is not
// zero); buf[i] = buf[i]*mom + damp1*g; p[i] -= lr*buf[i].
TEXT ·sgdMomentumAVX(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), CX
	MOVQ p+8(FP), DI
	MOVQ grad+16(FP), SI
	MOVQ buf+24(FP), DX
	VBROADCASTSS wd+32(FP), Y12
	VBROADCASTSS mom+36(FP), Y13
	VBROADCASTSS damp1+40(FP), Y14
	VBROADCASTSS lr+44(FP), Y15
	MOVL wd+32(FP), AX
	ANDL $0x7fffffff, AX // -0 is zero
	SHRQ $3, CX
	JEQ done

loop:
	VMOVUPS (DI), Y0
	VMOVUPS (SI), Y1
	TESTL AX, AX
	JEQ nowd
	VMULPS Y12, Y0, Y2
	VADDPS Y2, Y1, Y1

nowd:
	VMULPS (DX), Y13, Y3
	VMULPS Y14, Y1, Y4
	VADDPS Y4, Y3, Y3
	VMOVUPS Y3, (DX)
	VMULPS Y15, Y3, Y5
	VSUBPS Y5, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	ADDQ $32, DX
	DECQ CX
	JNE loop

done:
	VZEROUPPER
	RET
