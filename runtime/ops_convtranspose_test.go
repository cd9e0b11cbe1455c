package runtime

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"gorgonia.org/tensor"
)

var convTransposeCases = []opCase{
	{op: "ConvTranspose", shapes: [][]int{{2, 3, 3, 4}, {3, 2, 3, 3}, {2}}, attrs: []*onnx.Attribute{aInts("strides", 2, 2), aInts("pads", 1, 0, 0, 1)}},
	{op: "ConvTranspose", shapes: [][]int{{1, 4, 3, 5}, {4, 3, 3, 2}, {6}}, attrs: []*onnx.Attribute{aInt("group", 2), aInts("strides", 2, 3), aInts("output_padding", 1, 2), aInts("dilations", 1, 2), aInts("pads", 1, 1, 2, 0)}},
	{op: "ConvTranspose", shapes: [][]int{{2, 2, 5}, {2, 3, 3}, {3}}, attrs: []*onnx.Attribute{aInts("strides", 2), aInts("output_padding", 1), aInts("dilations", 2)}},
	{op: "ConvTranspose", shapes: [][]int{{2, 3, 3}, {3, 1, 2}}, attrs: []*onnx.Attribute{aInt("group", 3), aInts("strides", 3), aInts("pads", 1, 2)}},
	{op: "ConvTranspose", shapes: [][]int{{1, 2, 3, 3}, {2, 2, 3, 3}, {2}}, attrs: []*onnx.Attribute{aString("auto_pad", "SAME_UPPER"), aInts("strides", 2, 2)}},
	{op: "ConvTranspose", shapes: [][]int{{1, 2, 3, 3}, {2, 2, 3, 3}}, attrs: []*onnx.Attribute{aString("auto_pad", "SAME_LOWER"), aInts("strides", 2, 2)}},
	{op: "ConvTranspose", shapes: [][]int{{1, 2, 3, 3}, {2, 1, 3, 2}, {1}}, attrs: []*onnx.Attribute{aInts("strides", 3, 2), aInts("output_shape", 9, 8)}},
	{op: "ConvTranspose", shapes: [][]int{{2, 4, 3, 5}, {4, 3, 1, 1}, {3}}},
	{op: "ConvTranspose", shapes: [][]int{{1, 2, 2, 3, 2}, {2, 2, 2, 3, 2}, {2}}, attrs: []*onnx.Attribute{aInts("strides", 2, 1, 2), aInts("pads", 1, 0, 0, 0, 1, 1), aInts("output_padding", 1, 0, 1)}},
	{op: "ConvTranspose", shapes: [][]int{{1, 2, 3, 3}, {2, 2, 3, 3}}, attrs: []*onnx.Attribute{aString("auto_pad", "VALID"), aInts("strides", 2, 1)}},
}

func TestConvTransposeGradients(t *testing.T) {
	for _, c := range convTransposeCases {
		checkGrad(t, c.kernel(t), randomInputs(21, c.shapes))
	}
}

// naiveConvTranspose scatters every input element times the kernel into
// the output, straight from the ONNX definition, for the kernel's geometry.
func naiveConvTranspose(k *convTranspose[float64], x, w, b []float64) []float64 {
	s := k.shadow
	win := s.win
	r := len(win.in)
	n, cin, cout, g := s.n, s.m, s.c, s.group
	cig, cog := cin/g, cout/g
	iN, oN, kN := size(win.out), size(win.in), size(win.kernel)
	y := make([]float64, n*cout*oN)
	ipos, kpos := make([]int, r), make([]int, r)
	for img := 0; img < n; img++ {
		for ci := 0; ci < cin; ci++ {
			grp := ci / cig
			for i := 0; i < iN; i++ {
				unflatten(i, win.out, ipos)
				xv := x[(img*cin+ci)*iN+i]
				for q := 0; q < kN; q++ {
					unflatten(q, win.kernel, kpos)
					o, ok := 0, true
					for d := 0; d < r; d++ {
						p := ipos[d]*win.strides[d] + kpos[d]*win.dilations[d] - win.padsBegin[d]
						if p < 0 || p >= win.in[d] {
							ok = false
							break
						}
						o = o*win.in[d] + p
					}
					if !ok {
						continue
					}
					for co := 0; co < cog; co++ {
						y[(img*cout+grp*cog+co)*oN+o] += xv * w[(ci*cog+co)*kN+q]
					}
				}
			}
		}
	}
	if b != nil {
		for j := range y {
			y[j] += b[(j/oN)%cout]
		}
	}
	return y
}

func TestConvTransposeForwardMatchesNaive(t *testing.T) {
	// Beyond the small cases, outputs tall enough for col2im to split over
	// output rows across goroutines.
	large := []opCase{
		{op: "ConvTranspose", shapes: [][]int{{2, 6, 9, 11}, {6, 4, 3, 3}, {8}}, attrs: []*onnx.Attribute{aInt("group", 2), aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1), aInts("output_padding", 1, 1)}},
		{op: "ConvTranspose", shapes: [][]int{{1, 3, 40}, {3, 2, 5}}, attrs: []*onnx.Attribute{aInts("strides", 3), aInts("dilations", 2)}},
	}
	for _, c := range append(append([]opCase{}, convTransposeCases...), large...) {
		k := c.kernel(t).(*convTranspose[float64])
		in := randomInputs(22, c.shapes)
		var b []float64
		if len(in) > 2 {
			b = in[2]
		}
		got := make([]float64, size(k.outShape()))
		if err := k.forward(in, got); err != nil {
			t.Fatal(err)
		}
		want := naiveConvTranspose(k, in[0], in[1], b)
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-12 {
				t.Fatalf("%s: out[%d] = %v, want %v", k.describe(), i, got[i], want[i])
			}
		}
	}
}

