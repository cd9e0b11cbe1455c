package runtime

import (
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// bnInputs returns random BatchNormalization inputs for X of shape x, with
// positive variances.
func bnInputs(seed int64, x []int) [][]float64 {
	c := []int{x[1]}
	in := randomInputs(seed, [][]int{x, c, c, c, c})
	for i := range in[4] {
		in[4][i] = math.Abs(in[4][i]) + 0.3
	}
	return in
}

func TestBatchNormGradients(t *testing.T) {
	for _, shape := range [][]int{{5, 3}, {3, 2, 3, 5}, {2, 3, 7}, {1, 2, 3, 3}} {
		c := []int{shape[1]}
		shapes := [][]int{shape, c, c, c, c}
		for _, form := range []struct {
			name string
			oc   opCase
		}{
			{"inference", opCase{op: "BatchNormalization", opset: 15, shapes: shapes}},
			{"training_mode=1", opCase{op: "BatchNormalization", opset: 15, shapes: shapes, attrs: []*onnx.Attribute{aInt("training_mode", 1)}}},
			{"training request", opCase{op: "BatchNormalization", opset: 9, shapes: shapes, train: true}},
			{"epsilon", opCase{op: "BatchNormalization", opset: 15, shapes: shapes, attrs: []*onnx.Attribute{aFloat("epsilon", 0.1), aInt("training_mode", 1)}}},
		} {
			k := form.oc.kernel(t)
			in := bnInputs(40, shape)
			checkGrad(t, k, in)
			// Forward against a direct computation.
			out := make([]float64, size(shape))
			k.forward(in, out)
			train := form.name != "inference"
			eps := 1e-5
			if form.name == "epsilon" {
				eps = float64(float32(0.1))
			}
			want := bnRef(in, shape, train, eps)
			for i := range want {
				if math.Abs(out[i]-want[i]) > 1e-10*(1+math.Abs(want[i])) {
					t.Errorf("%s %v: out[%d] = %g, want %g", form.name, shape, i, out[i], want[i])
					break
				}
			}
		}
	}
}

// bnRef computes BatchNormalization element by element with explicit
// indices; in training from the batch statistics (biased variance).
func bnRef(in [][]float64, shape []int, train bool, eps float64) []float64 {
	x, scale, bias, rm, rv := in[0], in[1], in[2], in[3], in[4]
	n, c, hw := shape[0], shape[1], size(shape[2:])
	idx := func(i, ch, j int) int { return (i*c+ch)*hw + j }
	out := make([]float64, len(x))
	for ch := 0; ch < c; ch++ {
		mean, variance := rm[ch], rv[ch]
		if train {
			mean, variance = 0, 0
			for i := 0; i < n; i++ {
				for j := 0; j < hw; j++ {
					mean += x[idx(i, ch, j)]
				}
			}
			mean /= float64(n * hw)
			for i := 0; i < n; i++ {
				for j := 0; j < hw; j++ {
					d := x[idx(i, ch, j)] - mean
					variance += d * d
				}
			}
			variance /= float64(n * hw)
		}
		for i := 0; i < n; i++ {
			for j := 0; j < hw; j++ {
				out[idx(i, ch, j)] = (x[idx(i, ch, j)]-mean)/math.Sqrt(variance+eps)*scale[ch] + bias[ch]
			}
		}
	}
	return out
}

func TestBatchNormInferenceGradientUsesRunningVariance(t *testing.T) {
	// In inference dY/dX is scale/sqrt(running_var + eps), whatever the batch.
	shape := []int{4, 2, 3}
	k := opCase{op: "BatchNormalization", shapes: [][]int{shape, {2}, {2}, {2}, {2}}}.kernel(t)
	in := bnInputs(41, shape)
	gout := make([]float64, size(shape))
	for i := range gout {
		gout[i] = 1
	}
	gin := make([]float64, size(shape))
	k.backward(0, in, nil, gout, gin)
	for i, g := range gin {
		ch := (i / 3) % 2
		if want := in[1][ch] / math.Sqrt(in[4][ch]+1e-5); math.Abs(g-want) > 1e-12 {
			t.Fatalf("dX[%d] = %g, want %g", i, g, want)
		}
	}
}

func TestBatchNormForms(t *testing.T) {
	shapes := [][]int{{4, 3, 2}, {3}, {3}, {3}, {3}}
	for _, c := range []struct {
		opset   int64
		attrs   []*onnx.Attribute
		outputs int
		train   bool // request
		want    bool // training behaviour
	}{
		{15, nil, 1, false, false},
		{15, []*onnx.Attribute{aInt("training_mode", 1)}, 3, false, true},
		{15, []*onnx.Attribute{aInt("training_mode", 0)}, 1, true, true},
		{14, []*onnx.Attribute{aInt("training_mode", 1)}, 1, false, true},
		{9, nil, 1, false, false},
		{9, nil, 5, false, true},
		{7, []*onnx.Attribute{aInt("spatial", 1)}, 5, false, true},
		{7, nil, 1, true, true},
		{6, []*onnx.Attribute{aInt("is_test", 1)}, 1, false, false},
		{6, []*onnx.Attribute{aInt("is_test", 1)}, 3, false, false},
		{6, nil, 5, false, true},
	} {
		b, outs := bnBuild(t, c.opset, c.attrs, shapes, c.outputs, c.train)
		k := b.kernels[0].(*batchNorm[float64])
		if k.train != c.want {
			t.Errorf("opset %d %v, %d outputs, request train=%v: training %v, want %v", c.opset, c.attrs, c.outputs, c.train, k.train, c.want)
		}
		if len(outs) != c.outputs {
			t.Errorf("opset %d: %d outputs, want %d", c.opset, len(outs), c.outputs)
		}
	}
	for _, c := range []struct {
		opset  int64
		attrs  []*onnx.Attribute
		shapes [][]int
		want   string
	}{
		{7, []*onnx.Attribute{aInt("spatial", 0)}, shapes, "spatial=0"},
		{15, nil, [][]int{{4, 3, 2}, {3}, {2}, {3}, {3}}, "B has shape [2], want [3]"},
		{15, nil, [][]int{{4}, {4}, {4}, {4}, {4}}, "at least 2 dimensions"},
	} {
		err := buildErr(t, opCase{op: "BatchNormalization", opset: c.opset, attrs: c.attrs, shapes: c.shapes})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("opset %d %v: error %v, want %q", c.opset, c.attrs, err, c.want)
		}
	}
}

