package runtime

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
)

// testWindow is the window of an N-d convolution of input sizes in.
func testWindow(in, kernel, strides, dilations, pb, pe []int) *window {
	w := &window{in: in, kernel: kernel, strides: strides, dilations: dilations, padsBegin: pb, padsEnd: pe}
	for d := range in {
		w.out = append(w.out, (in[d]+pb[d]+pe[d]-((kernel[d]-1)*dilations[d]+1))/strides[d]+1)
	}
	return w
}

// The forward pass packed straight from the input's polyphase planes
// (convPanels) gives what im2col + GEMM + epilogue gives, to the bit, for
// both micro-kernels, on odd shapes: strides 1 to 3, dilations,
// asymmetric padding, 1-d and 2-d windows, groups, output rows shorter
// and longer than a panel, output channels not a multiple of the tile,
// with and without a bias and a fused Relu.
func TestConvPanelsMatchIm2col(t *testing.T) {
	defer func(k *sgemmKernel) { sgemmKern = k }(sgemmKern)
	r := rand.New(rand.NewSource(11))
	pick := func(s ...int) int { return s[r.Intn(len(s))] }
	cases := 0
	for _, kern := range sgemmKernels() {
		sgemmKern = kern
		// ResNet's stem and a downsampling layer, large enough to run over
		// goroutines, then random ones.
		big := [][]int{{1, 3, 64, 97, 7, 2, 3}, {2, 64, 128, 30, 3, 2, 1}, {1, 96, 70, 9, 1, 2, 0}, {2, 300, 520, 13, 3, 2, 1}}
		for trial := 0; trial < 150+len(big); trial++ {
			d := 2
			if trial%7 == 0 {
				d = 1
			}
			var in, kernel, strides, dilations, pb, pe []int
			if trial < len(big) {
				b := big[trial]
				d = 2
				in, kernel, strides = []int{b[3], b[3]}, []int{b[4], b[4]}, []int{b[5], b[5]}
				dilations, pb, pe = []int{1, 1}, []int{b[6], b[6]}, []int{b[6], b[6]}
			}
			for i := len(in); i < d; i++ {
				kernel = append(kernel, pick(1, 1, 2, 3, 3, 5, 7))
				strides = append(strides, pick(1, 2, 2, 3))
				dilations = append(dilations, pick(1, 1, 1, 2))
				pb = append(pb, pick(0, 1, 2, 3))
				pe = append(pe, pick(0, 1, 3))
				in = append(in, (kernel[i]-1)*dilations[i]+1+r.Intn(40))
			}
			if d == 1 {
				in[0] += 100
			}
			win := testWindow(in, kernel, strides, dilations, pb, pe)
			group := pick(1, 1, 1, 2, 3)
			c := group * pick(1, 3, 4, 7)
			m := group * pick(2, 5, 6, 7, 13, 16, 20)
			n := pick(1, 1, 2, 3)
			if trial < len(big) {
				n, c, m, group = big[trial][0], big[trial][1], big[trial][2], 1
			}
			out := append([]int{n, m}, win.out...)
			k := &conv[float32]{n: n, c: c, m: m, group: group, win: win, out: out, cols: new(scratch[float32]),
				hasBias: r.Intn(2) == 0, relu: r.Intn(2) == 0}
			k.plane = newPlane2d(win)
			if m/group == 1 || size(win.out) == 1 {
				continue // a matrix-vector product, left to im2col
			}
			k.panels = newConvPanels(win, c/group)
			k.packed = new(scratch[float32])
			if k.panels == nil {
				t.Fatalf("window %v: no panels", win)
			}
			ref := &conv[float32]{n: n, c: c, m: m, group: group, win: win, out: out, cols: new(scratch[float32]),
				hasBias: k.hasBias, relu: k.relu, plane: k.plane}
			shapes := [][]int{append([]int{n, c}, in...), append([]int{m, c / group}, kernel...)}
			if k.hasBias {
				shapes = append(shapes, []int{m})
			}
			args := make([][]float32, len(shapes))
			for i, s := range shapes {
				args[i] = make([]float32, size(s))
				for j := range args[i] {
					args[i][j] = float32(r.NormFloat64())
				}
			}
			got, want := make([]float32, size(out)), make([]float32, size(out))
			for i := range got {
				got[i] = 7 // every element must be written
			}
			if err := k.forward(args, got); err != nil {
				t.Fatal(err)
			}
			if err := ref.forward(args, want); err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("%s: n%d c%d m%d g%d %v bias %v relu %v", kern.name, n, c, m, group, win, k.hasBias, k.relu)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s: element %d is %v, want %v", name, i, got[i], want[i])
				}
			}
			cases++
		}
	}
	t.Logf("%d convolutions", cases)
}

