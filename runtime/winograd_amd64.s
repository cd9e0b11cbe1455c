//go:build amd64 && !purego

#include "textflag.h"

// Winograd F(2x2, 3x3)'s transforms, 8 tiles at a time: one tile per lane
// of a ymm register (see winograd.go).

// GATHERROW(off) loads row r of the 8 tiles' 4x4 blocks (R10 is the row
// at offset 0; Y14 the tiles' offsets in floats) into Y0-Y3. Y15 is the
// gather mask, spent by each gather.
#define GATHERROW \
	VPCMPEQD Y15, Y15, Y15; \
	VGATHERDPS Y15, (R10)(Y14*4), Y0; \
	VPCMPEQD Y15, Y15, Y15; \
	VGATHERDPS Y15, 4(R10)(Y14*4), Y1; \
	VPCMPEQD Y15, Y15, Y15; \
	VGATHERDPS Y15, 8(R10)(Y14*4), Y2; \
	VPCMPEQD Y15, Y15, Y15; \
	VGATHERDPS Y15, 12(R10)(Y14*4), Y3

// LOADROW loads the same as GATHERROW when the 8 tiles are consecutive
// in one row of tiles (offsets 2 apart), without gathers (slow on AMD):
// tile j's column q is element 2j+q of the row, so columns 0 and 1 are
// the even and odd elements of the row's first 16, columns 2 and 3 those
// of the 16 from element 2. VSHUFPS picks them within 128-bit lanes;
// VPERMPD puts the lanes' halves in order.
#define LOADROW \
	VMOVUPS (R10), Y12; \
	VMOVUPS 32(R10), Y13; \
	VSHUFPS $0x88, Y13, Y12, Y0; \
	VSHUFPS $0xDD, Y13, Y12, Y1; \
	VMOVUPS 8(R10), Y12; \
	VMOVUPS 40(R10), Y13; \
	VSHUFPS $0x88, Y13, Y12, Y2; \
	VSHUFPS $0xDD, Y13, Y12, Y3; \
	VPERMPD $0xD8, Y0, Y0; \
	VPERMPD $0xD8, Y1, Y1; \
	VPERMPD $0xD8, Y2, Y2; \
	VPERMPD $0xD8, Y3, Y3

// BT(o0, o1, o2, o3) computes Bᵀ of Y0-Y3 (d0-d2, d1+d2, d2-d1, d1-d3)
// into o0-o3: a row of the block times B.
#define BT(o0, o1, o2, o3) \
	VSUBPS Y2, Y0, o0; \
	VADDPS Y2, Y1, o1; \
	VSUBPS Y1, Y2, o2; \
	VSUBPS Y3, Y1, o3

// SUB4 and ADD4 set d0-d3 to a0-a3 minus, or plus, b0-b3.
#define SUB4(a0, a1, a2, a3, b0, b1, b2, b3, d0, d1, d2, d3) \
	VSUBPS b0, a0, d0; \
	VSUBPS b1, a1, d1; \
	VSUBPS b2, a2, d2; \
	VSUBPS b3, a3, d3

#define ADD4(a0, a1, a2, a3, b0, b1, b2, b3, d0, d1, d2, d3) \
	VADDPS b0, a0, d0; \
	VADDPS b1, a1, d1; \
	VADDPS b2, a2, d2; \
	VADDPS b3, a3, d3

// STORE4 stores four vectors to the next four slots (R9, advanced by R8).
#define STORE4(a, b, c, d) \
	VMOVUPS a, (R9); \
	ADDQ R8, R9; \
	VMOVUPS b, (R9); \
	ADDQ R8, R9; \
	VMOVUPS c, (R9); \
	ADDQ R8, R9; \
	VMOVUPS d, (R9); \
	ADDQ R8, R9