// bnBuild builds a BatchNormalization node with the given number of
// outputs, all of them graph outputs.
func bnBuild(t *testing.T, opset int64, attrs []*onnx.Attribute, shapes [][]int, outputs int, train bool) (*builder[float64], []*val[float64]) {
	t.Helper()
	g := &onnx.Graph{Name: "test"}
	var ins []*onnx.Value
	for i := range shapes {
		ins = append(ins, g.AddInput(fmt.Sprint("in", i), nil))
	}
	names := []string{"y", "mean", "var", "saved_mean", "saved_var"}[:outputs]
	n := g.AddNode("BatchNormalization", "bn", ins, names, attrs...)
	g.Outputs = n.Outputs
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: opset}}, Graph: g}
	p := &Program{model: m}
	b := &builder[float64]{p: p, g: G.NewGraph(), opset: opset, mode: buildMode{train: train}, vals: map[*onnx.Value]*val[float64]{}}
	feeds := map[*onnx.Value]*val[float64]{}
	for i, s := range shapes {
		feeds[ins[i]] = b.constant(fmt.Sprint("in", i), make([]float64, size(s)), s)
		feeds[ins[i]].need = true
	}
	if err := b.build(g, feeds); err != nil {
		t.Fatal(err)
	}
	var outs []*val[float64]
	for _, v := range n.Outputs {
		if x := b.vals[v]; x != nil {
			outs = append(outs, x)
		}
	}
	return b, outs
}

// bnModel is a model of one BatchNormalization node over input X of the
// given shape, with scale, B, mean and var initializers.
func bnModel(t *testing.T, opset int64, shape []int, attrs []*onnx.Attribute, outputs int, stats [4][]float32) *onnx.Model {
	t.Helper()
	g := &onnx.Graph{Name: "bn"}
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	x := g.AddInput("X", onnx.TensorType(onnx.Float, dims...))
	ins := []*onnx.Value{x}
	for i, name := range []string{"scale", "B", "mean", "var"} {
		tt, err := onnx.FromFloat32(name, []int64{int64(shape[1])}, stats[i])
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, g.AddInitializer(tt))
	}
	names := []string{"Y", "running_mean", "running_var", "saved_mean", "saved_var"}[:outputs]
	n := g.AddNode("BatchNormalization", "bn", ins, names, attrs...)
	g.Outputs = n.Outputs
	return &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: opset}}, Graph: g}
}

