//go:build amd64 && !purego

#include "textflag.h"

// The loops of four k steps prefetch A 2 KiB ahead: a packed A (fixed
// weights) is one stream, read once at batch 1 (ResNet-18's last layers:
// 17 MB a product), which the hardware prefetcher alone brought in at 8
// GB/s where the machine streams 16.
//
// STEP is one k step of the 6x16 tile: load a row of the B panel (BX) into
// Y12/Y13, broadcast the column of six A values (rows at AX, AX+R8,
// AX+2*R8, R10, R10+R8, R10+2*R8) and accumulate into Y0-Y11 (tile row r
// in Y(2r), Y(2r+1)); then advance A by one column (R9 bytes).
#define STEP(boff0, boff1) \
	VMOVUPS boff0(BX), Y12; \
	VMOVUPS boff1(BX), Y13; \
	VBROADCASTSS (AX), Y14; \
	VBROADCASTSS (AX)(R8*1), Y15; \
	VFMADD231PS Y12, Y14, Y0; \
	VFMADD231PS Y13, Y14, Y1; \
	VFMADD231PS Y12, Y15, Y2; \
	VFMADD231PS Y13, Y15, Y3; \
	VBROADCASTSS (AX)(R8*2), Y14; \
	VBROADCASTSS (R10), Y15; \
	VFMADD231PS Y12, Y14, Y4; \
	VFMADD231PS Y13, Y14, Y5; \
	VFMADD231PS Y12, Y15, Y6; \
	VFMADD231PS Y13, Y15, Y7; \
	VBROADCASTSS (R10)(R8*1), Y14; \
	VBROADCASTSS (R10)(R8*2), Y15; \
	VFMADD231PS Y12, Y14, Y8; \
	VFMADD231PS Y13, Y14, Y9; \
	VFMADD231PS Y12, Y15, Y10; \
	VFMADD231PS Y13, Y15, Y11; \
	ADDQ R9, AX; \
	ADDQ R9, R10

// func sgemmKernel6x16N(k int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32, tiles, aStep int)
//
// The micro-kernel: for each of tiles 6x16 tiles down the rows of C, with
// one B panel (BX, k rows of 16), sets the tile to alpha*A*B + beta*C, not
// reading C when beta is zero. Tile i reads A (rows rsa, columns csa
// floats apart) from a + i*aStep and writes rows 6i.. of c (rows ldc
// apart). A run of tiles in one call spares a call from Go per tile (a
// tenth of a tile's time when k is 64).
TEXT ·sgemmKernel6x16N(SB), NOSPLIT, $0-80
	MOVQ a+8(FP), R12
	MOVQ c+40(FP), R13
	MOVQ tiles+64(FP), R11
	TESTQ R11, R11
	JEQ ndone

ntile:
	MOVQ k+0(FP), CX
	MOVQ R12, AX
	MOVQ rsa+16(FP), R8
	MOVQ csa+24(FP), R9
	MOVQ b+32(FP), BX
	MOVQ R13, DI
	MOVQ ldc+48(FP), DX
	SHLQ $2, R8
	SHLQ $2, R9
	SHLQ $2, DX
	LEAQ (R8)(R8*2), R10
	ADDQ AX, R10
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	MOVQ DI, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	ADDQ DX, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	ADDQ DX, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	ADDQ DX, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	ADDQ DX, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	ADDQ DX, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	CMPQ CX, $4
	JLT ntail

nloop4:
	PREFETCHT0 2048(AX)
	PREFETCHT0 2112(AX)
	STEP(0, 32)
	STEP(64, 96)
	STEP(128, 160)
	STEP(192, 224)
	ADDQ $256, BX
	SUBQ $4, CX
	CMPQ CX, $4
	JGE nloop4

ntail:
	TESTQ CX, CX
	JEQ nstore

nloop1:
	STEP(0, 32)
	ADDQ $64, BX
	DECQ CX
	JNE nloop1

