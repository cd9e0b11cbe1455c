package runtime

import (
	"fmt"
	"math"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

// naiveConv3x3 is the definition: out[i,k,y,x] = b[k] + Σ_c,r,s
// w[k,c,r,s] x[i,c,y+r-ph,x+s-pw], in float64.
func naiveConv3x3(x, w, b []float32, n, c, k, h, wd, ph, pw, oh, ow int) []float64 {
	out := make([]float64, n*k*oh*ow)
	for i := 0; i < n; i++ {
		for kk := 0; kk < k; kk++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					s := 0.0
					if b != nil {
						s = float64(b[kk])
					}
					for cc := 0; cc < c; cc++ {
						for r := 0; r < 3; r++ {
							for q := 0; q < 3; q++ {
								hy, wx := y+r-ph, xx+q-pw
								if hy < 0 || hy >= h || wx < 0 || wx >= wd {
									continue
								}
								s += float64(w[((kk*c+cc)*3+r)*3+q]) * float64(x[((i*c+cc)*h+hy)*wd+wx])
							}
						}
					}
					out[((i*k+kk)*oh+y)*ow+xx] = s
				}
			}
		}
	}
	return out
}

// TestWinograd checks F(2x2, 3x3) against the definition on shapes whose
// output is and is not a whole number of 4x4 tiles, with and without
// padding (asymmetric too), bias and several passes of images, through the
// assembly transforms (groups of 8 tiles, the rest in Go) and through the
// Go transforms alone: the error, relative to the scale of the output,
// stays at float32 rounding of a sum of 9c products, a few times a direct
// sum's (at most 2e-6 here).
func TestWinograd(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, tc := range []winoCase{
		{1, 16, 16, 8, 8, 1, 1, 1, 1},
		{2, 17, 19, 7, 13, 1, 1, 1, 1},
		{1, 16, 33, 9, 9, 0, 0, 0, 0},
		{3, 24, 16, 6, 5, 0, 1, 1, 0},
		{1, 65, 63, 14, 14, 1, 1, 1, 1},
		{7, 16, 16, 38, 37, 1, 1, 1, 1}, // several passes of images
		{1, 64, 64, 56, 56, 1, 1, 1, 1},
		// Channels in several of the GEMM's blocks of the shared
		// dimension, tiles ending inside a panel.
		{1, 300, 20, 10, 12, 1, 1, 1, 1},
		{2, 520, 18, 6, 7, 1, 1, 1, 1},
	} {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			tc.check(t, r, true)
			tc.check(t, r, false)
			if winoInputGroups != nil {
				in, out := winoInputGroups, winoOutputGroups
				winoInputGroups, winoOutputGroups = nil, nil
				defer func() { winoInputGroups, winoOutputGroups = in, out }()
				tc.check(t, r, true)
			}
		})
	}
}

type winoCase struct{ n, c, k, h, w, pt, pl, pb, pr int }

