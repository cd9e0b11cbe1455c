package runtime

import (
	"errors"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/internal/memtest"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"gorgonia.org/tensor"
)

// hugeInputModel is a tiny classifier of [batch,1,side,side] images: a 3x3
// Conv to 4 channels, GlobalAveragePool, Flatten.
func hugeInputModel(t *testing.T, side int64) *onnx.Model {
	t.Helper()
	g := &onnx.Graph{Name: "huge_input"}
	x := g.AddInput("x", &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("batch"), onnx.Fixed(1), onnx.Fixed(side), onnx.Fixed(side)}})
	w, err := onnx.FromFloat32("w", []int64{4, 1, 3, 3}, make([]float32, 36))
	if err != nil {
		t.Fatal(err)
	}
	conv := g.AddNode("Conv", "conv", []*onnx.Value{x, g.AddInitializer(w)}, []string{"c"})
	pool := g.AddNode("GlobalAveragePool", "pool", conv.Outputs, []string{"p"})
	flat := g.AddNode("Flatten", "flat", pool.Outputs, []string{"y"})
	g.Outputs = flat.Outputs
	return &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 17}}, Graph: g}
}

func TestEstimateHugeInput(t *testing.T) {
	defer memlimit.Set(0, "")
	memlimit.Set(8<<30, "--memory-limit")
	p, err := Compile(hugeInputModel(t, 40000), Options{})
	if err != nil {
		t.Fatal(err)
	}
	est, err := p.Estimate(Plan{Inputs: [][]int{{1, 1, 40000, 40000}}})
	if err != nil {
		t.Fatal(err)
	}
	in := int64(40000*40000) * 4
	conv := int64(4*39998*39998) * 4
	// The convolution packs its GEMM's panels from a padded copy of the
	// input (convPanels), not from an im2col matrix nine times its size
	// (and a few floats past it, see convPanelsSlack).
	planes := int64(40000*40000)*4 + convPanelsSlack*4
	// GlobalAveragePool's tables: a tap per input position, 2 window
	// starts, 1 divisor.
	poolTables := int64(39998*39998)*4 + 2*4 + 4
	// The Conv's and the pooled values' buffers, kept for the next run, and
	// the output, allocated by each run; garbage: the output and the model
	// file read to decode it.
	if est.Inputs != in || est.Activations != conv+4*4+4*4 || est.Garbage != 4*4+est.Results+est.Model ||
		est.Scratch != planes+poolTables || est.Params != 36*4 || est.Results != 16 {
		t.Errorf("estimate %+v", est)
	}
	want := `running the model on input [1,1,40000,40000] (largest tensor: the output of Conv node "conv" [1,4,39998,39998] float32 (23.8 GiB)) needs 41.7 GiB, over graft's memory limit of 8.0 GiB (--memory-limit); set GRAFT_MEMORY_LIMIT or --memory-limit to change it`
	if err := est.Check(); err == nil || err.Error() != want || !errors.Is(err, ErrMemoryLimit) {
		t.Errorf("got %v\nwant %s", err, want)
	}

	// Training adds the gradients (and their results).
	tr, err := p.Estimate(Plan{Inputs: [][]int{{1, 1, 40000, 40000}}, Loss: CrossEntropy, Params: []string{"w"}, InputGrads: true})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Gradients < conv+in || tr.Results < in {
		t.Errorf("training estimate %+v lacks the input and activation gradients", tr)
	}
	if !strings.HasPrefix(tr.Check().Error(), "a training step on input [1,1,40000,40000]") {
		t.Errorf("training: %v", tr.Check())
	}

	// A small input fits, and runs.
	two, err := p.Estimate(Plan{Inputs: [][]int{{2, 1, 40000, 40000}}})
	if err != nil || two.Activations != 2*est.Activations || two.Scratch != est.Scratch {
		t.Errorf("batch 2 estimate %v, %v: want twice the activations, the same scratch", two, err)
	}
}