// bnBatchStats returns the per-channel mean, biased and unbiased variance
// of x [N, C, rest...].
func bnBatchStats(x []float64, shape []int) (mean, biased, unbiased []float64) {
	n, c, hw := shape[0], shape[1], size(shape[2:])
	m := float64(n * hw)
	for ch := 0; ch < c; ch++ {
		var s, q float64
		for i := 0; i < n; i++ {
			for j := 0; j < hw; j++ {
				s += x[(i*c+ch)*hw+j]
			}
		}
		mu := s / m
		for i := 0; i < n; i++ {
			for j := 0; j < hw; j++ {
				d := x[(i*c+ch)*hw+j] - mu
				q += d * d
			}
		}
		mean, biased, unbiased = append(mean, mu), append(biased, q/m), append(unbiased, q/(m-1))
	}
	return mean, biased, unbiased
}

func TestBatchNormRunningStatistics(t *testing.T) {
	for _, shape := range [][]int{{5, 3}, {3, 3, 2, 5}} {
		stats := [4][]float32{{1, 0.5, 2}, {0.1, -0.2, 0.3}, {0.2, -0.1, 0.05}, {1.5, 0.7, 0.9}}
		momentum := float32(0.8)
		m := bnModel(t, 15, shape, []*onnx.Attribute{aFloat("momentum", momentum)}, 1, stats)
		p, err := Compile(m, Options{Float64: true})
		if err != nil {
			t.Fatal(err)
		}
		x := randomInputs(42, [][]int{shape})[0]
		xd := func() *tensor.Dense {
			return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), x...)))
		}
		mean, _, unbiased := bnBatchStats(x, shape)
		wantMean, wantVar := make([]float64, 3), make([]float64, 3)
		for ch := range wantMean {
			wantMean[ch], wantVar[ch] = float64(stats[2][ch]), float64(stats[3][ch])
		}
		check := func(when string) {
			t.Helper()
			gm, gv := p.Param("mean").Value.Data().([]float64), p.Param("var").Value.Data().([]float64)
			for ch := range wantMean {
				if math.Abs(gm[ch]-wantMean[ch]) > 1e-6 || math.Abs(gv[ch]-wantVar[ch]) > 1e-6 {
					t.Fatalf("%v %s: running mean %v var %v, want %v %v", shape, when, gm, gv, wantMean, wantVar)
				}
			}
		}
		// Inference leaves them alone and normalises with them.
		out, err := p.Run(xd())
		if err != nil {
			t.Fatal(err)
		}
		check("after Run")
		in := [][]float64{x, f64s(stats[0]), f64s(stats[1]), f64s(stats[2]), f64s(stats[3])}
		want := bnRef(in, shape, false, float64(float32(1e-5)))
		if d := maxAbsDiff(float64sOf(out[0]), want); d > 1e-6 {
			t.Errorf("%v inference output off by %g", shape, d)
		}
		// Each training step updates them once, as PyTorch does:
		// running = running*momentum + batch*(1-momentum), with the
		// unbiased batch variance.
		mom := float64(momentum)
		for step := 1; step <= 2; step++ {
			req := &Request{Inputs: []*tensor.Dense{xd()}, Train: true}
			if step == 2 && len(shape) == 2 {
				// A step with a loss and gradients runs forward once too.
				tg, _ := p.OneHot([]int{0, 1, 2, 0, 1}, 3)
				req.Loss, req.Targets, req.Params = CrossEntropy, tg, []string{"scale", "B"}
			}
			res, err := p.Step(req)
			if err != nil {
				t.Fatal(err)
			}
			for ch := range wantMean {
				wantMean[ch] = wantMean[ch]*mom + mean[ch]*(1-mom)
				wantVar[ch] = wantVar[ch]*mom + unbiased[ch]*(1-mom)
			}
			check(fmt.Sprintf("after training step %d", step))
			// Training output uses the batch statistics.
			want := bnRef(in, shape, true, float64(float32(1e-5)))
			if d := maxAbsDiff(float64sOf(res.Outputs[0]), want); d > 1e-6 {
				t.Errorf("%v training output off by %g", shape, d)
			}
		}
	}
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func TestBatchNormStatisticsOutputs(t *testing.T) {
	// ONNX's outputs (opset 14+ training_mode, opset 7/9 five outputs) use
	// the biased variance, as ONNX's reference does; an inference Run of
	// such a graph leaves the parameters alone.
	shape := []int{3, 3, 2, 2}
	stats := [4][]float32{{1, 0.5, 2}, {0.1, -0.2, 0.3}, {0.2, -0.1, 0.05}, {1.5, 0.7, 0.9}}
	x := randomInputs(43, [][]int{shape})[0]
	mean, biased, _ := bnBatchStats(x, shape)
	for _, c := range []struct {
		opset   int64
		attrs   []*onnx.Attribute
		outputs int
	}{
		{15, []*onnx.Attribute{aInt("training_mode", 1)}, 3},
		{9, nil, 5},
		{7, nil, 5},
	} {
		m := bnModel(t, c.opset, shape, c.attrs, c.outputs, stats)
		p, err := Compile(m, Options{Float64: true})
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.Run(tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), x...))))
		if err != nil {
			t.Fatal(err)
		}
		for ch := 0; ch < 3; ch++ {
			want := []float64{
				float64(stats[2][ch])*0.9 + mean[ch]*0.1,
				float64(stats[3][ch])*0.9 + biased[ch]*0.1,
				mean[ch], biased[ch],
			}
			for i := 1; i < c.outputs; i++ {
				if got := float64sOf(out[i])[ch]; math.Abs(got-want[i-1]) > 1e-6 {
					t.Errorf("opset %d output %d [%d] = %g, want %g", c.opset, i, ch, got, want[i-1])
				}
			}
		}
		if got := p.Param("mean").Value.Data().([]float64); math.Abs(got[0]-0.2) > 1e-7 {
			t.Errorf("opset %d: Run changed the running mean to %v", c.opset, got)
		}
	}
}