nstore:
	VBROADCASTSS alpha+56(FP), Y14
	VMULPS Y14, Y0, Y0
	VMULPS Y14, Y1, Y1
	VMULPS Y14, Y2, Y2
	VMULPS Y14, Y3, Y3
	VMULPS Y14, Y4, Y4
	VMULPS Y14, Y5, Y5
	VMULPS Y14, Y6, Y6
	VMULPS Y14, Y7, Y7
	VMULPS Y14, Y8, Y8
	VMULPS Y14, Y9, Y9
	VMULPS Y14, Y10, Y10
	VMULPS Y14, Y11, Y11
	MOVL beta+60(FP), R8
	ANDL $0x7fffffff, R8
	JEQ noverwrite
	VBROADCASTSS beta+60(FP), Y15
	VFMADD231PS (DI), Y15, Y0
	VFMADD231PS 32(DI), Y15, Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ DX, DI
	VFMADD231PS (DI), Y15, Y2
	VFMADD231PS 32(DI), Y15, Y3
	VMOVUPS Y2, (DI)
	VMOVUPS Y3, 32(DI)
	ADDQ DX, DI
	VFMADD231PS (DI), Y15, Y4
	VFMADD231PS 32(DI), Y15, Y5
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	ADDQ DX, DI
	VFMADD231PS (DI), Y15, Y6
	VFMADD231PS 32(DI), Y15, Y7
	VMOVUPS Y6, (DI)
	VMOVUPS Y7, 32(DI)
	ADDQ DX, DI
	VFMADD231PS (DI), Y15, Y8
	VFMADD231PS 32(DI), Y15, Y9
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 32(DI)
	ADDQ DX, DI
	VFMADD231PS (DI), Y15, Y10
	VFMADD231PS 32(DI), Y15, Y11
	VMOVUPS Y10, (DI)
	VMOVUPS Y11, 32(DI)
	JMP nnext

noverwrite:
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ DX, DI
	VMOVUPS Y2, (DI)
	VMOVUPS Y3, 32(DI)
	ADDQ DX, DI
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	ADDQ DX, DI
	VMOVUPS Y6, (DI)
	VMOVUPS Y7, 32(DI)
	ADDQ DX, DI
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 32(DI)
	ADDQ DX, DI
	VMOVUPS Y10, (DI)
	VMOVUPS Y11, 32(DI)

nnext:
	MOVQ aStep+72(FP), AX
	SHLQ $2, AX
	ADDQ AX, R12
	MOVQ ldc+48(FP), AX
	IMULQ $24, AX
	ADDQ AX, R13
	DECQ R11
	JNE ntile

ndone:
	VZEROUPPER
	RET

// func sgemmPackB16(kc, panels int, src *float32, ldb int, dst *float32)
//
// Copies, for each of kc rows of src (row stride ldb), panels runs of 16
// floats into panel-major dst: run q of row p goes to dst[(q*kc+p)*16:].
// Rows are read front to back so the hardware prefetcher can stream them.
TEXT ·sgemmPackB16(SB), NOSPLIT, $0-40
	MOVQ kc+0(FP), CX
	MOVQ panels+8(FP), R9
	MOVQ src+16(FP), SI
	MOVQ ldb+24(FP), DX
	MOVQ dst+32(FP), DI
	SHLQ $2, DX
	MOVQ CX, R12
	SHLQ $6, R12
	TESTQ CX, CX
	JEQ packdone
	TESTQ R9, R9
	JEQ packdone

packrow:
	MOVQ SI, R10
	MOVQ DI, R11
	MOVQ R9, R13

packpanel:
	VMOVUPS (R10), Y0
	VMOVUPS 32(R10), Y1
	VMOVUPS Y0, (R11)
	VMOVUPS Y1, 32(R11)
	ADDQ $64, R10
	ADDQ R12, R11
	DECQ R13
	JNE packpanel
	ADDQ DX, SI
	ADDQ $64, DI
	DECQ CX
	JNE packrow