// check runs the plan twice: for fixed weights, transformed on the first
// call only, else on each.
func (tc winoCase) check(t *testing.T, r *rand.Rand, fixed bool) {
	t.Helper()
	win := &window{in: []int{tc.h, tc.w}, kernel: []int{3, 3}, strides: []int{1, 1}, dilations: []int{1, 1},
		padsBegin: []int{tc.pt, tc.pl}, padsEnd: []int{tc.pb, tc.pr},
		out: []int{tc.h + tc.pt + tc.pb - 2, tc.w + tc.pl + tc.pr - 2}}
	p := planWinograd(tc.n, tc.c, tc.k, win)
	p.fixed = fixed
	if tc.n == 7 && p.chunk >= tc.n {
		t.Fatalf("chunk %d: want several passes", p.chunk)
	}
	x, w, b := randF32(r, tc.n*tc.c*tc.h*tc.w), randF32(r, tc.k*tc.c*9), randF32(r, tc.k)
	oh, ow := win.out[0], win.out[1]
	got := make([]float32, tc.n*tc.k*oh*ow)
	for i := range got {
		got[i] = float32(math.NaN()) // every element must be written
	}
	p.forward(x, w, b, nil, got, false)
	first := slices.Clone(got)
	want := naiveConv3x3(x, w, b, tc.n, tc.c, tc.k, tc.h, tc.w, tc.pt, tc.pl, oh, ow)
	var worst, scale float64
	for i, v := range want {
		if math.IsNaN(float64(got[i])) {
			t.Fatalf("element %d not written", i)
		}
		worst = math.Max(worst, math.Abs(float64(got[i])-v))
		scale = math.Max(scale, math.Abs(v))
	}
	if worst > 2e-6*scale {
		t.Errorf("assembly %v: max |winograd - definition| = %.3g, %.3g of max |y| %.3g", winoInputGroups != nil, worst, worst/scale, scale)
	}
	// A second call (fixed: reusing the transformed weights); no bias, a
	// Relu.
	p.forward(x, w, nil, nil, got, true)
	for i, v := range want {
		if d := math.Abs(float64(got[i]) - math.Max(v-float64(b[i/(oh*ow)%tc.k]), 0)); d > 2e-6*scale {
			t.Fatalf("second call, element %d: off by %.3g", i, d)
		}
	}
	// A residual added (after the bias, before the Relu, if any): the bits
	// of a separate Add and Relu of the first call's output.
	res := randF32(r, len(got))
	for _, relu := range []bool{false, true} {
		p.forward(x, w, b, res, got, relu)
		for i, v := range first {
			if v += res[i]; relu {
				v = max(v, 0)
			}
			if got[i] != v {
				t.Fatalf("residual, relu %v: element %d is %v, want %v", relu, i, got[i], v)
			}
		}
	}
}