// The tiny model on a [1,1,60000,60000] input, with the machine's default
// limit: Step refuses before running (a plane that large is beyond the
// kernels' indexing), so the process never holds the activations. The
// input is allocated but never touched, so it takes no resident memory.
func TestHugeInputMemory(t *testing.T) {
	r := memtest.Run(t, func() error { return runZeros(t, 60000) })
	r.Want(t, `compile: GlobalAveragePool node "pool": input [1 4 59998 59998]: a plane of more than 2^31 elements is not supported`, 300<<20)
}

// The same on [1,1,40000,40000]: refused by the memory estimate.
func TestLargeInputMemory(t *testing.T) {
	r := memtest.Run(t, func() error { return runZeros(t, 40000) }, memlimit.EnvVar+"=16GiB")
	r.Want(t, `run: running the model on input [1,1,40000,40000] (largest tensor: the output of Conv node "conv" [1,4,39998,39998] float32 (23.8 GiB)) needs 41.7 GiB, over graft's memory limit of 16.0 GiB (set by GRAFT_MEMORY_LIMIT); set GRAFT_MEMORY_LIMIT or --memory-limit to change it`, 300<<20)
}

// runZeros runs hugeInputModel on one side×side image of zeros.
func runZeros(t *testing.T, side int) error {
	p, err := Compile(hugeInputModel(t, int64(side)), Options{})
	if err != nil {
		return err
	}
	x := tensor.New(tensor.WithShape(1, 1, side, side), tensor.WithBacking(make([]float32, side*side)))
	_, err = p.Run(x)
	return err
}

