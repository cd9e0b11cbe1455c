//go:build amd64 && !purego

package runtime

import "golang.org/x/sys/cpu"

// vmaxAVX is vmaxF32's AVX loop (pool_amd64.s), 8 elements at a time.
//
//go:noescape
func vmaxAVX(n int, dst, x, y *float32)

func init() {
	if !cpu.X86.HasAVX {
		return
	}
	vmaxF32 = func(dst, x, y []float32) {
		n := len(dst) &^ 7
		if n == 0 {
			return
		}
		_, _ = x[n-1], y[n-1]
		vmaxAVX(n, &dst[0], &x[0], &y[0])
	}
}