// The gradients of a 3x3 stride-1 convolution are computed by Winograd's
// algorithm: the input gradient as a convolution of the output gradient
// (dxWindow), for fixed weights and for weights a step trains (with
// enough tiles), and the weight gradient by F(3x3, 2x2) (weightGrad). Both
// equal the float64 program's (im2col) to float32 rounding (Winograd's, a
// few times a direct sum's), for padding 0 to 2 (the input gradient's 2
// to 0), asymmetric padding, odd sizes and several passes of images.
func TestWinogradGradients(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	for _, tc := range []winoCase{
		{2, 17, 19, 7, 13, 1, 1, 1, 1},
		{1, 16, 33, 9, 9, 0, 0, 0, 0},
		{3, 24, 16, 6, 5, 0, 1, 1, 0},
		{1, 16, 16, 8, 8, 2, 2, 2, 2},
		{5, 16, 17, 9, 7, 1, 0, 0, 1},
		{7, 16, 16, 38, 37, 1, 1, 1, 1},
		// Enough tiles for weights a step trains.
		{4, 16, 24, 13, 11, 1, 1, 1, 1},
		{2, 20, 16, 15, 17, 0, 0, 0, 0},
		{3, 16, 18, 12, 10, 2, 2, 2, 2},
		{2, 16, 16, 17, 16, 0, 1, 1, 0},
	} {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			oh, ow := tc.h+tc.pt+tc.pb-2, tc.w+tc.pl+tc.pr-2
			g := &onnx.Graph{Name: "conv"}
			x := g.AddInput("x", &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Fixed(int64(tc.n)), onnx.Fixed(int64(tc.c)), onnx.Fixed(int64(tc.h)), onnx.Fixed(int64(tc.w))}})
			w, err := onnx.FromFloat32("w", []int64{int64(tc.k), int64(tc.c), 3, 3}, randF32(r, tc.k*tc.c*9))
			if err != nil {
				t.Fatal(err)
			}
			cv := g.AddNode("Conv", "conv", []*onnx.Value{x, g.AddInitializer(w)}, []string{"y"}, aInts("pads", int64(tc.pt), int64(tc.pl), int64(tc.pb), int64(tc.pr)))
			flat := g.AddNode("Flatten", "flat", cv.Outputs, []string{"scores"})
			g.Outputs = flat.Outputs
			m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 17}}, Graph: g}
			in := randF32(r, tc.n*tc.c*tc.h*tc.w)
			labels := make([]int, tc.n)
			for i := range labels {
				labels[i] = r.Intn(tc.k * oh * ow)
			}
			// grads returns the input gradient and, unless the weights are
			// fixed, the weight's.
			grads := func(opts Options) (dx, dw []float64, k *conv[float32]) {
				p, err := Compile(m, opts)
				if err != nil {
					t.Fatal(err)
				}
				targets, err := p.OneHot(labels, tc.k*oh*ow)
				if err != nil {
					t.Fatal(err)
				}
				x := tensor.New(tensor.WithShape(tc.n, tc.c, tc.h, tc.w), tensor.WithBacking(in))
				if opts.Float64 {
					x = tensor.New(tensor.WithShape(tc.n, tc.c, tc.h, tc.w), tensor.WithBacking(float64sOf(x)))
				}
				req := &Request{Inputs: []*tensor.Dense{x}, Targets: targets, Loss: CrossEntropy, InputGrads: true}
				if !opts.FixedWeights {
					req.Params = []string{"w"}
				}
				res, err := p.Step(req)
				if err != nil {
					t.Fatal(err)
				}
				dx = float64sOf(res.InputGrads[0])
				if !opts.FixedWeights {
					dw = float64sOf(res.ParamGrads["w"])
				}
				if opts.Float64 {
					return dx, dw, nil
				}
				for _, st := range p.cache[planOf(req).key()].(*graphSession[float32]).lean {
					if op, ok := st.node.Op().(*kernelOp[float32]); ok {
						if k, ok := op.k.(*conv[float32]); ok {
							return dx, dw, k
						}
					}
				}
				t.Fatal("no convolution")
				return nil, nil, nil
			}
			close := func(what string, got, want []float64) {
				var worst, scale float64
				for i, v := range want {
					worst = math.Max(worst, math.Abs(got[i]-v))
					scale = math.Max(scale, math.Abs(v))
				}
				if !(worst <= 5e-6*scale) { // Winograd's rounding, measured 2.2e-6
					t.Errorf("%s: max |graft - float64| = %.3g, %.3g of max %.3g", what, worst, worst/scale, scale)
				}
			}
			dx64, dw64, _ := grads(Options{Float64: true})
			for _, fixed := range []bool{true, false} {
				dx, dw, k := grads(Options{FixedWeights: fixed})
				tiles := tc.n * ((oh + 1) / 2) * ((ow + 1) / 2)
				dxTiles := tc.n * ((tc.h + 1) / 2) * ((tc.w + 1) / 2)
				if wino := k.winoDX != nil; wino != (fixed || dxTiles >= winoMinTilesPerCall && tiles >= winoMinTilesPerCall) {
					t.Errorf("fixed weights %v, %d tiles: Winograd input gradient %v", fixed, dxTiles, wino)
				}
				close(fmt.Sprintf("fixed weights %v, input gradient", fixed), dx, dx64)
				if !fixed {
					if wino := k.wino != nil; wino != (tiles >= winoMinTilesPerCall) {
						t.Errorf("%d tiles: Winograd weight gradient %v", tiles, wino)
					}
					close("weight gradient", dw, dw64)
				}
			}
		})
	}
}