packdone:
	VZEROUPPER
	RET

// TRANS4 transposes the 4x4 blocks in each 128-bit lane of rows a, b, c, d
// into o0..o3, using t0..t3 as scratch.
#define TRANS4(a, b, c, d, t0, t1, t2, t3, o0, o1, o2, o3) \
	VUNPCKLPS b, a, t0; \
	VUNPCKHPS b, a, t1; \
	VUNPCKLPS d, c, t2; \
	VUNPCKHPS d, c, t3; \
	VSHUFPS $0x44, t2, t0, o0; \
	VSHUFPS $0xEE, t2, t0, o1; \
	VSHUFPS $0x44, t3, t1, o2; \
	VSHUFPS $0xEE, t3, t1, o3

// func sgemmPackBT16(kc int, src *float32, ldb int, dst *float32)
//
// Packs one panel of a transposed B: dst[p*16+x] = src[x*ldb+p] for the
// 16 columns x and kc rows p, kc a multiple of 8. Each group of eight
// columns is transposed 8x8 at a time: row q of the loaded block holds
// p..p+3 of column q in its low lane and of column q+4 in its high lane,
// so an in-lane 4x4 transpose yields whole rows of the panel.
TEXT ·sgemmPackBT16(SB), NOSPLIT, $0-32
	MOVQ kc+0(FP), CX
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	MOVQ dst+24(FP), DI
	SHRQ $3, CX
	JEQ btdone
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9
	MOVQ $2, R11

bthalf:
	LEAQ (SI)(R8*4), R10
	MOVQ SI, AX
	MOVQ DI, BX
	MOVQ CX, DX

btloop:
	VMOVUPS (AX), X0
	VINSERTF128 $1, (R10), Y0, Y0
	VMOVUPS (AX)(R8*1), X1
	VINSERTF128 $1, (R10)(R8*1), Y1, Y1
	VMOVUPS (AX)(R8*2), X2
	VINSERTF128 $1, (R10)(R8*2), Y2, Y2
	VMOVUPS (AX)(R9*1), X3
	VINSERTF128 $1, (R10)(R9*1), Y3, Y3
	VMOVUPS 16(AX), X4
	VINSERTF128 $1, 16(R10), Y4, Y4
	VMOVUPS 16(AX)(R8*1), X5
	VINSERTF128 $1, 16(R10)(R8*1), Y5, Y5
	VMOVUPS 16(AX)(R8*2), X6
	VINSERTF128 $1, 16(R10)(R8*2), Y6, Y6
	VMOVUPS 16(AX)(R9*1), X7
	VINSERTF128 $1, 16(R10)(R9*1), Y7, Y7
	TRANS4(Y0, Y1, Y2, Y3, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15)
	VMOVUPS Y12, 0(BX)
	VMOVUPS Y13, 64(BX)
	VMOVUPS Y14, 128(BX)
	VMOVUPS Y15, 192(BX)
	TRANS4(Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15)
	VMOVUPS Y12, 256(BX)
	VMOVUPS Y13, 320(BX)
	VMOVUPS Y14, 384(BX)
	VMOVUPS Y15, 448(BX)
	ADDQ $32, AX
	ADDQ $32, R10
	ADDQ $512, BX
	DECQ DX
	JNE btloop
	LEAQ (SI)(R8*8), SI
	ADDQ $32, DI
	DECQ R11
	JNE bthalf

btdone:
	VZEROUPPER
	RET

