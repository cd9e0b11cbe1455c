package runtime

import (
	"fmt"
	"math"
	"math/rand"
	goruntime "runtime"
	"slices"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// sgemmKernels lists the micro-kernels this machine can run: the pure-Go
// fallback always, the assembly one when the CPU supports it.
func sgemmKernels() []*sgemmKernel {
	ks := []*sgemmKernel{sgemmGo4x4}
	if sgemmKern != sgemmGo4x4 {
		ks = append(ks, sgemmKern)
	}
	return ks
}

// sgemmRef is the naive triple loop in float64.
func sgemmRef(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			v := float64(alpha) * s
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
			}
			out[i*n+j] = v
		}
	}
	return out
}

func randF32(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// checkSgemm runs one product with kern and compares it with sgemmRef,
// also checking that C outside the m x n region is untouched.
func checkSgemm(t *testing.T, r *rand.Rand, kern *sgemmKernel, transA, transB bool, m, n, k, pad int, alpha, beta float32) {
	t.Helper()
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	lda, ldb, ldc := ac+pad, bc+pad, n+pad
	// Slices end exactly at the last element used, as gemm's callers pass.
	a := randF32(r, max(0, (ar-1)*lda+ac))
	b := randF32(r, max(0, (br-1)*ldb+bc))
	c := randF32(r, max(0, (m-1)*ldc+n))
	if beta == 0 {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	orig := append([]float32(nil), c...)
	want := sgemmRef(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	sgemmWith(kern, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	for i := 0; i < m; i++ {
		for j := 0; j < ldc && i*ldc+j < len(c); j++ {
			got := c[i*ldc+j]
			if j >= n {
				if math.Float32bits(got) != math.Float32bits(orig[i*ldc+j]) {
					t.Fatalf("%s tA=%v tB=%v m=%d n=%d k=%d pad=%d: C[%d][%d] outside the product changed", kern.name, transA, transB, m, n, k, pad, i, j)
				}
				continue
			}
			w := want[i*n+j]
			tol := 1e-5 * (1 + math.Abs(w)) * math.Sqrt(float64(k)+1) * 4
			if math.IsNaN(float64(got)) || math.Abs(float64(got)-w) > tol {
				t.Fatalf("%s tA=%v tB=%v m=%d n=%d k=%d pad=%d alpha=%v beta=%v: C[%d][%d] = %v, want %v", kern.name, transA, transB, m, n, k, pad, alpha, beta, i, j, got, w)
			}
		}
	}
}

func TestSgemmShapes(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	dims := []int{1, 2, 3, 4, 5, 6, 7, 8, 11, 15, 16, 17, 23, 31, 33, 47, 64, 65}
	scalars := [][2]float32{{1, 0}, {1, 1}, {0.5, -2}, {-1.5, 0}, {0, 0.5}, {0, 0}}
	for _, kern := range sgemmKernels() {
		for trial := 0; trial < 300; trial++ {
			m := dims[r.Intn(len(dims))]
			n := dims[r.Intn(len(dims))]
			k := dims[r.Intn(len(dims))]
			s := scalars[trial%len(scalars)]
			pad := []int{0, 0, 1, 5}[trial%4]
			for tr := 0; tr < 4; tr++ {
				checkSgemm(t, r, kern, tr&1 != 0, tr&2 != 0, m, n, k, pad, s[0], s[1])
			}
		}
	}
}

// TestSgemmBlocks covers sizes spanning several kc, mc and nc blocks, and
// the parallel split along either dimension.
func TestSgemmBlocks(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	shapes := [][3]int{
		{sgemmMC + 7, 37, sgemmKC + 9},
		{13, sgemmNC + 21, 300},
		{200, 150, 2*sgemmKC + 1},
		{64, 3136 / 4, 576},
		{3, 1000, 512},
		{1000, 3, 512},
		{150, 49, 700},
		{1, 3000, 700},
		{3000, 1, 700},
	}
	for _, kern := range sgemmKernels() {
		for _, sh := range shapes {
			for tr := 0; tr < 4; tr++ {
				checkSgemm(t, r, kern, tr&1 != 0, tr&2 != 0, sh[0], sh[1], sh[2], tr, 0.75, []float32{0, 1, -0.5, 0}[tr])
			}
		}
	}
}

// A packed A (packAll: fixed weights) gives the bits of A read in place,
// for both kernels, with and without an epilogue, over several blocks of
// each dimension and for row ranges starting past the first panel (a
// split); and a packing for another kernel, or another shared dimension,
// is not used.
func TestSgemmPackedA(t *testing.T) {
	r := rand.New(rand.NewSource(6))
	for _, kern := range sgemmKernels() {
		for _, sh := range [][3]int{{1, 1, 1}, {7, 17, 5}, {13, 33, 300}, {sgemmMC + 11, 40, sgemmKC + 3}, {64, 784, 64}, {512, 16, 512}} {
			m, n, k := sh[0], sh[1], sh[2]
			a, b := randF32(r, m*k), randF32(r, k*n)
			pa := packAll(kern, a, k, m, k)
			bias := make([]float32, m+kern.mr)
			copy(bias, randF32(r, m))
			for _, epi := range []*sgemmEpilogue{nil, {bias: bias, relu: true}} {
				for _, i0 := range []int{0, kern.mr * (m / kern.mr / 2)} {
					c0, c1 := randF32(r, m*n), randF32(r, m*n)
					copy(c1, c0)
					w := new(sgemmWork)
					sgemmBlockFrom(kern, w, sgemmA{a: a, lda: k}, i0, m, 0, n, k, 1, sgemmB{b: b, ldb: n}, 0, c0, n, epi)
					sgemmBlockFrom(kern, w, sgemmA{packed: pa}, i0, m, 0, n, k, 1, sgemmB{b: b, ldb: n}, 0, c1, n, epi)
					for i := range c0 {
						if math.Float32bits(c0[i]) != math.Float32bits(c1[i]) {
							t.Fatalf("%s %v epilogue %v rows from %d: element %d packed %v, in place %v", kern.name, sh, epi != nil, i0, i, c1[i], c0[i])
						}
					}
				}
			}
		}
	}
	// Packed for another kernel or shared dimension: A is read in place.
	kerns := sgemmKernels()
	if len(kerns) > 1 {
		a, b := randF32(r, 12*8), randF32(r, 8*16)
		c0, c1 := make([]float32, 12*16), make([]float32, 12*16)
		sgemmBlockFrom(kerns[0], new(sgemmWork), sgemmA{a: a, lda: 8}, 0, 12, 0, 16, 8, 1, sgemmB{b: b, ldb: 16}, 0, c0, 16, nil)
		sgemmBlockFrom(kerns[0], new(sgemmWork), sgemmA{a: a, lda: 8, packed: packAll(kerns[1], make([]float32, 12*8), 8, 12, 8)}, 0, 12, 0, 16, 8, 1, sgemmB{b: b, ldb: 16}, 0, c1, 16, nil)
		if !slices.Equal(c0, c1) {
			t.Fatal("a packing for another kernel was used")
		}
	}
}

// TestSgemmParallelSerial checks that the split over goroutines gives the
// same bits as one goroutine: each element is computed by the same sequence
// of operations either way.
func TestSgemmParallelSerial(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	m, n, k := 190, 333, 600
	a, b := randF32(r, m*k), randF32(r, k*n)
	c0 := randF32(r, m*n)
	c1 := append([]float32(nil), c0...)
	sgemm(false, false, m, n, k, 1, a, k, b, n, 1, c0, n)
	prev := goruntime.GOMAXPROCS(1)
	sgemm(false, false, m, n, k, 1, a, k, b, n, 1, c1, n)
	goruntime.GOMAXPROCS(prev)
	for i := range c0 {
		if c0[i] != c1[i] {
			t.Fatalf("element %d: parallel %v, serial %v", i, c0[i], c1[i])
		}
	}
}

func TestSgemmZeroSizes(t *testing.T) {
	c := []float32{float32(math.NaN()), 2, 3, 4}
	sgemm(false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0, c, 2)
	for i, v := range c {
		if v != 0 {
			t.Fatalf("k=0, beta=0: C[%d] = %v, want 0", i, v)
		}
	}
	c = []float32{1, 2, 3, 4}
	sgemm(true, true, 2, 2, 0, 1, nil, 2, nil, 1, 3, c, 2)
	if c[3] != 12 {
		t.Fatalf("k=0, beta=3: C[3] = %v, want 12", c[3])
	}
	sgemm(false, false, 0, 5, 3, 1, nil, 3, nil, 5, 0, nil, 5)
	sgemm(false, false, 5, 0, 3, 1, nil, 3, nil, 0, 0, nil, 0)
}

// The products im2col convolution issues in ResNet-18 (M output channels,
// N output positions, K input channels x kernel), forward and the two
// backward variants.
var sgemmBenchShapes = []struct {
	name           string
	tA, tB         bool
	m, n, k        int
	lda, ldb, ldc  int
	alpha, betaVal float32
}{
	{"fwd_64x3136x576", false, false, 64, 3136, 576, 576, 3136, 3136, 1, 0},
	{"fwd_64x12544x147", false, false, 64, 12544, 147, 147, 12544, 12544, 1, 0},
	{"fwd_512x49x4608", false, false, 512, 49, 4608, 4608, 49, 49, 1, 0},
	{"fwd_128x784x1152", false, false, 128, 784, 1152, 1152, 784, 784, 1, 0},
	{"dx_576x3136x64_TN", true, false, 576, 3136, 64, 576, 3136, 3136, 1, 0},
	{"dx_4608x49x512_TN", true, false, 4608, 49, 512, 4608, 49, 49, 1, 0},
	{"dw_64x576x3136_NT", false, true, 64, 576, 3136, 3136, 3136, 576, 1, 1},
	{"dw_512x4608x49_NT", false, true, 512, 4608, 49, 49, 49, 4608, 1, 1},
	// Small products: the ResNet-18 classifier at batch 1 and 8 (Gemm with
	// transB), and a tiny convolution.
	{"fc_1x1000x512_NT", false, true, 1, 1000, 512, 512, 512, 1000, 1, 1},
	{"fc_8x1000x512_NT", false, true, 8, 1000, 512, 512, 512, 1000, 1, 1},
	{"conv_8x64x27", false, false, 8, 64, 27, 27, 64, 64, 1, 0},
}

func BenchmarkSgemm(b *testing.B) {
	impls := []struct {
		name string
		run  func(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, bb []float32, ldb int, beta float32, c []float32, ldc int)
	}{
		{"gonum", func(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, bb []float32, ldb int, beta float32, c []float32, ldc int) {
			ta, tb := blas.NoTrans, blas.NoTrans
			if tA {
				ta = blas.Trans
			}
			if tB {
				tb = blas.Trans
			}
			gonum.Implementation{}.Sgemm(ta, tb, m, n, k, alpha, a, lda, bb, ldb, beta, c, ldc)
		}},
	}
	for _, kern := range sgemmKernels() {
		impls = append(impls, struct {
			name string
			run  func(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, bb []float32, ldb int, beta float32, c []float32, ldc int)
		}{kern.name, func(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, bb []float32, ldb int, beta float32, c []float32, ldc int) {
			sgemmWith(kern, tA, tB, m, n, k, alpha, a, lda, bb, ldb, beta, c, ldc)
		}})
	}
	r := rand.New(rand.NewSource(4))
	for _, sh := range sgemmBenchShapes {
		ar := sh.m
		if sh.tA {
			ar = sh.k
		}
		br := sh.k
		if sh.tB {
			br = sh.n
		}
		a, bm, c := randF32(r, ar*sh.lda), randF32(r, br*sh.ldb), randF32(r, sh.m*sh.ldc)
		for _, im := range impls {
			b.Run(fmt.Sprintf("%s/%s", sh.name, im.name), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					im.run(sh.tA, sh.tB, sh.m, sh.n, sh.k, sh.alpha, a, sh.lda, bm, sh.ldb, sh.betaVal, c, sh.ldc)
				}
				b.ReportMetric(2*float64(sh.m)*float64(sh.n)*float64(sh.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkSgemmKernel times the micro-kernel alone on L1-resident panels:
// the ceiling the blocked algorithm can approach.
func BenchmarkSgemmKernel(b *testing.B) {
	for _, kern := range sgemmKernels() {
		b.Run(kern.name, func(b *testing.B) {
			const k = 256
			r := rand.New(rand.NewSource(5))
			a, bp := randF32(r, kern.mr*k), randF32(r, kern.nr*k)
			c := make([]float32, kern.mr*kern.nr)
			for i := 0; i < b.N; i++ {
				kern.fn(k, a, 1, kern.mr, bp, c, kern.nr, 1, 1)
			}
			b.ReportMetric(2*float64(kern.mr*kern.nr*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
