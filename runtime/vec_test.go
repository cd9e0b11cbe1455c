package runtime

import (
	"math"
	"math/rand"
	"testing"
)

// specialF32 returns n values with NaNs of both signs, zeros of both
// signs and infinities among normal ones.
func specialF32(r *rand.Rand, n int) []float32 {
	negNaN := math.Float32frombits(0xffc00000) // x86's default NaN
	special := []float32{float32(math.NaN()), negNaN, 0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1))}
	x := make([]float32, n)
	for i := range x {
		if r.Intn(4) == 0 {
			x[i] = special[r.Intn(len(special))]
		} else {
			x[i] = float32(r.NormFloat64())
		}
	}
	return x
}

// The vectorised Relu, its gradient and the elementwise maximum give Go's
// results to the bit on every length (whole groups of 8 and the rest),
// NaNs, signed zeros and infinities included.
func TestVectorLoops(t *testing.T) {
	r := rand.New(rand.NewSource(8))
	same := func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) || a != a && b != b }
	for n := 0; n < 70; n++ {
		x, y, g := specialF32(r, n), specialF32(r, n), specialF32(r, n)
		got := make([]float32, n)
		relu(got, x)
		for i := range got {
			if want := max(x[i], 0); !same(got[i], want) {
				t.Fatalf("relu(%v) = %v, want %v", x[i], got[i], want)
			}
		}
		reluGrad(got, g, x)
		for i := range got {
			want := float32(0)
			if x[i] > 0 {
				want = g[i]
			}
			if !same(got[i], want) {
				t.Fatalf("reluGrad(%v, %v) = %v, want %v", g[i], x[i], got[i], want)
			}
		}
		maxRows(got, x, y)
		for i := range got {
			want := max(x[i], y[i])
			if x[i] == y[i] || got[i] != got[i] || want != want {
				// Signed zeros may come either way; NaN must be NaN.
				if got[i] != want && !(got[i] != got[i] && want != want) {
					t.Fatalf("max(%v, %v) = %v, want %v", x[i], y[i], got[i], want)
				}
				continue
			}
			if !same(got[i], want) {
				t.Fatalf("max(%v, %v) = %v, want %v", x[i], y[i], got[i], want)
			}
		}
	}
}
