package runtime

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// torchCase is one case of runtime/testdata/torchops (made by
// testdata/gen/activation_refs.py): an ONNX node and PyTorch's outputs and
// gradients for it.
type torchCase struct {
	Op    string
	Opset int64
}

func readTorchCase(t *testing.T, dir string) (torchCase, []*onnx.Attribute) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Op    string
		Opset int64
		Attrs map[string]any
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	var attrs []*onnx.Attribute
	for name, v := range c.Attrs {
		switch v := v.(type) {
		case string:
			attrs = append(attrs, aString(name, v))
		case json.Number:
			if i, err := v.Int64(); err == nil && !strings.ContainsAny(v.String(), ".eE") {
				attrs = append(attrs, aInt(name, i))
				continue
			}
			f, err := v.Float64()
			if err != nil {
				t.Fatal(err)
			}
			attrs = append(attrs, aFloat(name, float32(f)))
		default:
			t.Fatalf("%s: attribute %s is %T", dir, name, v)
		}
	}
	return torchCase{Op: c.Op, Opset: c.Opset}, attrs
}

// weightedSum is the loss sum(w * x) the references differentiate.
type weightedSum[T Float] struct {
	w     []T
	shape []int
}

func (k *weightedSum[T]) describe() string       { return "weightedSum" }
func (k *weightedSum[T]) outShape() []int        { return nil }
func (k *weightedSum[T]) differentiable() []bool { return []bool{true} }
func (k *weightedSum[T]) forward(in [][]T, out []T) error {
	for i, x := range in[0] {
		out[0] += k.w[i] * x
	}
	return nil
}
func (k *weightedSum[T]) backward(_ int, _ [][]T, _, gout, gin []T) error {
	for i, w := range k.w {
		gin[i] = gout[0] * w
	}
	return nil
}