// func winoInputAVX(src *float32, wp int, idx *int32, groups int, dst *float32, ds int)
//
// For groups of 8 tiles, the 4x4 blocks of src at offsets idx (rows wp
// floats apart), writes V = Bᵀ d B: element ξ of tile j of group g to
// dst[ξ*ds + 8g + j]. With u_r = row r of d times B, V's rows are u0-u2,
// u1+u2, u2-u1 and u1-u3, made in that order so that at most three u's
// are held in registers and each slot is written once, in order.
TEXT ·winoInputAVX(SB), NOSPLIT, $0-48
	MOVQ src+0(FP), SI
	MOVQ wp+8(FP), BX
	SHLQ $2, BX
	MOVQ idx+16(FP), DX
	MOVQ groups+24(FP), CX
	MOVQ dst+32(FP), DI
	MOVQ ds+40(FP), R8
	SHLQ $2, R8
	TESTQ CX, CX
	JEQ done

group:
	MOVLQSX (DX), R13
	MOVLQSX 28(DX), AX
	SUBQ R13, AX
	CMPQ AX, $14
	JNE gathered
	// One row of tiles: R10 walks the rows of the first tile's block.
	LEAQ (SI)(R13*4), R13
	MOVQ DI, R9
	MOVQ R13, R10 // row 0: u0 in Y4-Y7
	LOADROW
	BT(Y4, Y5, Y6, Y7)
	LEAQ (R13)(BX*2), R10 // row 2: u2 in Y8-Y11
	LOADROW
	BT(Y8, Y9, Y10, Y11)
	SUB4(Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y4, Y5, Y6, Y7) // u0 - u2
	STORE4(Y4, Y5, Y6, Y7)
	LEAQ (R13)(BX*1), R10 // row 1: u1 in Y4-Y7
	LOADROW
	BT(Y4, Y5, Y6, Y7)
	ADD4(Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y0, Y1, Y2, Y3) // u1 + u2
	STORE4(Y0, Y1, Y2, Y3)
	SUB4(Y8, Y9, Y10, Y11, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11) // u2 - u1
	STORE4(Y8, Y9, Y10, Y11)
	LEAQ (R10)(BX*2), R10 // row 3: u3 in Y8-Y11
	LOADROW
	BT(Y8, Y9, Y10, Y11)
	SUB4(Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y4, Y5, Y6, Y7) // u1 - u3
	STORE4(Y4, Y5, Y6, Y7)
	JMP next

gathered:
	VMOVDQU (DX), Y14
	MOVQ DI, R9
	MOVQ SI, R10 // row 0: u0 in Y4-Y7
	GATHERROW
	BT(Y4, Y5, Y6, Y7)
	LEAQ (SI)(BX*2), R10 // row 2: u2 in Y8-Y11
	GATHERROW
	BT(Y8, Y9, Y10, Y11)
	SUB4(Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y4, Y5, Y6, Y7) // u0 - u2
	STORE4(Y4, Y5, Y6, Y7)
	LEAQ (SI)(BX*1), R10 // row 1: u1 in Y4-Y7
	GATHERROW
	BT(Y4, Y5, Y6, Y7)
	ADD4(Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y0, Y1, Y2, Y3) // u1 + u2
	STORE4(Y0, Y1, Y2, Y3)
	SUB4(Y8, Y9, Y10, Y11, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11) // u2 - u1
	STORE4(Y8, Y9, Y10, Y11)
	LEAQ (R10)(BX*2), R10 // row 3: u3 in Y8-Y11
	GATHERROW
	BT(Y8, Y9, Y10, Y11)
	SUB4(Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y4, Y5, Y6, Y7) // u1 - u3
	STORE4(Y4, Y5, Y6, Y7)

next:
	ADDQ $32, DI
	ADDQ $32, DX
	DECQ CX
	JNE group

done:
	VZEROUPPER
	RET

// OCOLUMN(t0, t1) computes Aᵀ of column j of the 4x4 slots (R9 is slot j;
// R13 is four slots) into t0, t1, then moves R9 to column j+1.
#define OCOLUMN(t0, t1) \
	VMOVUPS (R9), Y0; \
	VMOVUPS (R9)(R13*1), Y1; \
	VMOVUPS (R9)(R13*2), Y2; \
	LEAQ (R9)(R13*2), R10; \
	VMOVUPS (R10)(R13*1), Y3; \
	VADDPS Y1, Y0, t0; \
	VADDPS Y2, t0, t0; \
	VSUBPS Y2, Y1, t1; \
	VSUBPS Y3, t1, t1; \
	ADDQ R8, R9

