package surgery

import (
	"bytes"
	"fmt"
	"math"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/data"
	"gorgonia.org/tensor"
)

const lenet = "../testdata/models/lenet_mnist/model.onnx"

// stnParams are the parameters InsertSpatialTransformer adds.
var stnParams = []string{
	"stn.localization.0.weight", "stn.localization.0.bias", "stn.localization.3.weight", "stn.localization.3.bias",
	"stn.fc_loc.0.weight", "stn.fc_loc.0.bias", "stn.fc_loc.2.weight", "stn.fc_loc.2.bias",
}

// heldoutDigits returns the first n held-out MNIST digits [n, 1, 28, 28].
func heldoutDigits(t *testing.T, n int) *tensor.Dense {
	t.Helper()
	imgs, err := data.ReadIDXImages("../testdata/models/lenet_mnist/heldout-images-idx3-ubyte.gz")
	if err != nil {
		t.Fatal(err)
	}
	return imgs.Tensor(0, n)
}

func runModel(t *testing.T, m *onnx.Model, opts runtime.Options, x *tensor.Dense, outputs ...string) []*tensor.Dense {
	t.Helper()
	if len(outputs) > 0 {
		m, _ = m.Clone()
		m.Graph.Outputs = nil
		for _, o := range outputs {
			m.Graph.Outputs = append(m.Graph.Outputs, m.Graph.Value(o))
		}
	}
	p, err := runtime.Compile(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(x)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func maxDiff(a, b *tensor.Dense) float64 {
	d := 0.0
	switch av := a.Data().(type) {
	case []float32:
		for i, v := range b.Data().([]float32) {
			d = max(d, math.Abs(float64(av[i]-v)))
		}
	case []float64:
		for i, v := range b.Data().([]float64) {
			d = max(d, math.Abs(av[i]-v))
		}
	}
	return d
}

// The edited LeNet starts as the classifier it was: theta is the identity,
// the outputs those of the model without the transformer; the opset is
// raised from 13 to 16, the head, input, contract and parameters
// otherwise unchanged, and the ONNX checker accepts it.
func TestInsertSpatialTransformerStartsAsIdentity(t *testing.T) {
	orig := load(t, lenet)
	m, _ := orig.Clone()
	if err := Apply(m, InsertSpatialTransformer(STNOptions{Seed: 1})); err != nil {
		t.Fatal(err)
	}
	if v := m.OpsetVersion(""); v != 16 || orig.IRVersion != 7 || m.IRVersion != 8 {
		t.Errorf("opset %d and IR version %d after the edit (IR %d before), want 16 (GridSample's) and 8", v, m.IRVersion, orig.IRVersion)
	}
	x := heldoutDigits(t, 8)
	out := runModel(t, m, runtime.Options{}, x, "output", STNTheta, STNOutput)
	want := runModel(t, orig, runtime.Options{}, x)[0]
	if d := maxDiff(out[0], want); d > 1e-5 {
		t.Errorf("outputs differ from the classifier's without the transformer by %g", d)
	}
	// The base grid's float32 rounding moves samples by ~1e-7 pixels.
	if d := maxDiff(out[2], x); d > 2e-6 {
		t.Errorf("the transformed images differ from the inputs by %g at the identity transform", d)
	}
	theta := out[1].Data().([]float32)
	for i, v := range theta {
		if want := []float32{1, 0, 0, 0, 1, 0}[i%6]; v != want {
			t.Fatalf("theta[%d] = %g, want the identity's %g", i, v, want)
		}
	}
	if h, err := FindHead(m.Graph); err != nil || h.Node.Name != "/fc2/Gemm" {
		t.Errorf("head after the edit: %v, %v; want the classifier's /fc2/Gemm", h, err)
	}
	cb, err := contract.Derive(orig)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := contract.Derive(m)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cb.Input) != fmt.Sprint(ca.Input) || cb.Output.Kind != ca.Output.Kind || ca.Output.NumClasses != 10 {
		t.Errorf("contract changed: %+v -> %+v", cb, ca)
	}
	var names []string
	for _, p := range Params(m) {
		names = append(names, p.Name)
	}
	for _, p := range Params(orig) {
		names = slices.DeleteFunc(names, func(n string) bool { return n == p.Name })
	}
	if !slices.Equal(names, stnParams) {
		t.Errorf("new parameters %v, want %v", names, stnParams)
	}
	path := filepath.Join(t.TempDir(), "stn.onnx")
	if err := onnx.Save(m, path); err != nil {
		t.Fatal(err)
	}
	onnxtest.CheckModel(t, path)
}

// randomTheta gives the last localisation layer random weights, so that
// each digit gets its own transform, well away from the identity.
func randomTheta(t *testing.T, m *onnx.Model) {
	t.Helper()
	rng := rand.New(rand.NewSource(5))
	w := make([]float32, 6*32)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	tw, err := onnx.FromFloat32("stn.fc_loc.2.weight", []int64{6, 32}, w)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := onnx.FromFloat32("stn.fc_loc.2.bias", []int64{6}, []float32{0.9, 0.2, 0.1, -0.15, 1.1, -0.05})
	if err != nil {
		t.Fatal(err)
	}
	m.Graph.Value("stn.fc_loc.2.weight").Const = tw
	m.Graph.Value("stn.fc_loc.2.bias").Const = tb
}

// At opset 16 the grid is written as MatMul and Reshape, from opset 20 it
// is AffineGrid: both give the same transformed digits and outputs in
// graft, and onnxruntime runs each with graft's outputs.
func TestSpatialTransformerInORT(t *testing.T) {
	x := heldoutDigits(t, 8)
	in := filepath.Join(t.TempDir(), "input_0.pb")
	xt, err := onnx.FromFloat32("input", []int64{8, 1, 28, 28}, x.Data().([]float32))
	if err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(xt, in); err != nil {
		t.Fatal(err)
	}
	var outs [][]*tensor.Dense
	for _, opset := range []int64{13, 20} {
		m := load(t, lenet)
		m.Opsets[0].Version = opset // LeNet's ops mean the same at 20
		if err := Apply(m, InsertSpatialTransformer(STNOptions{Seed: 1})); err != nil {
			t.Fatal(err)
		}
		hasAffine := len(Find(m.Graph, Query{Op: "AffineGrid"})) == 1
		if hasAffine != (opset == 20) {
			t.Fatalf("opset %d: AffineGrid node %v, want it only from opset 20", opset, hasAffine)
		}
		randomTheta(t, m)
		out := runModel(t, m, runtime.Options{}, x, "output", STNTheta, STNOutput)
		outs = append(outs, out)
		if th := out[1].Data().([]float32); math.Abs(float64(th[0]-th[6])) < 1e-3 {
			t.Fatalf("theta %v: want a transform of its own for each digit", th[:12])
		}
		path := filepath.Join(t.TempDir(), "stn.onnx")
		if err := onnx.Save(m, path); err != nil {
			t.Fatal(err)
		}
		ort := onnxtest.RunORT(t, path, in)
		want, err := onnx.FromFloat32("output", []int64{8, 10}, out[0].Data().([]float32))
		if err != nil {
			t.Fatal(err)
		}
		d, err := onnxtest.MaxAbsDiff(ort[0], want)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("opset %d -> %d: onnxruntime within %.2g of graft", opset, m.OpsetVersion(""), d)
		if err := onnxtest.AllClose(ort[0], want, 1e-5, 1e-5); err != nil {
			t.Errorf("opset %d: onnxruntime differs from graft: %v", opset, err)
		}
	}
	// The two grids differ in float32 rounding only: the transformed
	// pixels (in [0, 1]) by about 1e-6; the log-probabilities, up to
	// about 20 in size, a few times that.
	for i, c := range []struct {
		what string
		tol  float64
	}{{"outputs", 2e-5}, {"theta", 0}, {"transformed digits", 3e-6}} {
		d := maxDiff(outs[0][i], outs[1][i])
		t.Logf("%s: the decomposed grid and AffineGrid within %.2g", c.what, d)
		if d > c.tol {
			t.Errorf("%s: the decomposed grid and AffineGrid differ by %g", c.what, d)
		}
	}
}

// The transformer trains end to end: the loss's gradient with respect to
// the localisation net's weights, through GridSample and the grid,
// matches float64 central differences.
func TestSpatialTransformerGradient(t *testing.T) {
	m := load(t, lenet)
	if err := Apply(m, InsertSpatialTransformer(STNOptions{Seed: 1})); err != nil {
		t.Fatal(err)
	}
	randomTheta(t, m)
	p, err := runtime.Compile(m, runtime.Options{Float64: true})
	if err != nil {
		t.Fatal(err)
	}
	x32 := heldoutDigits(t, 4).Data().([]float32)
	x64 := make([]float64, len(x32))
	for i, v := range x32 {
		x64[i] = float64(v)
	}
	x := tensor.New(tensor.WithShape(4, 1, 28, 28), tensor.WithBacking(x64))
	targets, err := p.OneHot([]int{3, 1, 4, 1}, 10)
	if err != nil {
		t.Fatal(err)
	}
	req := &runtime.Request{Inputs: []*tensor.Dense{x}, Targets: targets, Loss: runtime.NLL, Params: stnParams}
	res, err := p.Step(req)
	if err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		r, err := p.Step(&runtime.Request{Inputs: req.Inputs, Targets: targets, Loss: runtime.NLL})
		if err != nil {
			t.Fatal(err)
		}
		return r.Loss
	}
	const h = 1e-6
	checked := 0
	for _, name := range stnParams {
		v := p.Param(name).Value.Data().([]float64)
		g := res.ParamGrads[name].Data().([]float64)
		for _, i := range []int{0, len(v) / 2, len(v) - 1} {
			old := v[i]
			v[i] = old + h
			up := loss()
			v[i] = old - h
			down := loss()
			v[i] = old
			fd := (up - down) / (2 * h)
			if math.Abs(fd-g[i]) > 1e-6+1e-4*math.Abs(fd) {
				t.Errorf("%s[%d]: gradient %.9g, central difference %.9g", name, i, g[i], fd)
			}
			checked++
		}
	}
	if g := res.ParamGrads["stn.fc_loc.2.bias"].Data().([]float64); g[0] == 0 && g[2] == 0 {
		t.Errorf("no gradient reaches theta: %v", g)
	}
	t.Logf("%d gradient elements match central differences", checked)
}