// graphGrads builds c in float64 and differentiates sum(w * out) through
// Gorgonia, over every kernel the node's builder added (an Einsum of three
// operands is two), returning the output and each input's gradient.
func graphGrads(t *testing.T, c opCase, in [][]float64, w []float64) ([]float64, [][]float64) {
	t.Helper()
	b, outs := c.build(t)
	var xs G.Nodes
	for i, x := range in {
		n := b.g.ByName(fmt.Sprint("x", i))
		if len(n) != 1 {
			t.Fatalf("input x%d: %d nodes", i, len(n))
		}
		if err := G.Let(n[0], tensor.New(tensor.WithShape(c.shapes[i]...), tensor.WithBacking(x))); err != nil {
			t.Fatal(err)
		}
		xs = append(xs, n[0])
	}
	loss, err := b.apply(&weightedSum[float64]{w: w, shape: outs[0].shape}, outs[0])
	if err != nil {
		t.Fatal(err)
	}
	grads, err := G.Grad(loss.node, xs...)
	if err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(b.g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	vals := []G.Value{outs[0].node.Value()}
	for _, g := range grads {
		vals = append(vals, g.Value())
	}
	data, err := dataOf[float64](vals)
	if err != nil {
		t.Fatal(err)
	}
	return data[0], data[1:]
}

// forwardTol loosens the float64 forward comparison where the ONNX node
// cannot say what PyTorch computes: HardSigmoid's alpha is a float32
// attribute, 1/6 rounded.
var forwardTol = map[string]float64{"hardsigmoid_mobilenet": 1e-7}

// The activation, normalisation, Min/Max and Einsum kernels match
// PyTorch: outputs of the compiled node in float64 and float32, and the
// gradients of sum(w * output) in float64, at PyTorch's kinks and ties too.
func TestTorchReferences(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/torchops/*")
	if len(dirs) != 28 {
		t.Fatalf("found %d reference cases, want 28 (run testdata/gen/activation_refs.py)", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			tc, attrs := readTorchCase(t, dir)
			var in [][]float64
			var shapes [][]int
			for i := 0; ; i++ {
				if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("in_%d.pb", i))); err != nil {
					break
				}
				x, s := loadSampleRef(t, dir, fmt.Sprintf("in_%d", i))
				in, shapes = append(in, x), append(shapes, s)
			}
			var want [][]float64
			for k := 0; ; k++ {
				if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("out_%d.pb", k))); err != nil {
					break
				}
				y, _ := loadSampleRef(t, dir, fmt.Sprintf("out_%d", k))
				want = append(want, y)
			}

			// Forward, through Compile and Run.
			g := &onnx.Graph{Name: tc.Op}
			var ins []*onnx.Value
			for i, s := range shapes {
				dims := make([]int64, len(s))
				for j, d := range s {
					dims[j] = int64(d)
				}
				ins = append(ins, g.AddInput(fmt.Sprint("in_", i), onnx.TensorType(onnx.Float, dims...)))
			}
			var outNames []string
			for k := range want {
				outNames = append(outNames, fmt.Sprint("out_", k))
			}
			g.Outputs = g.AddNode(tc.Op, "node", ins, outNames, attrs...).Outputs
			m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: tc.Opset}}, Graph: g}
			tol := forwardTol[filepath.Base(dir)]
			if tol == 0 {
				tol = 1e-10
			}
			for _, f64 := range []bool{true, false} {
				p, err := Compile(m, Options{Float64: f64})
				if err != nil {
					t.Fatal(err)
				}
				var feeds []*tensor.Dense
				for i, x := range in {
					if f64 {
						feeds = append(feeds, tensor.New(tensor.WithShape(shapes[i]...), tensor.WithBacking(x)))
					} else {
						feeds = append(feeds, tensor.New(tensor.WithShape(shapes[i]...), tensor.WithBacking(to32(x))))
					}
				}
				outs, err := p.Run(feeds...)
				if err != nil {
					t.Fatal(err)
				}
				for k, o := range outs {
					if f64 {
						compareRef(t, fmt.Sprintf("float64 out_%d", k), o.Data().([]float64), want[k], tol, false)
					} else {
						compareRef(t, fmt.Sprintf("float32 out_%d", k), from32(o.Data().([]float32)), want[k], 2e-6, false)
					}
				}
			}

			// Gradients of sum(w * out_0).
			w, _ := loadSampleRef(t, dir, "w")
			c := opCase{op: tc.Op, opset: tc.Opset, attrs: attrs, shapes: shapes}
			out, grads := graphGrads(t, c, in, w)
			compareRef(t, "graph out_0", out, want[0], tol, false)
			for i, g := range grads {
				ref, _ := loadSampleRef(t, dir, fmt.Sprintf("grad_%d", i))
				compareRef(t, fmt.Sprintf("grad_%d", i), g, ref, 1e-9, false)
			}
		})
	}
}

// The Max reference has ties, and graft gives each tied input exactly
// PyTorch's half of the gradient.
func TestMaxTiesSplitLikePyTorch(t *testing.T) {
	dir := "testdata/torchops/max_ties"
	_, attrs := readTorchCase(t, dir)
	a, as := loadSampleRef(t, dir, "in_0")
	b, bs := loadSampleRef(t, dir, "in_1")
	w, _ := loadSampleRef(t, dir, "w")
	ref, _ := loadSampleRef(t, dir, "grad_0")
	_, grads := graphGrads(t, opCase{op: "Max", opset: 13, attrs: attrs, shapes: [][]int{as, bs}}, [][]float64{a, b}, w)
	ties := 0
	for i, g := range grads[0] {
		if g != ref[i] {
			t.Fatalf("grad[%d] = %g, PyTorch %g", i, g, ref[i])
		}
		if r := g / w[i]; r != 0 && r != 1 && !math.IsNaN(r) {
			ties++ // half the gradient: a tie
		}
	}
	if ties == 0 {
		t.Fatal("the reference has no ties")
	}
}