// OROW(a, b, c, d) computes (Aᵀ m) A of one row, held in a-d, and stores
// y[i][0..1] to the stage (R12 is stage row i*2; DX is one stage row), then
// moves R12 to row i+1.
#define OROW(a, b, c, d) \
	VADDPS b, a, Y4; \
	VADDPS c, Y4, Y4; \
	VSUBPS c, b, Y5; \
	VSUBPS d, Y5, Y5; \
	VMOVUPS Y4, (R12); \
	VMOVUPS Y5, (R12)(DX*1); \
	LEAQ (R12)(DX*2), R12

// func winoOutputAVX(m *float32, ms int, groups int, stage *float32, ss int)
//
// For groups of 8 tiles of the 4x4 products m (element ξ of tile j of
// group g at m[ξ*ms + 8g + j]), writes Y = Aᵀ m A: element (r, s) of tile
// j of group g to stage[(r*2+s)*ss + 8g + j]. The 2x4 intermediate stays
// in Y8-Y15.
TEXT ·winoOutputAVX(SB), NOSPLIT, $0-40
	MOVQ m+0(FP), DI
	MOVQ ms+8(FP), R8
	SHLQ $2, R8
	MOVQ groups+16(FP), CX
	MOVQ stage+24(FP), SI
	MOVQ ss+32(FP), DX
	SHLQ $2, DX
	LEAQ (R8*4), R13
	TESTQ CX, CX
	JEQ odone

ogroup:
	MOVQ DI, R9
	OCOLUMN(Y8, Y12)
	OCOLUMN(Y9, Y13)
	OCOLUMN(Y10, Y14)
	OCOLUMN(Y11, Y15)
	MOVQ SI, R12
	OROW(Y8, Y9, Y10, Y11)
	OROW(Y12, Y13, Y14, Y15)
	ADDQ $32, DI
	ADDQ $32, SI
	DECQ CX
	JNE ogroup

odone:
	VZEROUPPER
	RET

// DEINT(off, e, o) loads the 16 floats at off(R10) and puts the even ones
// in e and the odd ones in o, in order (see LOADROW).
#define DEINT(off, e, o) \
	VMOVUPS off(R10), Y12; \
	VMOVUPS off+32(R10), Y13; \
	VSHUFPS $0x88, Y13, Y12, e; \
	VSHUFPS $0xDD, Y13, Y12, o; \
	VPERMPD $0xD8, e, e; \
	VPERMPD $0xD8, o, o

// STOREROW(a, b) stores a, a+b, a-b and -b (Y15 holds the sign bits) to
// the next four slots (R9, advanced by R8).
#define STOREROW(a, b) \
	VMOVUPS a, (R9); \
	ADDQ R8, R9; \
	VADDPS b, a, Y10; \
	VMOVUPS Y10, (R9); \
	ADDQ R8, R9; \
	VSUBPS b, a, Y10; \
	VMOVUPS Y10, (R9); \
	ADDQ R8, R9; \
	VXORPS Y15, b, Y10; \
	VMOVUPS Y10, (R9); \
	ADDQ R8, R9

// func winoGradTilesAVX(src *float32, ow int, groups int, dst *float32, stride int)
//
// For groups of 8 tiles along a row of output gradient tiles (src is the
// first tile's top left, rows ow floats apart; every tile whole), writes
// the tiles' A g Aᵀ: element ξ of tile j of group g to dst[ξ*stride + 8g
// + j] (see winograd.gradTiles).
TEXT ·winoGradTilesAVX(SB), NOSPLIT, $0-40
	MOVQ src+0(FP), SI
	MOVQ ow+8(FP), BX
	SHLQ $2, BX
	MOVQ groups+16(FP), CX
	MOVQ dst+24(FP), DI
	MOVQ stride+32(FP), R8
	SHLQ $2, R8
	VPCMPEQD Y15, Y15, Y15
	VPSLLD $31, Y15, Y15
	TESTQ CX, CX
	JEQ gtdone

