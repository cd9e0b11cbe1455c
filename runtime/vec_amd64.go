//go:build amd64 && !purego

package runtime

import "golang.org/x/sys/cpu"

// Vector loops over float32 slices (vec_amd64.s), 8 elements at a time;
// the Go wrappers set below do the whole groups of 8 and leave the rest
// to their callers.
//
//go:noescape
func vmaxAVX(n int, dst, x, y *float32)

//go:noescape
func reluAVX(n int, dst, x *float32)

//go:noescape
func reluGradAVX(n int, dst, grad, y *float32)

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
	reluF32 = func(dst, x, _ []float32) {
		n := len(dst) &^ 7
		if n == 0 {
			return
		}
		_ = x[n-1]
		reluAVX(n, &dst[0], &x[0])
	}
	reluGradF32 = func(dst, g, y []float32) {
		n := len(dst) &^ 7
		if n == 0 {
			return
		}
		_, _ = g[n-1], y[n-1]
		reluGradAVX(n, &dst[0], &g[0], &y[0])
	}
}