// TestWinogradApplies: only 2-d 3x3 stride-1 undilated ungrouped windows
// with enough channels take the Winograd path.
func TestWinogradApplies(t *testing.T) {
	win := func(k, s, d int) *window {
		return &window{in: []int{16, 16}, kernel: []int{k, k}, strides: []int{s, s}, dilations: []int{d, d},
			padsBegin: []int{1, 1}, padsEnd: []int{1, 1}, out: []int{16, 16}}
	}
	small := &window{in: []int{5, 5}, kernel: []int{3, 3}, strides: []int{1, 1}, dilations: []int{1, 1},
		padsBegin: []int{1, 1}, padsEnd: []int{1, 1}, out: []int{5, 5}}
	for _, tc := range []struct {
		n, c, k, group int
		win            *window
		want           bool
	}{
		{1, 16, 16, 1, win(3, 1, 1), true},
		{1, 16, 16, 1, win(3, 2, 1), false},
		{1, 16, 16, 1, win(3, 1, 2), false},
		{1, 16, 16, 1, win(5, 1, 1), false},
		{1, 16, 16, 2, win(3, 1, 1), false},
		{1, 8, 16, 1, win(3, 1, 1), false},
		{1, 16, 8, 1, win(3, 1, 1), false},
		{1, 512, 512, 1, small, false}, // 9 tiles
		{2, 512, 512, 1, small, true},  // 18 tiles
	} {
		if got := newWinograd(tc.n, tc.c, tc.k, tc.group, tc.win, &workspace[float32]{}, true, false) != nil; got != tc.want {
			t.Errorf("n %d c %d k %d group %d window %v: applies %v, want %v", tc.n, tc.c, tc.k, tc.group, tc.win, got, tc.want)
		}
	}
	// Weights that change are transformed on every call: only for enough
	// tiles in all (64; 16 per image of 8x8 here).
	eight := &window{in: []int{8, 8}, kernel: []int{3, 3}, strides: []int{1, 1}, dilations: []int{1, 1},
		padsBegin: []int{1, 1}, padsEnd: []int{1, 1}, out: []int{8, 8}}
	for _, tc := range []struct {
		n    int
		want bool
	}{{3, false}, {4, true}} {
		if got := newWinograd(tc.n, 16, 16, 1, eight, &workspace[float32]{}, false, false) != nil; got != tc.want {
			t.Errorf("weights that change, %d images of 16 tiles: applies %v, want %v", tc.n, got, tc.want)
		}
	}
}

// BenchmarkWinograd compares F(2x2, 3x3) with im2col + GEMM on ResNet-18's
// 3x3 layers at batch 1.
func BenchmarkWinograd(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	for _, s := range []struct{ c, hw int }{{64, 56}, {128, 28}, {256, 14}, {512, 7}} {
		win := &window{in: []int{s.hw, s.hw}, kernel: []int{3, 3}, strides: []int{1, 1}, dilations: []int{1, 1},
			padsBegin: []int{1, 1}, padsEnd: []int{1, 1}, out: []int{s.hw, s.hw}}
		x, w := randF32(r, s.c*s.hw*s.hw), randF32(r, s.c*s.c*9)
		out := make([]float32, s.c*s.hw*s.hw)
		b.Run(fmt.Sprintf("winograd/%dx%d", s.c, s.hw), func(b *testing.B) {
			p := planWinograd(1, s.c, s.c, win)
			p.forward(x, w, nil, nil, out, false)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.forward(x, w, nil, nil, out, false)
			}
		})
		b.Run(fmt.Sprintf("im2col/%dx%d", s.c, s.hw), func(b *testing.B) {
			k := &conv[float32]{n: 1, c: s.c, m: s.c, group: 1, win: win, out: []int{1, s.c, s.hw, s.hw}, cols: new(scratch[float32])}
			k.plane = newPlane2d(win)
			for i := 0; i < b.N; i++ {
				k.forward([][]float32{x, w}, out)
			}
		})
	}
}

