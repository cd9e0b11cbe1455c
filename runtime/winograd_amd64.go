//go:build amd64 && !purego

package runtime

import "golang.org/x/sys/cpu"

// winoInputAVX and winoOutputAVX are winograd's transforms of 8 tiles at
// a time (winograd_amd64.s); see winoInputGroups and winoOutputGroups.
//
//go:noescape
func winoInputAVX(src *float32, wp int, idx *int32, groups int, dst *float32, ds int)

//go:noescape
func winoGradTilesAVX(src *float32, ow int, groups int, dst *float32, stride int)

//go:noescape
func winoOutputAVX(m *float32, ms int, groups int, stage *float32, ss int)

//go:noescape
func winoFilterAVX(w *float32, step int, groups int, u *float32, rowOf *[winoA2]int)

//go:noescape
func winoGradOutAVX(acc *float32, stride int, groups int, dw *float32)

func init() {
	if !cpu.X86.HasAVX2 || !cpu.X86.HasFMA {
		return
	}
	winoInputGroups = func(src []float32, wp int, idx []int32, groups int, dst []float32, ds int) {
		if groups == 0 {
			return
		}
		// The bounds the assembly relies on, checked once per call.
		hi := int32(0)
		for _, o := range idx[:8*groups] {
			if o < 0 {
				panic("winoInputAVX: negative offset")
			}
			hi = max(hi, o)
		}
		_ = src[int(hi)+(winoA-1)*wp+winoA-1]
		_ = dst[(winoA2-1)*ds+8*groups-1]
		winoInputAVX(&src[0], wp, &idx[0], groups, &dst[0], ds)
	}
	winoGradTileGroups = func(src []float32, ow, groups int, dst []float32, stride int) {
		if groups == 0 {
			return
		}
		_ = src[ow+16*groups-1]
		_ = dst[(winoA2-1)*stride+8*groups-1]
		winoGradTilesAVX(&src[0], ow, groups, &dst[0], stride)
	}
	winoOutputGroups = func(m []float32, ms, groups int, stage []float32, ss int) {
		if groups == 0 {
			return
		}
		_ = m[(winoA2-1)*ms+8*groups-1]
		_ = stage[(winoM*winoM-1)*ss+8*groups-1]
		winoOutputAVX(&m[0], ms, groups, &stage[0], ss)
	}
	winoFilterGroups = func(w []float32, step, groups int, u []float32, rowOf *[winoA2]int) {
		if groups == 0 {
			return
		}
		_ = w[(8*groups-1)*step+8]
		for _, r := range rowOf {
			if r < 0 {
				panic("winoFilterAVX: negative offset")
			}
			_ = u[r+8*groups-1]
		}
		winoFilterAVX(&w[0], step, groups, &u[0], rowOf)
	}
	winoGradOutputGroups = func(acc []float32, stride, groups int, dw []float32) {
		if groups == 0 {
			return
		}
		_ = acc[(winoA2-1)*stride+8*groups-1]
		_ = dw[72*groups-1]
		winoGradOutAVX(&acc[0], stride, groups, &dw[0])
	}
}