gtgroup:
	MOVQ SI, R10
	DEINT(0, Y0, Y1) // g00, g01
	ADDQ BX, R10
	DEINT(0, Y2, Y3) // g10, g11
	MOVQ DI, R9
	STOREROW(Y0, Y1)
	VADDPS Y2, Y0, Y4
	VADDPS Y3, Y1, Y5
	STOREROW(Y4, Y5)
	VSUBPS Y2, Y0, Y4
	VSUBPS Y3, Y1, Y5
	STOREROW(Y4, Y5)
	VXORPS Y15, Y2, Y4
	VXORPS Y15, Y3, Y5
	STOREROW(Y4, Y5)
	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNE gtgroup

gtdone:
	VZEROUPPER
	RET

// TRANSPOSE8 transposes the 8x8 matrix whose rows are r0-r7 into t0-t7
// (t_j is column j), destroying r0-r7.
#define TRANSPOSE8(r0, r1, r2, r3, r4, r5, r6, r7, t0, t1, t2, t3, t4, t5, t6, t7) \
	VUNPCKLPS r1, r0, t0; \
	VUNPCKHPS r1, r0, t1; \
	VUNPCKLPS r3, r2, t2; \
	VUNPCKHPS r3, r2, t3; \
	VUNPCKLPS r5, r4, t4; \
	VUNPCKHPS r5, r4, t5; \
	VUNPCKLPS r7, r6, t6; \
	VUNPCKHPS r7, r6, t7; \
	VSHUFPS $0x44, t2, t0, r0; \
	VSHUFPS $0xEE, t2, t0, r1; \
	VSHUFPS $0x44, t3, t1, r2; \
	VSHUFPS $0xEE, t3, t1, r3; \
	VSHUFPS $0x44, t6, t4, r4; \
	VSHUFPS $0xEE, t6, t4, r5; \
	VSHUFPS $0x44, t7, t5, r6; \
	VSHUFPS $0xEE, t7, t5, r7; \
	VPERM2F128 $0x20, r4, r0, t0; \
	VPERM2F128 $0x20, r5, r1, t1; \
	VPERM2F128 $0x20, r6, r2, t2; \
	VPERM2F128 $0x20, r7, r3, t3; \
	VPERM2F128 $0x31, r4, r0, t4; \
	VPERM2F128 $0x31, r5, r1, t5; \
	VPERM2F128 $0x31, r6, r2, t6; \
	VPERM2F128 $0x31, r7, r3, t7

// FSLOT(v, xi) converts the 4 doubles in v to float32 (in X11) and stores
// them to element xi's slot: R12 (u, plus 16 bytes for the upper 4
// kernels) plus rowOf[xi] (DX) floats.
#define FSLOT(v, xi) \
	VCVTPD2PSY v, X11; \
	MOVQ (8*xi)(DX), R9; \
	VMOVUPS X11, (R12)(R9*4)

// FROW(b0, b1, b2, i) stores row i of (G g) Gᵀ from row i of G g, held in
// b0-b2: b0, (b0 + b2 + b1)/2, (b0 + b2 - b1)/2, b2 (Y1 holds ½).
#define FROW(b0, b1, b2, i) \
	FSLOT(b0, (4*i)); \
	VADDPD b2, b0, Y12; \
	VADDPD b1, Y12, Y13; \
	VMULPD Y1, Y13, Y13; \
	FSLOT(Y13, (4*i+1)); \
	VSUBPD b1, Y12, Y13; \
	VMULPD Y1, Y13, Y13; \
	FSLOT(Y13, (4*i+2)); \
	FSLOT(b2, (4*i+3))

// FHALF(off) transforms the 4 kernels whose elements are at off(SP) in
// the stack's [9][8]float32 (element i of kernel j at 32i + 4j), in
// float64: G g's columns, then its rows times Gᵀ.
#define FHALF(off) \
	VCVTPS2PD (off+0)(SP), Y8; \
	VCVTPS2PD (off+32)(SP), Y9; \
	VCVTPS2PD (off+64)(SP), Y10; \
	VCVTPS2PD (off+192)(SP), Y14; \
	VCVTPS2PD (off+224)(SP), Y15; \
	VCVTPS2PD (off+256)(SP), Y0; \
	VCVTPS2PD (off+96)(SP), Y11; \
	VADDPD Y14, Y8, Y2; \
	VADDPD Y11, Y2, Y3; \
	VMULPD Y1, Y3, Y3; \
	VSUBPD Y11, Y2, Y2; \
	VMULPD Y1, Y2, Y2; \
	VCVTPS2PD (off+128)(SP), Y11; \
	VADDPD Y15, Y9, Y4; \
	VADDPD Y11, Y4, Y5; \
	VMULPD Y1, Y5, Y5; \
	VSUBPD Y11, Y4, Y4; \
	VMULPD Y1, Y4, Y4; \
	VCVTPS2PD (off+160)(SP), Y11; \
	VADDPD Y0, Y10, Y6; \
	VADDPD Y11, Y6, Y7; \
	VMULPD Y1, Y7, Y7; \
	VSUBPD Y11, Y6, Y6; \
	VMULPD Y1, Y6, Y6; \
	FROW(Y8, Y9, Y10, 0); \
	FROW(Y3, Y5, Y7, 1); \
	FROW(Y2, Y4, Y6, 2); \
	FROW(Y14, Y15, Y0, 3)