// TestConvTransposeShapes checks output sizes against the ONNX formulas.
func TestConvTransposeShapes(t *testing.T) {
	for _, c := range []struct {
		attrs []*onnx.Attribute
		want  string
	}{
		{nil, "[1 2 5 5]"},
		{[]*onnx.Attribute{aInts("strides", 3, 2)}, "[1 2 9 7]"},
		{[]*onnx.Attribute{aInts("strides", 3, 2), aInts("output_padding", 1, 1)}, "[1 2 10 8]"},
		{[]*onnx.Attribute{aInts("strides", 3, 2), aInts("output_shape", 10, 8)}, "[1 2 10 8]"},
		{[]*onnx.Attribute{aInts("strides", 3, 2), aInts("pads", 1, 2, 1, 2)}, "[1 2 7 3]"},
		{[]*onnx.Attribute{aInts("strides", 2, 2), aString("auto_pad", "SAME_UPPER")}, "[1 2 6 6]"},
		{[]*onnx.Attribute{aInts("dilations", 2, 2)}, "[1 2 7 7]"},
	} {
		k := opCase{op: "ConvTranspose", shapes: [][]int{{1, 1, 3, 3}, {1, 2, 3, 3}}, attrs: c.attrs}.kernel(t)
		if got := fmt.Sprint(k.outShape()); got != c.want {
			t.Errorf("%s: shape %s, want %s", k.describe(), got, c.want)
		}
	}
}

// TestGeneratorGradientsFiniteDifferences builds a tiny generator
// (ConvTranspose stride 2, Relu, ConvTranspose, Flatten), compiles it in
// float64 and checks Step's input and parameter gradients against finite
// differences of the loss.
func TestGeneratorGradientsFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	param := func(g *onnx.Graph, name string, dims ...int64) *onnx.Value {
		n := 1
		for _, d := range dims {
			n *= int(d)
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.Float64() - 0.5)
		}
		tt, err := onnx.FromFloat32(name, dims, v)
		if err != nil {
			t.Fatal(err)
		}
		return g.AddInitializer(tt)
	}
	g := &onnx.Graph{Name: "generator"}
	x := g.AddInput("z", onnx.TensorType(onnx.Float, 2, 3, 2, 3))
	c1 := g.AddNode("ConvTranspose", "up1", []*onnx.Value{x, param(g, "w1", 3, 4, 3, 3), param(g, "b1", 4)}, []string{"h"},
		aInts("strides", 2, 2), aInts("pads", 1, 1, 1, 1), aInts("output_padding", 1, 1))
	relu := g.AddNode("Relu", "relu", c1.Outputs, []string{"a"})
	c2 := g.AddNode("ConvTranspose", "up2", []*onnx.Value{relu.Outputs[0], param(g, "w2", 4, 1, 2, 3), param(g, "b2", 2)}, []string{"y"},
		aInt("group", 2), aInts("strides", 1, 2), aInts("dilations", 2, 1))
	flat := g.AddNode("Flatten", "flat", c2.Outputs, []string{"out"})
	g.Outputs = flat.Outputs
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 17}}, Graph: g}
	p, err := Compile(m, Options{Float64: true})
	if err != nil {
		t.Fatal(err)
	}
	zd := make([]float64, 2*3*2*3)
	for i := range zd {
		zd[i] = rng.Float64()*2 - 1
	}
	z := tensor.New(tensor.WithShape(2, 3, 2, 3), tensor.WithBacking(zd))
	out, err := p.Run(z)
	if err != nil {
		t.Fatal(err)
	}
	// h: 2*(2-1)+1+3-2 = 4 by 2*(3-1)+1+3-2 = 6; y: 4+2 = 6 by 2*5+3 = 13.
	if got := fmt.Sprint(out[0].Shape()); got != "(2, 156)" {
		t.Fatalf("output shape %s, want (2, 156)", got)
	}
	classes := out[0].Shape()[1]
	targets, err := p.OneHot([]int{3, 100}, classes)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, prm := range p.Params() {
		names = append(names, prm.Name)
	}
	if len(names) != 4 {
		t.Fatalf("params %v, want w1, b1, w2, b2", names)
	}
	res, err := p.Step(&Request{Inputs: []*tensor.Dense{z}, Targets: targets, Loss: CrossEntropy, Params: names, InputGrads: true})
	if err != nil {
		t.Fatal(err)
	}
	f := func() float64 {
		r, err := p.Step(&Request{Inputs: []*tensor.Dense{z}, Targets: targets, Loss: CrossEntropy})
		if err != nil {
			t.Fatal(err)
		}
		return r.Loss
	}
	check := func(what string, data, grad []float64) {
		nonzero := 0
		for trial := 0; trial < 8; trial++ {
			j := rng.Intn(len(data))
			x := data[j]
			h := 1e-6
			data[j] = x + h
			lp := f()
			data[j] = x - h
			lm := f()
			data[j] = x
			num := (lp - lm) / (2 * h)
			if num != 0 {
				nonzero++
			}
			if math.Abs(num-grad[j]) > 1e-6+1e-4*math.Abs(num) {
				t.Errorf("%s[%d]: gradient %.8g, finite difference %.8g", what, j, grad[j], num)
			}
		}
		if nonzero == 0 {
			t.Errorf("%s: every sampled finite difference is 0", what)
		}
	}
	check("input", zd, float64sOf(res.InputGrads[0]))
	if len(res.ParamGrads) != 4 {
		t.Fatalf("%d parameter gradients, want 4", len(res.ParamGrads))
	}
	for name, gr := range res.ParamGrads {
		check(name, p.Param(name).Value.Data().([]float64), float64sOf(gr))
	}
}
