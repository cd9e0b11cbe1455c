//go:build amd64 && !purego

#include "textflag.h"

// BT6 computes Bᵀ of six vectors (Y0-Y5, one per input row or column, 8
// tiles per vector) into t0-t5 = Y8, Y10, Y11, Y6, Y7, Y9, with Y12 = 4
// and Y13 = 5 (winoInputTransform's formulas).
#define BT6 \
	VADDPS Y2, Y1, Y6; \
	VSUBPS Y2, Y1, Y7; \
	VSUBPS Y2, Y4, Y8; \
	VSUBPS Y1, Y3, Y9; \
	VADDPS Y4, Y3, Y10; \
	VFNMADD231PS Y12, Y6, Y10; \
	VSUBPS Y3, Y4, Y11; \
	VFMADD231PS Y12, Y7, Y11; \
	VADDPS Y9, Y9, Y9; \
	VADDPS Y9, Y8, Y6; \
	VSUBPS Y9, Y8, Y7; \
	VMOVAPS Y4, Y8; \
	VFMADD231PS Y12, Y0, Y8; \
	VFNMADD231PS Y13, Y2, Y8; \
	VMOVAPS Y5, Y9; \
	VFMADD231PS Y12, Y1, Y9; \
	VFNMADD231PS Y13, Y3, Y9

// GATHER6 loads, for the 8 tiles whose offsets (in floats) are in Y14,
// the input column at AX (one float per row, rows BX bytes apart) into
// Y0-Y5. Y15 is the gather mask, spent by each gather.
#define GATHER6 \
	VPCMPEQD Y15, Y15, Y15; \
	VGATHERDPS Y15, (AX)(Y14*4), Y0; \
	LEAQ (AX)(BX*1), R10; \
	VPCMPEQD Y15, Y15, Y15; \
	VGATHERDPS Y15, (R10)(Y14*4), Y1; \
	LEAQ (AX)(BX*2), R10; \
	VPCMPEQD Y15, Y15, Y15; \
	VGATHERDPS Y15, (R10)(Y14*4), Y2; \
	LEAQ (R10)(BX*1), R10; \
	VPCMPEQD Y15, Y15, Y15; \
	VGATHERDPS Y15, (R10)(Y14*4), Y3; \
	LEAQ (AX)(BX*4), R10; \
	VPCMPEQD Y15, Y15, Y15; \
	VGATHERDPS Y15, (R10)(Y14*4), Y4; \
	LEAQ (R10)(BX*1), R10; \
	VPCMPEQD Y15, Y15, Y15; \
	VGATHERDPS Y15, (R10)(Y14*4), Y5

// COLUMN transforms input column s (AX) of 8 tiles and stores t0-t5 into
// slots i*6+s (R9 is slot s; R13 is six slots), then moves AX and R9 to
// column s+1.
#define COLUMN \
	GATHER6; \
	BT6; \
	VMOVUPS Y8, (R9); \
	VMOVUPS Y10, (R9)(R13*1); \
	VMOVUPS Y11, (R9)(R13*2); \
	LEAQ (R9)(R13*2), R10; \
	VMOVUPS Y6, (R10)(R13*1); \
	VMOVUPS Y7, (R10)(R13*2); \
	LEAQ (R10)(R13*2), R10; \
	VMOVUPS Y9, (R10)(R13*1); \
	ADDQ $4, AX; \
	ADDQ R8, R9

// ROW transforms the six slots of row i (R9 is slot i*6; R8 is one slot)
// in place, then moves R9 to row i+1.
#define ROW \
	VMOVUPS (R9), Y0; \
	VMOVUPS (R9)(R8*1), Y1; \
	VMOVUPS (R9)(R8*2), Y2; \
	LEAQ (R9)(R8*2), R10; \
	VMOVUPS (R10)(R8*1), Y3; \
	VMOVUPS (R10)(R8*2), Y4; \
	LEAQ (R10)(R8*2), R11; \
	VMOVUPS (R11)(R8*1), Y5; \
	BT6; \
	VMOVUPS Y8, (R9); \
	VMOVUPS Y10, (R9)(R8*1); \
	VMOVUPS Y11, (R9)(R8*2); \
	VMOVUPS Y6, (R10)(R8*1); \
	VMOVUPS Y7, (R10)(R8*2); \
	VMOVUPS Y9, (R11)(R8*1); \
	ADDQ R13, R9

// func winoInputAVX(src *float32, wp int, idx *int32, groups int, dst *float32, ds int)
//
// For groups of 8 tiles, the 6x6 blocks of src at offsets idx (rows wp
// floats apart), writes V = Bᵀ d B: element ξ of tile j of group g to
// dst[ξ*ds + 8g + j].
TEXT ·winoInputAVX(SB), NOSPLIT, $0-48
	MOVQ src+0(FP), SI
	MOVQ wp+8(FP), BX
	SHLQ $2, BX
	MOVQ idx+16(FP), DX
	MOVQ groups+24(FP), CX
	MOVQ dst+32(FP), DI
	MOVQ ds+40(FP), R8
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R13
	SHLQ $1, R13
	MOVL $0x40800000, R10 // 4.0
	MOVL R10, X12
	VBROADCASTSS X12, Y12
	MOVL $0x40a00000, R10 // 5.0
	MOVL R10, X13
	VBROADCASTSS X13, Y13
	TESTQ CX, CX
	JEQ done