// TestWinogradResNet18 measures what Winograd's rounding does to a whole
// network: ResNet-18 (BatchNormalization kept, so the export computes
// exactly PyTorch's module) with fixed weights against PyTorch float64,
// beside the im2col path's own distance. docs/benchmarks.md quotes the
// logged numbers.
func TestWinogradResNet18(t *testing.T) {
	dir := testenv.Big.Path("resnet18_op13_bn")
	testenv.Big.Files(t, "resnet18_op13_bn/model.onnx", "resnet18_op13_bn/test_data_set_0/output64.pb")
	m, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	in := loadDense(t, filepath.Join(dir, "test_data_set_0/input_0.pb"), false)
	want := float64sOf(loadDense(t, filepath.Join(dir, "test_data_set_0/output64.pb"), true))
	scale := 0.0
	for _, v := range want {
		scale = math.Max(scale, math.Abs(v))
	}
	errs := map[bool]float64{}
	outs := map[bool][]float64{}
	for _, fixed := range []bool{false, true} {
		p, err := Compile(m, Options{FixedWeights: fixed})
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.Run(in)
		if err != nil {
			t.Fatal(err)
		}
		// With fixed weights, every BatchNormalization is folded into the
		// convolution before it, every residual Add into a convolution
		// beside it, and every Relu into the kernel before it.
		kinds := map[string]int{}
		for _, st := range inferenceSession(p, in.Shape()).lean {
			kinds[strings.SplitN(st.node.Op().String(), "(", 2)[0]]++
			if op, ok := st.node.Op().(*kernelOp[float32]); ok {
				if c, ok := op.k.(*conv[float32]); ok && c.fold != nil {
					kinds["scaled when packed"]++
				}
			}
		}
		// Every convolution of the 20 packs or transforms its weights, and
		// scales them then: none keeps a scaled copy.
		if fixed && kinds["scaled when packed"] != 20 {
			t.Errorf("%d convolutions scale their weights as they pack them, want 20", kinds["scaled when packed"])
		}
		if folded := kinds["BatchNormalization"] == 0 && kinds["Relu"] == 0 && kinds["Add+Relu"] == 0; folded != fixed {
			t.Errorf("fixed weights %v: the run computes %d BatchNormalization, %d Add+Relu and %d Relu nodes", fixed, kinds["BatchNormalization"], kinds["Add+Relu"], kinds["Relu"])
		}
		outs[fixed] = float64sOf(out[0])
		errs[fixed] = maxAbsDiff(outs[fixed], want)
	}
	t.Logf("max |graft - PyTorch float64| / max|y| (%.3g): im2col %.2g, fixed weights (BatchNormalization folded, Winograd) %.2g", scale, errs[false]/scale, errs[true]/scale)
	// Convolutions that pack or transform their weights scale them
	// themselves, to the bits of a scaled copy.
	foldEagerly = true
	p, err := Compile(m, Options{FixedWeights: true})
	foldEagerly = false
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(float64sOf(out[0]), outs[true]) {
		t.Error("with scaled copies of the weights, the output differs")
	}
	if maxAbsDiff(outs[false], outs[true]) == 0 {
		t.Error("fixed weights gave the im2col path's output bit for bit: Winograd did not run")
	}
	if tol := 1e-4 + 1e-5*scale; !(errs[true] <= tol) {
		t.Errorf("Winograd: max |graft - PyTorch float64| = %.3g, want <= %.3g", errs[true], tol)
	}
}

