package runtime

import (
	"math"
	"math/rand"
	"slices"
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

// evens, a stride of 2's gather, gives every even element, in groups of 8
// and the rest, from a source of exactly the elements it needs (2n-1:
// the vectorised loop must not read past it) or one more.
func TestEvens(t *testing.T) {
	r := rand.New(rand.NewSource(12))
	for n := 1; n < 60; n++ {
		for _, extra := range []int{0, 1} {
			src := specialF32(r, 2*n-1+extra)
			got := make([]float32, n+1)
			got[n] = 7
			evens(got[:n], src)
			for i := range n {
				if math.Float32bits(got[i]) != math.Float32bits(src[2*i]) {
					t.Fatalf("n %d, src %d: dst[%d] = %v, want %v", n, len(src), i, got[i], src[2*i])
				}
			}
			if got[n] != 7 {
				t.Fatalf("n %d: wrote past dst", n)
			}
		}
	}
}

// BatchNormalization's vectorised loops: the sums agree with a plain
// float64 sum to float64 rounding (they add in another order), and the
// affine map with its Relu gives Go's result to the bit.
func TestBatchNormLoops(t *testing.T) {
	r := rand.New(rand.NewSource(12))
	for n := 0; n < 100; n++ {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64()*3 + 1)
		}
		var want, wantQ float64
		for _, v := range x {
			want += float64(v)
		}
		mu := want / float64(max(n, 1))
		for _, v := range x {
			wantQ += (float64(v) - mu) * (float64(v) - mu)
		}
		if got := sumOf(x); math.Abs(got-want) > 1e-12*(1+math.Abs(want)) {
			t.Fatalf("n %d: sum %v, want %v", n, got, want)
		}
		if got := sqDevOf(x, mu); math.Abs(got-wantQ) > 1e-12*(1+wantQ) {
			t.Fatalf("n %d: squared deviations %v, want %v", n, got, wantQ)
		}
		special := specialF32(r, n)
		for _, relu := range []bool{false, true} {
			got := make([]float32, n)
			a, c := float32(r.NormFloat64()), float32(r.NormFloat64())
			j := 0
			if affineF32 != nil {
				j = n &^ 7
				affineF32(got, special, a, c, relu)
			}
			for ; j < n; j++ {
				got[j] = special[j]*a + c
				if relu {
					got[j] = max(got[j], 0)
				}
			}
			for i, v := range special {
				w := v*a + c
				if relu {
					w = max(w, 0)
				}
				if math.Float32bits(got[i]) != math.Float32bits(w) && !(got[i] != got[i] && w != w) {
					t.Fatalf("n %d relu %v: %v*%v+%v = %v, want %v", n, relu, v, a, c, got[i], w)
				}
			}
		}
	}
}

// The vectorised sums of BatchNormalization's backward pass agree with
// plain float64 sums, masked where a fused Relu's output is not positive,
// and its dx rounds as Go computes it, to the bit.
func TestBatchNormGradLoops(t *testing.T) {
	r := rand.New(rand.NewSource(13))
	for n := 0; n < 90; n++ {
		g, x, y := make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range g {
			g[i], x[i] = float32(r.NormFloat64()), float32(r.NormFloat64()*2+0.5)
			y[i] = float32(max(r.NormFloat64(), 0))
		}
		shift := 0.3
		for _, masked := range []bool{false, true} {
			var want [4]float64
			for i := range x {
				gi := float64(g[i])
				if masked && !(y[i] > 0) {
					gi = 0
				}
				d := float64(x[i]) - shift
				want[0] += gi
				want[1] += gi * d
				want[2] += d * d
				want[3] += d
			}
			var got [4]float64
			if masked {
				got[0], got[1], got[2], got[3] = maskedGradSums(g, y, x, shift)
			} else {
				got[0], got[1], got[2], got[3] = gradSums(g, x, shift)
			}
			for k := range got {
				if math.Abs(got[k]-want[k]) > 1e-12*(1+math.Abs(want[k])) {
					t.Fatalf("n %d masked %v: sum %d is %v, want %v", n, masked, k, got[k], want[k])
				}
			}
			a, c1, c0 := r.NormFloat64(), r.NormFloat64(), r.NormFloat64()
			dx := make([]float32, n)
			var ym []float32
			if masked {
				ym = y
			}
			j := 0
			if bnDxF32 != nil {
				j = n &^ 3
				bnDxF32(dx, g, ym, x, a, c1, c0)
			}
			for i := range dx {
				gi := g[i]
				if masked && !(y[i] > 0) {
					gi = 0
				}
				w := float32(a*float64(gi) + c1*float64(x[i]) + c0)
				if i < j && math.Float32bits(dx[i]) != math.Float32bits(w) {
					t.Fatalf("n %d masked %v: dx[%d] = %v, want %v", n, masked, i, dx[i], w)
				}
			}
		}
	}
}

// passPositive (vectorised for float32) passes g where y, a Relu's output
// (+0, positive, or NaN), is positive, setting or adding.
func TestPassPositive(t *testing.T) {
	r := rand.New(rand.NewSource(14))
	for n := 0; n < 40; n++ {
		g, y := specialF32(r, n), make([]float32, n)
		for i := range y {
			y[i] = max(float32(r.NormFloat64()), 0)
		}
		for _, add := range []bool{false, true} {
			dst := specialF32(r, n)
			before := slices.Clone(dst)
			passPositive(dst, g, y, add)
			for i := range dst {
				m := float32(0)
				if y[i] > 0 {
					m = g[i]
				}
				want := m
				if add {
					want = before[i] + m
				}
				if math.Float32bits(dst[i]) != math.Float32bits(want) && !(dst[i] != dst[i] && want != want) {
					t.Fatalf("n %d add %v: element %d is %v, want %v (g %v, y %v)", n, add, i, dst[i], want, g[i], y[i])
				}
			}
		}
	}
}