// func winoFilterAVX(w *float32, step int, groups int, u *float32, rowOf *[16]int)
//
// For groups of 8 3x3 kernels (kernel j of group g at w[(8g+j)*step]),
// writes U = G g Gᵀ: element ξ of kernel j of group g to u[rowOf[ξ] + 8g +
// j], computed in float64 in winogradFilter's order of operations and
// rounded once. The kernels' first 8 elements are loaded as rows and
// transposed, so that element i of the 8 kernels is one register; the
// ninth is gathered with inserts. The 9 registers go to the stack, to be
// read back 4 kernels at a time as doubles.
TEXT ·winoFilterAVX(SB), NOSPLIT, $288-40
	MOVQ w+0(FP), SI
	MOVQ step+8(FP), BX
	SHLQ $2, BX
	LEAQ (BX)(BX*2), R11
	MOVQ groups+16(FP), CX
	MOVQ u+24(FP), DI
	MOVQ rowOf+32(FP), DX
	MOVQ $0x3fe0000000000000, AX // ½
	TESTQ CX, CX
	JEQ fdone

fgroup:
	LEAQ (SI)(BX*4), R8
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(BX*1), Y1
	VMOVUPS (SI)(BX*2), Y2
	VMOVUPS (SI)(R11*1), Y3
	VMOVUPS (R8), Y4
	VMOVUPS (R8)(BX*1), Y5
	VMOVUPS (R8)(BX*2), Y6
	VMOVUPS (R8)(R11*1), Y7
	// g0-g7 in Y8-Y15, to the stack.
	TRANSPOSE8(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15)
	VMOVUPS Y8, 0(SP)
	VMOVUPS Y9, 32(SP)
	VMOVUPS Y10, 64(SP)
	VMOVUPS Y11, 96(SP)
	VMOVUPS Y12, 128(SP)
	VMOVUPS Y13, 160(SP)
	VMOVUPS Y14, 192(SP)
	VMOVUPS Y15, 224(SP)
	// g8.
	VMOVSS 32(SI), X0
	VINSERTPS $0x10, 32(SI)(BX*1), X0, X0
	VINSERTPS $0x20, 32(SI)(BX*2), X0, X0
	VINSERTPS $0x30, 32(SI)(R11*1), X0, X0
	VMOVSS 32(R8), X1
	VINSERTPS $0x10, 32(R8)(BX*1), X1, X1
	VINSERTPS $0x20, 32(R8)(BX*2), X1, X1
	VINSERTPS $0x30, 32(R8)(R11*1), X1, X1
	VMOVUPS X0, 256(SP)
	VMOVUPS X1, 272(SP)
	VMOVQ AX, X1
	VBROADCASTSD X1, Y1
	MOVQ DI, R12
	FHALF(0)
	LEAQ 16(DI), R12
	FHALF(16)
	LEAQ (SI)(BX*8), SI
	ADDQ $32, DI
	DECQ CX
	JNE fgroup

fdone:
	VZEROUPPER
	RET