// A program with fixed weights refuses what would change them, still gives
// input gradients (an attack's), and holds the weights once.
func TestFixedWeights(t *testing.T) {
	dir := committedModelDirs(t)[0]
	m, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(m, Options{FixedWeights: true})
	if err != nil {
		t.Fatal(err)
	}
	in := loadDense(t, filepath.Join(dir, "test_data_set_0/input_0.pb"), false)
	out, err := p.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := p.OneHot(make([]int, out[0].Shape()[0]), out[0].Shape()[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []*Request{
		{Inputs: []*tensor.Dense{in}, Targets: targets, Loss: CrossEntropy, Train: true},
		{Inputs: []*tensor.Dense{in}, Targets: targets, Loss: CrossEntropy, Params: []string{p.Params()[0].Name}},
	} {
		if _, err := p.Step(req); err == nil || !strings.Contains(err.Error(), "fixed weights") {
			t.Errorf("train %v, params %v: err %v, want a refusal naming fixed weights", req.Train, req.Params, err)
		}
	}
	res, err := p.Step(&Request{Inputs: []*tensor.Dense{in}, Targets: targets, Loss: CrossEntropy, InputGrads: true})
	if err != nil || len(res.InputGrads) != 1 {
		t.Fatalf("input gradients with fixed weights: %v", err)
	}
	// The weights are held once: the parameters are the model's float32
	// data, and the estimate counts them in the model only.
	for _, v := range m.Graph.Initializers {
		if v.Const.DType != onnx.Float {
			continue
		}
		d := p.Param(v.Name).Value.Data().([]float32)
		if raw := v.Const.Raw(); unsafe.Pointer(&d[0]) != unsafe.Pointer(&raw[0]) {
			t.Errorf("parameter %q is a copy of the model's data", v.Name)
		}
	}
	est, err := p.Estimate(Plan{Inputs: [][]int{in.Shape()}})
	if err != nil || est.Params != 0 {
		t.Errorf("estimate %v (%v): want no parameter bytes beside the model's", est, err)
	}
}

// The filter transform and the weight gradient's output transform give the
// same bits through the assembly (groups of 8 kernels) as through Go, for
// channel counts with and without a rest, both orientations of the
// filter; and the filter transform is G g Gᵀ rounded once to float32,
// turned or not: the gradient of a whole ResNet to its input is sensitive
// to this (TestResNet18FGSMMatchesPyTorch failed with U summed in float32).
func TestWinogradFilterTransforms(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	groups, gradGroups := winoFilterGroups, winoGradOutputGroups
	defer func() { winoFilterGroups, winoGradOutputGroups = groups, gradGroups }()
	G := [winoA][3]float64{{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}}
	for _, kc := range [][2]int{{1, 1}, {3, 7}, {2, 8}, {5, 17}, {4, 65}, {9, 24}, {197, 9}, {100, sgemmKC + 3}} {
		k, c := kc[0], kc[1]
		w := make([]float32, k*c*9)
		for i := range w {
			w[i] = float32(r.NormFloat64())
		}
		for _, turned := range []bool{false, true} {
			var u [2][]float32
			for pass, asm := range []bool{false, true} {
				winoFilterGroups = nil
				if asm {
					winoFilterGroups = groups
				}
				u[pass] = make([]float32, winoA2*filterStride(k, c))
				winogradFilter(u[pass], w, k, c, turned)
			}
			if groups != nil && !slices.Equal(u[0], u[1]) {
				t.Fatalf("k=%d c=%d turned=%v: the assembly's U differs from Go's", k, c, turned)
			}
			for kk := 0; kk < k; kk++ {
				for cc := 0; cc < c; cc++ {
					for i := 0; i < winoA; i++ {
						for j := 0; j < winoA; j++ {
							want, scale := 0.0, 0.0
							for a := 0; a < 3; a++ {
								for b := 0; b < 3; b++ {
									g := float64(w[(kk*c+cc)*9+a*3+b])
									if turned { // g[c][k] turned: w[cc][kk] holds kernel (kk, cc)
										g = float64(w[(cc*k+kk)*9+(2-a)*3+(2-b)])
									}
									want += G[i][a] * g * G[j][b]
									scale += math.Abs(G[i][a] * g * G[j][b])
								}
							}
							got := float64(u[1][(i*winoA+j)*filterStride(k, c)+kk*c+cc])
							if math.Abs(got-want) > 0x1p-24*math.Abs(want)+1e-15*scale {
								t.Fatalf("k=%d c=%d turned=%v U[%d][%d][%d][%d] = %v, want %v", k, c, turned, i, j, kk, cc, got, want)
							}
						}
					}
				}
			}
		}
		// Fixed weights keep U packed for the GEMMs, transformed by blocks of
		// output channels: the same as U transformed whole, then packed.
		for _, turned := range []bool{false, true} {
			u := make([]float32, winoA2*filterStride(k, c))
			winogradFilter(u, w, k, c, turned)
			p := &winograd{k: k, c: c, turned: turned}
			for xi, got := range p.fixedFilters(w) {
				want := packAll(sgemmKern, u[xi*filterStride(k, c):], c, k, c)
				if !slices.Equal(got.data, want.data) {
					t.Fatalf("k=%d c=%d turned=%v: packed U[%d] differs from U's", k, c, turned, xi)
				}
			}
		}
		// The weight gradient's transform, added into a nonzero dw.
		p := &winograd{k: k, c: c}
		acc := make([]float32, winoA2*filterStride(k, c))
		for i := range acc {
			acc[i] = float32(r.NormFloat64())
		}
		var dw [2][]float32
		for pass, asm := range []bool{false, true} {
			winoGradOutputGroups = nil
			if asm {
				winoGradOutputGroups = gradGroups
			}
			dw[pass] = slices.Clone(w)
			p.gradOutputs(acc, dw[pass])
		}
		if gradGroups != nil && !slices.Equal(dw[0], dw[1]) {
			t.Fatalf("k=%d c=%d: the assembly's weight gradient differs from Go's", k, c)
		}
		if slices.Equal(dw[1], w) {
			t.Fatalf("k=%d c=%d: gradOutputs added nothing", k, c)
		}
	}
}