// The input gradient by bands of output rows, each core taking whole
// images (dxByBands), is what the whole im2col matrix and col2im give image
// by image, to float32 rounding (the sums come in another order), on
// strided, dilated, padded and grouped windows; every element is written.
func TestConvDxByBands(t *testing.T) {
	r := rand.New(rand.NewSource(12))
	pick := func(s ...int) int { return s[r.Intn(len(s))] }
	big := [][]int{{3, 3, 16, 64, 7, 2, 3}, {4, 64, 32, 30, 3, 2, 1}, {2, 32, 64, 15, 1, 2, 0}}
	banded := 0
	for trial := 0; trial < 60+len(big); trial++ {
		var in, kernel, strides, dilations, pb, pe []int
		group := pick(1, 1, 2, 3)
		c, m, n := group*pick(1, 3, 4), group*pick(2, 5, 7), pick(2, 3, 5)
		if trial < len(big) {
			b := big[trial]
			n, c, m, group = b[0], b[1], b[2], 1
			in, kernel, strides = []int{b[3], b[3]}, []int{b[4], b[4]}, []int{b[5], b[5]}
			dilations, pb, pe = []int{1, 1}, []int{b[6], b[6]}, []int{b[6], b[6]}
		}
		for i := len(in); i < 2; i++ {
			kernel = append(kernel, pick(1, 2, 3, 5, 7))
			strides = append(strides, pick(1, 2, 3))
			dilations = append(dilations, pick(1, 1, 2))
			pb = append(pb, pick(0, 1, 3))
			pe = append(pe, pick(0, 1, 2))
			in = append(in, (kernel[i]-1)*dilations[i]+1+r.Intn(30))
		}
		win := testWindow(in, kernel, strides, dilations, pb, pe)
		out := append([]int{n, m}, win.out...)
		k := &conv[float32]{n: n, c: c, m: m, group: group, win: win, out: out, cols: new(scratch[float32]), plane: newPlane2d(win)}
		one := &conv[float32]{n: 1, c: c, m: m, group: group, win: win, out: append([]int{1, m}, win.out...), cols: new(scratch[float32]), plane: k.plane}
		w := make([]float32, m*(c/group)*size(kernel))
		gout := make([]float32, size(out))
		for _, s := range [][]float32{w, gout} {
			for i := range s {
				s[i] = float32(r.NormFloat64())
			}
		}
		x := make([]float32, n*c*size(in))
		got := make([]float32, len(x))
		for i := range got {
			got[i] = 7 // every element must be written
		}
		if err := k.backward(0, [][]float32{x, w}, nil, gout, got); err != nil {
			t.Fatal(err)
		}
		iN, oN := c*size(in), m*size(win.out)
		for img := 0; img < n; img++ {
			want := make([]float32, iN)
			if err := one.backward(0, [][]float32{x[img*iN : (img+1)*iN], w}, nil, gout[img*oN:(img+1)*oN], want); err != nil {
				t.Fatal(err)
			}
			for i, v := range want {
				if d := math.Abs(float64(got[img*iN+i] - v)); !(d <= 1e-5*(1+math.Abs(float64(v)))) {
					t.Fatalf("n%d c%d m%d g%d %v: image %d element %d is %v, want %v", n, c, m, group, win, img, i, got[img*iN+i], v)
				}
			}
		}
		banded++
	}
	t.Logf("%d convolutions", banded)
}