group:
	VMOVDQU (DX), Y14
	MOVQ SI, AX
	MOVQ DI, R9
	COLUMN
	COLUMN
	COLUMN
	COLUMN
	COLUMN
	COLUMN
	MOVQ DI, R9
	ROW
	ROW
	ROW
	ROW
	ROW
	ROW
	ADDQ $32, DI
	ADDQ $32, DX
	DECQ CX
	JNE group

done:
	VZEROUPPER
	RET

// AT4 computes Aᵀ of six vectors Y0-Y5 into y0-y3 = Y8, Y6, Y9, Y10, with
// Y13 = 4 and Y14 = 8 (winoOutputTransform's formulas).
#define AT4 \
	VADDPS Y2, Y1, Y10; \
	VSUBPS Y2, Y1, Y11; \
	VADDPS Y4, Y3, Y6; \
	VSUBPS Y4, Y3, Y7; \
	VADDPS Y10, Y0, Y8; \
	VADDPS Y6, Y8, Y8; \
	VMOVAPS Y10, Y9; \
	VFMADD231PS Y13, Y6, Y9; \
	VADDPS Y7, Y11, Y6; \
	VADDPS Y7, Y6, Y6; \
	VADDPS Y5, Y11, Y10; \
	VFMADD231PS Y14, Y7, Y10

// OCOLUMN transforms column j of the 6x6 slots (R9 is slot j; R13 is six
// slots) into rows 0-3 of it, in place, then moves R9 to column j+1.
#define OCOLUMN \
	VMOVUPS (R9), Y0; \
	VMOVUPS (R9)(R13*1), Y1; \
	VMOVUPS (R9)(R13*2), Y2; \
	LEAQ (R9)(R13*2), R10; \
	VMOVUPS (R10)(R13*1), Y3; \
	VMOVUPS (R10)(R13*2), Y4; \
	LEAQ (R10)(R13*2), R11; \
	VMOVUPS (R11)(R13*1), Y5; \
	AT4; \
	VMOVUPS Y8, (R9); \
	VMOVUPS Y6, (R9)(R13*1); \
	VMOVUPS Y9, (R9)(R13*2); \
	VMOVUPS Y10, (R10)(R13*1); \
	ADDQ R8, R9

// OROW transforms row i of the slots (R9 is slot i*6; R8 is one slot) and
// stores y[i][0..3] to the stage (R12 is stage row i*4; DX is one stage
// row), then moves R9 and R12 to row i+1.
#define OROW \
	VMOVUPS (R9), Y0; \
	VMOVUPS (R9)(R8*1), Y1; \
	VMOVUPS (R9)(R8*2), Y2; \
	LEAQ (R9)(R8*2), R10; \
	VMOVUPS (R10)(R8*1), Y3; \
	VMOVUPS (R10)(R8*2), Y4; \
	LEAQ (R10)(R8*2), R11; \
	VMOVUPS (R11)(R8*1), Y5; \
	AT4; \
	VMOVUPS Y8, (R12); \
	VMOVUPS Y6, (R12)(DX*1); \
	VMOVUPS Y9, (R12)(DX*2); \
	LEAQ (R12)(DX*2), R10; \
	VMOVUPS Y10, (R10)(DX*1); \
	LEAQ (R12)(DX*4), R12; \
	ADDQ R13, R9

// func winoOutputAVX(m *float32, ms int, groups int, stage *float32, ss int)
//
// For groups of 8 tiles of the 6x6 products m (element ξ of tile j of
// group g at m[ξ*ms + 8g + j]; overwritten), writes Y = Aᵀ m A: element
// (r, s) of tile j of group g to stage[(r*4+s)*ss + 8g + j].
TEXT ·winoOutputAVX(SB), NOSPLIT, $0-40
	MOVQ m+0(FP), DI
	MOVQ ms+8(FP), R8
	SHLQ $2, R8
	MOVQ groups+16(FP), CX
	MOVQ stage+24(FP), SI
	MOVQ ss+32(FP), DX
	SHLQ $2, DX
	LEAQ (R8)(R8*2), R13
	SHLQ $1, R13
	MOVL $0x40800000, R10 // 4.0
	MOVL R10, X13
	VBROADCASTSS X13, Y13
	MOVL $0x41000000, R10 // 8.0
	MOVL R10, X14
	VBROADCASTSS X14, Y14
	TESTQ CX, CX
	JEQ odone

ogroup:
	MOVQ DI, R9
	OCOLUMN
	OCOLUMN
	OCOLUMN
	OCOLUMN
	OCOLUMN
	OCOLUMN
	MOVQ DI, R9
	MOVQ SI, R12
	OROW
	OROW
	OROW
	OROW
	ADDQ $32, DI
	ADDQ $32, SI
	DECQ CX
	JNE ogroup

odone:
	VZEROUPPER
	RET