// GCOL(m0, m4, m8, m12, t0, t1, t2) computes column j of Gᵀ m from the
// sums m_j, m_{4+j}, m_{8+j} and m_{12+j} at m0-m12: s = (m_{4+j} +
// m_{8+j})/2; t0 = m_j + s, t1 = (m_{4+j} - m_{8+j})/2, t2 = s + m_{12+j}
// (Y15 holds ½).
#define GCOL(m0, m4, m8, m12, t0, t1, t2) \
	VMOVUPS m4, Y12; \
	VMOVUPS m8, Y13; \
	VADDPS Y13, Y12, Y14; \
	VMULPS Y15, Y14, Y14; \
	VSUBPS Y13, Y12, t1; \
	VMULPS Y15, t1, t1; \
	VADDPS m0, Y14, t0; \
	VADDPS m12, Y14, t2

// GROW(a, b, c, d) computes row i of (Gᵀ m) G from row i of Gᵀ m, held in
// a-d, into a-c: a + s, (b - c)/2, s + d with s = (b + c)/2.
#define GROW(a, b, c, d) \
	VADDPS c, b, Y12; \
	VMULPS Y15, Y12, Y12; \
	VSUBPS c, b, b; \
	VMULPS Y15, b, b; \
	VADDPS Y12, a, a; \
	VADDPS d, Y12, c

// GADD(j, t) adds kernel j's first 8 elements, held in t, into dw (DI).
#define GADD(j, t) \
	VADDPS (36*j)(DI), t, t; \
	VMOVUPS t, (36*j)(DI)

// GADD8(j) adds kernel j's ninth element, lane j of the stack slot, into
// dw.
#define GADD8(j) \
	VMOVSS (4*j)(SP), X3; \
	VADDSS (36*j+32)(DI), X3, X3; \
	VMOVSS X3, (36*j+32)(DI)

// func winoGradOutAVX(acc *float32, stride int, groups int, dw *float32)
//
// For groups of 8 (k, c) pairs of the 4x4 sums m (element ξ of pair j of
// group g at acc[ξ*stride + 8g + j]), adds Gᵀ m G into dw[(8g+j)*9:], in
// winograd.gradOutputs's order of operations. The nine results are made
// one register per element and transposed to kernels to be added.
TEXT ·winoGradOutAVX(SB), NOSPLIT, $32-32
	MOVQ acc+0(FP), SI
	MOVQ stride+8(FP), BX
	SHLQ $2, BX
	LEAQ (BX)(BX*2), R11
	MOVQ groups+16(FP), CX
	MOVQ dw+24(FP), DI
	MOVL $0x3f000000, AX // ½
	TESTQ CX, CX
	JEQ gdone

ggroup:
	VMOVD AX, X15
	VBROADCASTSS X15, Y15
	LEAQ (SI)(BX*4), R8
	LEAQ (R8)(BX*4), R9
	LEAQ (R9)(BX*4), R10
	GCOL((SI), (R8), (R9), (R10), Y0, Y4, Y8)
	GCOL((SI)(BX*1), (R8)(BX*1), (R9)(BX*1), (R10)(BX*1), Y1, Y5, Y9)
	GCOL((SI)(BX*2), (R8)(BX*2), (R9)(BX*2), (R10)(BX*2), Y2, Y6, Y10)
	GCOL((SI)(R11*1), (R8)(R11*1), (R9)(R11*1), (R10)(R11*1), Y3, Y7, Y11)
	GROW(Y0, Y1, Y2, Y3)
	GROW(Y4, Y5, Y6, Y7)
	GROW(Y8, Y9, Y10, Y11)
	// Elements 0-8 are in Y0, Y1, Y2, Y4, Y5, Y6, Y8, Y9, Y10.
	VMOVUPS Y10, (SP)
	TRANSPOSE8(Y0, Y1, Y2, Y4, Y5, Y6, Y8, Y9, Y3, Y7, Y10, Y11, Y12, Y13, Y14, Y15)
	GADD(0, Y3)
	GADD(1, Y7)
	GADD(2, Y10)
	GADD(3, Y11)
	GADD(4, Y12)
	GADD(5, Y13)
	GADD(6, Y14)
	GADD(7, Y15)
	GADD8(0)
	GADD8(1)
	GADD8(2)
	GADD8(3)
	GADD8(4)
	GADD8(5)
	GADD8(6)
	GADD8(7)
	ADDQ $32, SI
	ADDQ $288, DI
	DECQ CX
	JNE ggroup

gdone:
	VZEROUPPER
	RET