func TestCompileChecksParams(t *testing.T) {
	defer memlimit.Set(0, "")
	memlimit.Set(100, "--memory-limit")
	_, err := Compile(hugeInputModel(t, 8), Options{})
	want := `compile: compiling the model's parameters (largest: "w" [4,1,3,3]) needs 432 bytes, over graft's memory limit of 100 bytes (--memory-limit); set GRAFT_MEMORY_LIMIT or --memory-limit to change it`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// Sessions cached for other shapes are dropped when a new one does not fit
// beside them.
func TestSessionsDroppedToFit(t *testing.T) {
	defer memlimit.Set(0, "")
	p, err := Compile(hugeInputModel(t, 64), Options{})
	if err != nil {
		t.Fatal(err)
	}
	one, err := p.Estimate(Plan{Inputs: [][]int{{1, 1, 64, 64}}})
	if err != nil {
		t.Fatal(err)
	}
	memlimit.Set(one.Total+one.retained()/2, "--memory-limit")
	for _, batch := range []int{1, 1, 1} {
		if _, err := p.Run(tensor.New(tensor.WithShape(batch, 1, 64, 64), tensor.WithBacking(make([]float32, batch*64*64)))); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.cache) != 1 || p.retained != one.retained() {
		t.Fatalf("%d sessions, %d bytes retained", len(p.cache), p.retained)
	}
	// A second shape of the same size does not fit beside the first.
	other := tensor.New(tensor.WithShape(1, 1, 64, 64), tensor.WithBacking(make([]float32, 64*64)))
	if _, err := p.Step(&Request{Inputs: []*tensor.Dense{other}, Loss: CrossEntropy, Targets: tensor.New(tensor.WithShape(1, 4), tensor.WithBacking(make([]float32, 4)))}); err != nil {
		t.Fatal(err)
	}
	if len(p.cache) != 1 {
		t.Errorf("%d sessions cached, want the first dropped", len(p.cache))
	}
}

// A constant folded while building the graph is checked before it is made.
func TestConstantOfShapeChecked(t *testing.T) {
	g := &onnx.Graph{Name: "const"}
	x := g.AddInput("x", onnx.TensorType(onnx.Float, 1))
	shape, err := onnx.NewTensor("shape", onnx.Int64, []int64{2}, []byte{0x40, 0x9c, 0, 0, 0, 0, 0, 0, 0x40, 0x9c, 0, 0, 0, 0, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	c := g.AddNode("ConstantOfShape", "big", []*onnx.Value{g.AddInitializer(shape)}, []string{"c"},
		&onnx.Attribute{Name: "value", Type: onnx.AttrTensor, Tensor: mustFloats(t, "v", []int64{1}, 1)})
	add := g.AddNode("Add", "add", []*onnx.Value{x, c.Outputs[0]}, []string{"y"})
	g.Outputs = add.Outputs
	p, err := Compile(&onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 17}}, Graph: g}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer memlimit.Set(0, "")
	memlimit.Set(1<<30, "--memory-limit")
	_, err = p.Estimate(Plan{Inputs: [][]int{{1}}})
	want := `compile: ConstantOfShape node "big": the constant [40000,40000] needs 6.0 GiB, over graft's memory limit of 1.0 GiB (--memory-limit); set GRAFT_MEMORY_LIMIT or --memory-limit to change it`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func mustFloats(t *testing.T, name string, dims []int64, v ...float32) *onnx.Tensor {
	t.Helper()
	x, err := onnx.FromFloat32(name, dims, v)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// The estimate against the peak RSS of a process that loads ResNet-18,
// compiles it and runs three steps (a process that has done nothing else
// stays near 10 MiB). Measured on this machine, peak RSS against the
// estimate: batch 1 inference 170 MiB / 152 MiB (1.12), batch 8 inference
// 209 / 229 MiB (0.91), batch 8 with the input gradient 629 / 689 MiB
// (0.91; the garbage collector's timing decides how much of the earlier
// runs' garbage is still held). The bounds catch an estimate that drifts
// away from what a run takes.
func TestEstimateResNet18(t *testing.T) {
	path := "../testdata/big/resnet18_op17_bn/model.onnx"
	var p *Program
	if !memtest.Child() { // the child measures its own load only
		m, err := onnx.Load(path)
		if err != nil {
			onnxtest.Missing(t, "the full-size ResNet-18 (testdata/gen/setup.sh exports it): %v", err)
		}
		if p, err = Compile(m, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name  string
		batch int
		train bool
	}{{"batch1", 1, false}, {"batch8", 8, false}, {"batch8_input_gradient", 8, true}} {
		t.Run(c.name, func(t *testing.T) {
			plan := Plan{Inputs: [][]int{{c.batch, 3, 224, 224}}}
			if c.train {
				plan.Loss, plan.InputGrads = CrossEntropy, true
			}
			var est *MemoryEstimate
			if p != nil {
				var err error
				if est, err = p.Estimate(plan); err != nil {
					t.Fatal(err)
				}
			}
			r := memtest.Run(t, func() error {
				m, err := onnx.Load(path)
				if err != nil {
					return err
				}
				p, err := Compile(m, Options{})
				if err != nil {
					return err
				}
				x := tensor.New(tensor.WithShape(c.batch, 3, 224, 224), tensor.WithBacking(make([]float32, c.batch*3*224*224)))
				req := &Request{Inputs: []*tensor.Dense{x}}
				if c.train {
					req.Loss, req.InputGrads = CrossEntropy, true
					req.Targets = tensor.New(tensor.WithShape(c.batch, 1000), tensor.WithBacking(make([]float32, c.batch*1000)))
				}
				for range 3 {
					if _, err := p.Step(req); err != nil {
						return err
					}
				}
				return nil
			})
			if r.Err != "" {
				t.Fatal(r.Err)
			}
			ratio := float64(r.PeakRSS) / float64(est.Total)
			t.Logf("estimate %s, peak RSS %s: %.2f times the estimate", memlimit.Format(est.Total), memlimit.Format(r.PeakRSS), ratio)
			// The garbage a run leaves depends on when Go's collector runs:
			// inference at batch 8 measures 0.87 times the estimate on an
			// idle machine, 1.02 on a busy one.
			if ratio < 0.8 || ratio > 1.3 {
				t.Errorf("peak RSS %s is %.2f times the estimate (%v), want 0.8 to 1.3", memlimit.Format(r.PeakRSS), ratio, est)
			}
		})
	}
}