// BatchNormalization on the activations of a ResNet's first stage, float32,
// forward and the three gradients.
func BenchmarkBatchNormResNet(b *testing.B) {
	for _, train := range []bool{false, true} {
		b.Run(fmt.Sprintf("train=%v", train), func(b *testing.B) {
			shape := []int{8, 64, 56, 56}
			k := &batchNorm[float32]{shape: shape, n: 8, c: 64, hw: 56 * 56, eps: 1e-5, momentum: 0.9, train: train}
			var in [][]float32
			for i, s := range [][]int{shape, {64}, {64}, {64}, {64}} {
				v := make([]float32, size(s))
				for j := range v {
					v[j] = float32(j%17)/17 + float32(i)
				}
				in = append(in, v)
			}
			out := make([]float32, size(shape))
			gin := make([]float32, size(shape))
			b.SetBytes(int64(4 * size(shape)))
			b.ResetTimer()
			for range b.N {
				k.forward(in, out)
				for i := 0; i < 3; i++ {
					k.backward(i, in, out, out, gin[:len(in[i])])
				}
			}
		})
	}
}

// The three gradients of a training BatchNormalization share one pass of
// sums over x and dY per run: a later call with another dY, or after a
// new forward pass on changed x, computes them anew.
func TestBatchNormSharedSums(t *testing.T) {
	shape := []int{4, 3, 5}
	in := bnInputs(43, shape)
	k := &batchNorm[float64]{shape: shape, n: 4, c: 3, hw: 5, eps: 1e-5, momentum: 0.9, train: true}
	out := make([]float64, size(shape))
	rng := rand.New(rand.NewSource(3))
	gout := func() []float64 {
		g := make([]float64, size(shape))
		for i := range g {
			g[i] = rng.Float64()*2 - 1
		}
		return g
	}
	fresh := func(which int, g []float64) []float64 {
		k2 := *k
		k2.sums = bnSums{}
		gin := make([]float64, len(in[which]))
		if err := k2.backward(which, in, out, g, gin); err != nil {
			t.Fatal(err)
		}
		return gin
	}
	check := func(what string, which int, g []float64) {
		gin := make([]float64, len(in[which]))
		if err := k.backward(which, in, out, g, gin); err != nil {
			t.Fatal(err)
		}
		if want := fresh(which, g); !slices.Equal(gin, want) {
			t.Errorf("%s: gradient %d %v, computed afresh %v", what, which, gin, want)
		}
	}
	if err := k.forward(in, out); err != nil {
		t.Fatal(err)
	}
	g1 := gout()
	check("another dY", 1, gout())
	for which := range 3 {
		check("same run and data", which, g1)
	}
	in[0][7] += 1
	if err := k.forward(in, out); err != nil {
		t.Fatal(err)
	}
	check("changed x, same dY", 1, g1)
}