// STEP8 is one k step of the 6x8 tile: like STEP but with one B vector
// (the first 8 columns of the 16-wide panel row at BX+boff) and the tile
// rows accumulated into r0..r5.
#define STEP8(boff, r0, r1, r2, r3, r4, r5) \
	VMOVUPS boff(BX), Y12; \
	VBROADCASTSS (AX), Y14; \
	VBROADCASTSS (AX)(R8*1), Y15; \
	VFMADD231PS Y12, Y14, r0; \
	VFMADD231PS Y12, Y15, r1; \
	VBROADCASTSS (AX)(R8*2), Y14; \
	VBROADCASTSS (R10), Y15; \
	VFMADD231PS Y12, Y14, r2; \
	VFMADD231PS Y12, Y15, r3; \
	VBROADCASTSS (R10)(R8*1), Y14; \
	VBROADCASTSS (R10)(R8*2), Y15; \
	VFMADD231PS Y12, Y14, r4; \
	VFMADD231PS Y12, Y15, r5; \
	ADDQ R9, AX; \
	ADDQ R9, R10

// func sgemmKernel6x8(k int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32)
//
// The 6x8 tile of the first 8 columns of a 16-wide B panel, for panels
// with at most 8 columns left. Even and odd k steps accumulate into
// separate registers (Y0-Y5, Y6-Y11) so that twelve FMA chains are in flight.
TEXT ·sgemmKernel6x8(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ rsa+16(FP), R8
	MOVQ csa+24(FP), R9
	MOVQ b+32(FP), BX
	MOVQ c+40(FP), DI
	MOVQ ldc+48(FP), DX
	SHLQ $2, R8
	SHLQ $2, R9
	SHLQ $2, DX
	LEAQ (R8)(R8*2), R10
	ADDQ AX, R10
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	CMPQ CX, $4
	JLT h_tail

h_loop4:
	STEP8(0, Y0, Y1, Y2, Y3, Y4, Y5)
	STEP8(64, Y6, Y7, Y8, Y9, Y10, Y11)
	STEP8(128, Y0, Y1, Y2, Y3, Y4, Y5)
	STEP8(192, Y6, Y7, Y8, Y9, Y10, Y11)
	ADDQ $256, BX
	SUBQ $4, CX
	CMPQ CX, $4
	JGE h_loop4

h_tail:
	TESTQ CX, CX
	JEQ h_store

h_loop1:
	STEP8(0, Y0, Y1, Y2, Y3, Y4, Y5)
	ADDQ $64, BX
	DECQ CX
	JNE h_loop1

h_store:
	VBROADCASTSS alpha+56(FP), Y14
	VADDPS Y6, Y0, Y0
	VMULPS Y14, Y0, Y0
	VADDPS Y7, Y1, Y1
	VMULPS Y14, Y1, Y1
	VADDPS Y8, Y2, Y2
	VMULPS Y14, Y2, Y2
	VADDPS Y9, Y3, Y3
	VMULPS Y14, Y3, Y3
	VADDPS Y10, Y4, Y4
	VMULPS Y14, Y4, Y4
	VADDPS Y11, Y5, Y5
	VMULPS Y14, Y5, Y5
	MOVL beta+60(FP), R8
	ANDL $0x7fffffff, R8
	JEQ h_overwrite
	VBROADCASTSS beta+60(FP), Y15
	VFMADD231PS (DI), Y15, Y0
	VMOVUPS Y0, (DI)
	ADDQ DX, DI
	VFMADD231PS (DI), Y15, Y1
	VMOVUPS Y1, (DI)
	ADDQ DX, DI
	VFMADD231PS (DI), Y15, Y2
	VMOVUPS Y2, (DI)
	ADDQ DX, DI
	VFMADD231PS (DI), Y15, Y3
	VMOVUPS Y3, (DI)
	ADDQ DX, DI
	VFMADD231PS (DI), Y15, Y4
	VMOVUPS Y4, (DI)
	ADDQ DX, DI
	VFMADD231PS (DI), Y15, Y5
	VMOVUPS Y5, (DI)
	VZEROUPPER
	RET

h_overwrite:
	VMOVUPS Y0, (DI)
	ADDQ DX, DI
	VMOVUPS Y1, (DI)
	ADDQ DX, DI
	VMOVUPS Y2, (DI)
	ADDQ DX, DI
	VMOVUPS Y3, (DI)
	ADDQ DX, DI
	VMOVUPS Y4, (DI)
	ADDQ DX, DI
	VMOVUPS Y5, (DI)
	VZEROUPPER
	RET

// func sgemmDotAVX(n int, x, y *float32) float32
TEXT ·sgemmDotAVX(SB), NOSPLIT, $0-28
	MOVQ n+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	CMPQ CX, $32
	JLT dot8

dot32:
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	CMPQ CX, $32
	JGE dot32

dot8:
	CMPQ CX, $8
	JLT dotsum
	VMOVUPS (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP dot8

dotsum:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	TESTQ CX, CX
	JEQ dotdone

dot1:
	VMOVSS (SI), X1
	VFMADD231SS (DI), X1, X0
	ADDQ $4, SI
	ADDQ $4, DI
	DECQ CX
	JNE dot1

dotdone:
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func sgemmAxpyAVX(n int, alpha float32, x, y *float32)
TEXT ·sgemmAxpyAVX(SB), NOSPLIT, $0-32
	MOVQ n+0(FP), CX
	MOVQ x+16(FP), SI
	MOVQ y+24(FP), DI
	VBROADCASTSS alpha+8(FP), Y15
	CMPQ CX, $32
	JLT axpy8

axpy32:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VFMADD231PS (SI), Y15, Y0
	VFMADD231PS 32(SI), Y15, Y1
	VFMADD231PS 64(SI), Y15, Y2
	VFMADD231PS 96(SI), Y15, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	CMPQ CX, $32
	JGE axpy32

axpy8:
	CMPQ CX, $8
	JLT axpy1
	VMOVUPS (DI), Y0
	VFMADD231PS (SI), Y15, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP axpy8

axpy1:
	TESTQ CX, CX
	JEQ axpydone
	VMOVSS (DI), X0
	VFMADD231SS (SI), X15, X0
	VMOVSS X0, (DI)
	ADDQ $4, SI
	ADDQ $4, DI
	DECQ CX
	JMP axpy1

axpydone:
	VZEROUPPER
	RET

// func sgemmKernel6x16E(k int, a *float32, rsa, csa int, b, c *float32, ldc int, beta float32, bias *float32, relu int)
//
// One tile of sgemmKernel6x16N with alpha 1, then an epilogue while the tile is in
// registers: row r gets bias[r] added (bias not nil), then max(v, 0)
// (relu not zero; a NaN stays NaN).
TEXT ·sgemmKernel6x16E(SB), NOSPLIT, $0-80
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), AX
	MOVQ rsa+16(FP), R8
	MOVQ csa+24(FP), R9
	MOVQ b+32(FP), BX
	MOVQ c+40(FP), DI
	MOVQ ldc+48(FP), DX
	SHLQ $2, R8
	SHLQ $2, R9
	SHLQ $2, DX
	LEAQ (R8)(R8*2), R10
	ADDQ AX, R10
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	MOVQ DI, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	ADDQ DX, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	ADDQ DX, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	ADDQ DX, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	ADDQ DX, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	ADDQ DX, SI
	PREFETCHT0 (SI)
	PREFETCHT0 63(SI)
	CMPQ CX, $4
	JLT etail

eloop4:
	PREFETCHT0 2048(AX)
	PREFETCHT0 2112(AX)
	STEP(0, 32)
	STEP(64, 96)
	STEP(128, 160)
	STEP(192, 224)
	ADDQ $256, BX
	SUBQ $4, CX
	CMPQ CX, $4
	JGE eloop4

etail:
	TESTQ CX, CX
	JEQ ebeta

eloop1:
	STEP(0, 32)
	ADDQ $64, BX
	DECQ CX
	JNE eloop1

ebeta:
	MOVL beta+56(FP), R8
	ANDL $0x7fffffff, R8
	JEQ ebias
	VBROADCASTSS beta+56(FP), Y15
	MOVQ DI, SI
	VFMADD231PS (SI), Y15, Y0
	VFMADD231PS 32(SI), Y15, Y1
	ADDQ DX, SI
	VFMADD231PS (SI), Y15, Y2
	VFMADD231PS 32(SI), Y15, Y3
	ADDQ DX, SI
	VFMADD231PS (SI), Y15, Y4
	VFMADD231PS 32(SI), Y15, Y5
	ADDQ DX, SI
	VFMADD231PS (SI), Y15, Y6
	VFMADD231PS 32(SI), Y15, Y7
	ADDQ DX, SI
	VFMADD231PS (SI), Y15, Y8
	VFMADD231PS 32(SI), Y15, Y9
	ADDQ DX, SI
	VFMADD231PS (SI), Y15, Y10
	VFMADD231PS 32(SI), Y15, Y11

ebias:
	MOVQ bias+64(FP), R11
	TESTQ R11, R11
	JEQ erelu
	VBROADCASTSS (R11), Y14
	VADDPS Y14, Y0, Y0
	VADDPS Y14, Y1, Y1
	VBROADCASTSS 4(R11), Y14
	VADDPS Y14, Y2, Y2
	VADDPS Y14, Y3, Y3
	VBROADCASTSS 8(R11), Y14
	VADDPS Y14, Y4, Y4
	VADDPS Y14, Y5, Y5
	VBROADCASTSS 12(R11), Y14
	VADDPS Y14, Y6, Y6
	VADDPS Y14, Y7, Y7
	VBROADCASTSS 16(R11), Y14
	VADDPS Y14, Y8, Y8
	VADDPS Y14, Y9, Y9
	VBROADCASTSS 20(R11), Y14
	VADDPS Y14, Y10, Y10
	VADDPS Y14, Y11, Y11

erelu:
	MOVQ relu+72(FP), R11
	TESTQ R11, R11
	JEQ estore
	// VMAXPS returns its second (Intel) source when either is NaN: the
	// value, so a NaN passes through.
	VXORPS Y14, Y14, Y14
	VMAXPS Y0, Y14, Y0
	VMAXPS Y1, Y14, Y1
	VMAXPS Y2, Y14, Y2
	VMAXPS Y3, Y14, Y3
	VMAXPS Y4, Y14, Y4
	VMAXPS Y5, Y14, Y5
	VMAXPS Y6, Y14, Y6
	VMAXPS Y7, Y14, Y7
	VMAXPS Y8, Y14, Y8
	VMAXPS Y9, Y14, Y9
	VMAXPS Y10, Y14, Y10
	VMAXPS Y11, Y14, Y11
	// +0 turns a -0 into +0, as Go's max(v, 0) gives it.
	VADDPS Y14, Y0, Y0
	VADDPS Y14, Y1, Y1
	VADDPS Y14, Y2, Y2
	VADDPS Y14, Y3, Y3
	VADDPS Y14, Y4, Y4
	VADDPS Y14, Y5, Y5
	VADDPS Y14, Y6, Y6
	VADDPS Y14, Y7, Y7
	VADDPS Y14, Y8, Y8
	VADDPS Y14, Y9, Y9
	VADDPS Y14, Y10, Y10
	VADDPS Y14, Y11, Y11

estore:
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ DX, DI
	VMOVUPS Y2, (DI)
	VMOVUPS Y3, 32(DI)
	ADDQ DX, DI
	VMOVUPS Y4, (DI)
	VMOVUPS Y5, 32(DI)
	ADDQ DX, DI
	VMOVUPS Y6, (DI)
	VMOVUPS Y7, 32(DI)
	ADDQ DX, DI
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 32(DI)
	ADDQ DX, DI
	VMOVUPS Y10, (DI)
	VMOVUPS Y11, 32(DI)
	VZEROUPPER
	RET
