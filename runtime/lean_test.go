package runtime

import (
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// A run (leanRun) computes exactly what Gorgonia's tape machine computes
// on the same graph, forward and backward, holds fewer bytes at once than
// the tape machine's one buffer per node, and in the steady state takes
// every buffer from its pool. Buffers for kernels that say they write every
// element come filled with NaN, so an element one leaves shows.
func TestLeanRunEqualsTapeMachine(t *testing.T) {
	leanPoison = true
	defer func() { leanPoison = false }()
	for _, name := range []string{"resnet_tiny_op13_bn", "resnet_tiny_op17_folded", "cnn", "stn"} {
		p := compileTestModel(t, name)
		shape := []int{3}
		for _, d := range p.inputs[0].Type.Shape[1:] {
			shape = append(shape, int(d.Value))
		}
		x := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(ramp(shape)))
		out, err := p.Run(x)
		if err != nil {
			t.Fatal(err)
		}
		targets, err := p.OneHot([]int{0, 1, 2}, out[0].Shape()[1])
		if err != nil {
			t.Fatal(err)
		}
		var params []string
		for _, prm := range p.params {
			if !strings.Contains(prm.Name, "running") {
				params = append(params, prm.Name)
			}
		}
		for _, req := range []*Request{
			{Inputs: []*tensor.Dense{x}},
			{Inputs: []*tensor.Dense{x}, Targets: targets, Loss: CrossEntropy, Params: params, InputGrads: true},
		} {
			what := name + " inference"
			if req.Loss != NoLoss {
				what = name + " gradients"
			}
			lean, err := p.Step(req)
			if err != nil {
				t.Fatal(err)
			}
			s := p.cache[planOf(req).key()].(*graphSession[float32])
			pooled2, fresh2 := leanMemory(s.lean, 4, func(*G.Node) int { return 0 })
			pooled, fresh := pooled2[0], fresh2[0]
			all := int64(0)
			for _, n := range s.g.AllNodes() {
				if n.Op() != nil {
					all += int64(n.Shape().TotalSize()) * 4
				}
			}
			// Values of the same size share buffers: fewer bytes than the
			// tape machine's where sizes repeat (a ResNet's blocks), never
			// more.
			if pooled+fresh > all || strings.HasPrefix(name, "resnet") && pooled+fresh >= all {
				t.Errorf("%s: the lean run holds %d bytes, the tape machine %d", what, pooled+fresh, all)
			}
			// Every value but the scalars comes from an op of graft's:
			// Gorgonia's sums of a residual input's two gradients too.
			for _, st := range s.lean {
				if st.op == nil && len(st.node.Shape()) > 0 && strings.HasPrefix(name, "resnet") {
					t.Errorf("%s: %s is computed by Gorgonia's %s, into a buffer of its own", what, st.node.Name(), st.node.Op())
				}
			}
			made := s.pool.made
			if _, err := p.Step(req); err != nil {
				t.Fatal(err)
			}
			if s.pool.made != made {
				t.Errorf("%s: the second run allocated %d buffers of its own", what, s.pool.made-made)
			}
			tape := tapeRun(t, s, req)
			same := func(part string, a, b *tensor.Dense) {
				if !slices.Equal(a.Data().([]float32), b.Data().([]float32)) {
					t.Errorf("%s: the lean run's %s differs from the tape machine's", what, part)
				}
			}
			same("output", lean.Outputs[0], tape.Outputs[0])
			if lean.Loss != tape.Loss {
				t.Errorf("%s: loss %v, the tape machine's %v", what, lean.Loss, tape.Loss)
			}
			for _, name := range req.Params {
				same("gradient of "+name, lean.ParamGrads[name], tape.ParamGrads[name])
			}
			if req.InputGrads {
				same("input gradient", lean.InputGrads[0], tape.InputGrads[0])
			}
		}
	}
}

// tapeRun runs a session's graph on Gorgonia's tape machine, which keeps
// every node's value for the whole run: the reference for leanRun's order
// and recycling.
func tapeRun(t *testing.T, s *graphSession[float32], req *Request) *Result {
	t.Helper()
	vm := G.NewTapeMachine(s.g)
	defer vm.Close()
	for i, n := range s.inputs {
		if err := G.Let(n, req.Inputs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if s.target != nil {
		if err := G.Let(s.target, req.Targets); err != nil {
			t.Fatal(err)
		}
	}
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	res := &Result{ParamGrads: map[string]*tensor.Dense{}}
	for _, n := range s.outputs {
		res.Outputs = append(res.Outputs, copyDense[float32](n.Value()))
	}
	if s.loss != nil {
		res.Loss = scalarOf(s.loss.Value())
	}
	for i, n := range s.paramGrads {
		res.ParamGrads[s.paramNames[i]] = copyDense[float32](n.Value())
	}
	for _, n := range s.inputGrads {
		res.InputGrads = append(res.InputGrads, copyDense[float32](n.Value()))
	}
	return res
}

// ramp fills a tensor of shape with values that vary along every axis.
func ramp(shape []int) []float32 {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%97)/97 - 0.4
	}
	return v
}

func compileTestModel(t *testing.T, name string) *Program {
	t.Helper()
	m, err := onnx.Load("../testdata/models/" + name + "/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Index tables (broadcasting, Transpose, Slice, ...) are built when their
// kernel first runs: estimating a session allocates nothing in proportion
// to the activations, and the estimate counts the tables as scratch.
func TestEstimateBuildsNoTables(t *testing.T) {
	g := &onnx.Graph{Name: "broadcast"}
	x := g.AddInput("x", &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("batch"), onnx.Fixed(8), onnx.Fixed(2000), onnx.Fixed(2000)}})
	// A per-channel constant: not a suffix of the shape, so the Add needs
	// an index table (a scalar or a bias along the last axis does not).
	c, err := onnx.FromFloat32("c", []int64{1, 8, 1, 1}, []float32{1, 2, 3, 4, 5, 6, 7, 8})
	if err != nil {
		t.Fatal(err)
	}
	add := g.AddNode("Add", "add", []*onnx.Value{x, g.AddInitializer(c)}, []string{"a"})
	tr := g.AddNode("Transpose", "tr", add.Outputs, []string{"y"}, &onnx.Attribute{Name: "perm", Type: onnx.AttrInts, Ints: []int64{0, 1, 3, 2}})
	g.Outputs = tr.Outputs
	p, err := Compile(&onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 17}}, Graph: g}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	elems := int64(4 * 8 * 2000 * 2000)
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	est, err := p.Estimate(Plan{Inputs: [][]int{{4, 8, 2000, 2000}}})
	if err != nil {
		t.Fatal(err)
	}
	goruntime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("estimating allocated %d bytes; the two tables would take %d", got, 2*4*elems)
	}
	if est.Scratch < 2*4*elems {
		t.Errorf("the estimate's scratch is %d bytes, want at least the two tables' %d", est.Scratch, 2*4*elems)
	}
}

// inferenceSession is p's cached float32 inference session for one input shape.
func inferenceSession(p *Program, shape []int) *graphSession[float32] {
	return p.cache[Plan{Inputs: [][]int{shape}}.key()].(*graphSession[float32])
}