// A Relu fused into a BatchNormalization (or an Add) gives the output and
// the gradients of the two in sequence: the gradient passes where the
// output is positive. Checked in float32 (the branchless masks) and
// float64, in training and inference form.
func TestFusedReluGradients(t *testing.T) {
	testFusedRelu[float32](t)
	testFusedRelu[float64](t)
}

func testFusedRelu[T Float](t *testing.T) {
	shape := []int{3, 4, 10}
	conv := func(v []float64) []T {
		out := make([]T, len(v))
		for i, x := range v {
			out[i] = T(x)
		}
		return out
	}
	var in [][]T
	for _, v := range bnInputs(47, shape) {
		in = append(in, conv(v))
	}
	rng := rand.New(rand.NewSource(5))
	gout := make([]T, size(shape))
	for i := range gout {
		gout[i] = T(rng.Float64()*2 - 1)
	}
	close := func(what string, got, want []T) {
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-5*math.Max(1, math.Abs(float64(want[i]))) {
				t.Fatalf("%T %s [%d]: fused %v, in sequence %v", got[0], what, i, got[i], want[i])
			}
		}
	}
	relu := &unary[T]{name: "Relu", shape: shape}
	for _, train := range []bool{true, false} {
		plain := &batchNorm[T]{shape: shape, n: 3, c: 4, hw: 10, eps: 1e-5, momentum: 0.9, train: train}
		fused := *plain
		fused.relu = true
		y, z, out := make([]T, size(shape)), make([]T, size(shape)), make([]T, size(shape))
		if err := plain.forward(in, y); err != nil {
			t.Fatal(err)
		}
		if err := relu.forward([][]T{y}, z); err != nil {
			t.Fatal(err)
		}
		if err := fused.forward(in, out); err != nil {
			t.Fatal(err)
		}
		close("output", out, z)
		positive := 0
		for _, v := range z {
			if v > 0 {
				positive++
			}
		}
		if positive == 0 || positive == len(z) {
			t.Fatalf("%d of %d outputs positive: the mask is not exercised", positive, len(z))
		}
		gy := make([]T, len(y)) // the gradient reaching the BatchNormalization
		if err := relu.backward(0, [][]T{y}, z, gout, gy); err != nil {
			t.Fatal(err)
		}
		for which := range 3 {
			if !train && which > 0 {
				continue
			}
			want, got := make([]T, len(in[which])), make([]T, len(in[which]))
			if err := plain.backward(which, in, y, gy, want); err != nil {
				t.Fatal(err)
			}
			if err := fused.backward(which, in, out, gout, got); err != nil {
				t.Fatal(err)
			}
			close(fmt.Sprintf("train %v, gradient %d", train, which), got, want)
		}
	}
	// An Add with a Relu: each input's gradient is the output's where the
	// sum is positive.
	b := make([]T, size(shape))
	for i := range b {
		b[i] = T(rng.Float64()*2 - 1)
	}
	one := func(a, b, y T) T { return 1 }
	add, err := newBinary("Add", shape, shape, func(a, b T) T { return a + b }, one, one)
	if err != nil {
		t.Fatal(err)
	}
	if !add.fuseRelu(true) {
		t.Fatal("an Add does not fuse a Relu")
	}
	out := make([]T, size(shape))
	if err := add.forward([][]T{in[0], b}, out); err != nil {
		t.Fatal(err)
	}
	for which := range 2 {
		got := make([]T, len(out))
		if err := add.backward(which, [][]T{in[0], b}, out, gout, got); err != nil {
			t.Fatal(err)
		}
		for i, g := range got {
			if want := gout[i] * step(in[0][i]+b[i]); g != want || out[i] != max(in[0][i]+b[i], 0) {
				t.Fatalf("%T Add+Relu, input %d [%d]: output %v, gradient %v, want %v", g, which, i, out[i], g, want)
			}
		}
	}
}
