//go:build amd64 && !purego

package train

import "golang.org/x/sys/cpu"

//go:noescape
func sgdMomentumAVX(n int, p, grad, buf *float32, wd, mom, damp1, lr float32)

func init() {
	if !cpu.X86.HasAVX {
		return
	}
	sgdMomentumF32 = func(p, grad, buf []float32, wd, mom, damp1, lr float32) {
		n := len(p) &^ 7
		if n == 0 {
			return
		}
		_, _ = grad[n-1], buf[n-1]
		sgdMomentumAVX(n, &p[0], &grad[0], &buf[0], wd, mom, damp1, lr)
	}
}