// With normalisation inside the model, the transformer samples the
// normalised image: the contract still sees the normalisation. A stored
// trainable set gains the transformer's weights.
func TestInsertSpatialTransformerAfterNormalization(t *testing.T) {
	m := load(t, lenet)
	mean, std := []float32{0.1307}, []float32{0.3081}
	if err := Apply(m, Normalize("", mean, std), Freeze(Backbone())); err != nil {
		t.Fatal(err)
	}
	before, err := Trainable(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(m, InsertSpatialTransformer(STNOptions{})); err != nil {
		t.Fatal(err)
	}
	c, err := contract.Derive(m)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Input.NormalizedInside || c.Input.Mean[0] != mean[0] || c.Input.Std[0] != std[0] {
		t.Errorf("contract input after the edit: %+v, want the normalisation inside", c.Input)
	}
	if in := m.Graph.Node("stn/conv1").Input(0); in.Producer() == nil || in.Producer().Name != NormalizeNode {
		t.Errorf("the localisation net reads %q, want the normalised input", in.Name)
	}
	after, err := Trainable(m)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(before, stnParams...); !slices.Equal(after, want) {
		t.Errorf("trainable set %v, want %v", after, want)
	}
}

func TestInsertSpatialTransformerErrors(t *testing.T) {
	image := func(opset int64, dims ...onnx.Dim) *onnx.Model {
		g := &onnx.Graph{Name: "g"}
		x := g.AddInput("x", &onnx.Type{Elem: onnx.Float, Shape: dims})
		g.Outputs = []*onnx.Value{g.AddNode("Relu", "relu", []*onnx.Value{x}, []string{"y"}).Outputs[0]}
		return newModel(g, opset)
	}
	n, f := onnx.Symbolic("N"), onnx.Fixed
	roi := image(13, n, f(1), f(28), f(28))
	roi.Graph.AddNode("RoiAlign", "roi", []*onnx.Value{roi.Graph.Outputs[0]}, []string{"r"})
	twice := load(t, lenet)
	if err := Apply(twice, InsertSpatialTransformer(STNOptions{})); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		m    *onnx.Model
		opts STNOptions
		want string
	}{
		{"symbolic size", image(16, n, f(1), onnx.Symbolic("H"), onnx.Symbolic("W")), STNOptions{}, `input "x" has shape [N,1,H,W]: want NCHW images with fixed channels, height and width`},
		{"not an image", image(16, n, f(784)), STNOptions{}, `input "x" has shape [N,784]`},
		{"too small", image(16, n, f(1), f(12), f(12)), STNOptions{}, `input "x" is 12x12: the localisation net needs at least 16x16`},
		{"old opset", image(11, n, f(1), f(28), f(28)), STNOptions{}, "GridSample needs opset 16 and the model imports opset 11; raising it past 13"},
		{"RoiAlign", roi, STNOptions{}, `it cannot be raised: the model has RoiAlign`},
		{"twice", twice, STNOptions{}, `already has a value "stn.localization.0.weight"`},
		{"no such input", load(t, lenet), STNOptions{Input: "pixels"}, `no graph input named "pixels"`},
	} {
		before := encode(t, c.m)
		err := Apply(c.m, InsertSpatialTransformer(c.opts))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
		if !bytes.Equal(before, encode(t, c.m)) {
			t.Errorf("%s: the model changed although the edit failed", c.name)
		}
	}
}
