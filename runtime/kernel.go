package runtime

import (
	"fmt"
	"hash"
	"hash/fnv"
	"sync/atomic"

	"github.com/chewxy/hm"
	"github.com/graft-dev/graft/onnx"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Float is the element type the runtime computes in: float32 for use,
// float64 for checking gradients against finite differences.
type Float interface{ ~float32 | ~float64 }

// A kernel is the math of one ONNX node for fixed input shapes: forward, and
// the gradient with respect to each differentiable input. Kernels see plain
// row-major slices, so they can be tested without Gorgonia and swapped for
// faster ones without touching the graph code.
type kernel[T Float] interface {
	// describe names the op and its attributes (for hashing and messages).
	describe() string
	// outShape is the output's shape; nil means a scalar.
	outShape() []int
	// forward writes the output (zeroed, of outShape) from the inputs.
	forward(in [][]T, out []T) error
	// differentiable reports which inputs have a gradient.
	differentiable() []bool
	// backward writes dLoss/d(input i) into gin (zeroed, the input's size)
	// from the inputs, the forward output and dLoss/d(output).
	backward(i int, in [][]T, out, gout, gin []T) error
}

// opIDs makes every op instance hash differently: Gorgonia merges nodes whose
// op hashes and inputs are equal, which would fuse two dropout layers.
var opIDs atomic.Uint64

// kernelOp adapts a kernel's forward pass to gorgonia.Op.
type kernelOp[T Float] struct {
	k        kernel[T]
	inShapes [][]int
	// needGrad marks the inputs whose gradient the graph wants: frozen
	// parameters and constants get none, so no work is spent on them.
	needGrad []bool
	id       uint64
	origin   *onnx.Node // the node it computes, for messages; nil for the loss
}

func newKernelOp[T Float](k kernel[T], inShapes [][]int, needGrad []bool, origin *onnx.Node) *kernelOp[T] {
	return &kernelOp[T]{k: k, inShapes: inShapes, needGrad: needGrad, id: opIDs.Add(1), origin: origin}
}

func tensorType(rank int) hm.Type {
	a := hm.TypeVariable('a')
	if rank == 0 {
		return a
	}
	return G.TensorType{Dims: rank, Of: a}
}

func (op *kernelOp[T]) Arity() int { return len(op.inShapes) }

func (op *kernelOp[T]) Type() hm.Type {
	var ts []hm.Type
	for _, s := range op.inShapes {
		ts = append(ts, tensorType(len(s)))
	}
	ts = append(ts, tensorType(len(op.k.outShape())))
	return hm.NewFnType(ts...)
}

func (op *kernelOp[T]) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return shapeOf(op.k.outShape()), nil
}

func shapeOf(s []int) tensor.Shape {
	if len(s) == 0 {
		return tensor.ScalarShape()
	}
	return tensor.Shape(append([]int(nil), s...))
}

func (op *kernelOp[T]) Do(vals ...G.Value) (G.Value, error) {
	return op.doInto(make([]T, size(op.k.outShape())), vals)
}

// doInto is Do computing into out, zeroed, of the output's size.
func (op *kernelOp[T]) doInto(out []T, vals []G.Value) (G.Value, error) {
	in, err := dataOf[T](vals)
	if err != nil {
		return nil, op.fail("", err)
	}
	if err := op.k.forward(in, out); err != nil {
		return nil, op.fail("", err)
	}
	return wrap(out, op.k.outShape()), nil
}

// A kernelError is a kernel's failure while the graph runs (an index out
// of range, an integer division by zero), naming the node.
type kernelError struct {
	what string // the node, or the kernel when it computes no node
	err  error
}

func (e *kernelError) Error() string { return e.what + ": " + e.err.Error() }
func (e *kernelError) Unwrap() error { return e.err }

func (op *kernelOp[T]) fail(prefix string, err error) error {
	what := op.k.describe()
	if op.origin != nil {
		what = op.origin.String()
	}
	return &kernelError{what: prefix + what, err: err}
}

func (op *kernelOp[T]) ReturnsPtr() bool     { return false }
func (op *kernelOp[T]) CallsExtern() bool    { return false }
func (op *kernelOp[T]) OverwritesInput() int { return -1 }
func (op *kernelOp[T]) String() string       { return op.k.describe() }

func (op *kernelOp[T]) WriteHash(h hash.Hash) { fmt.Fprintf(h, "%s#%d", op.k.describe(), op.id) }

func (op *kernelOp[T]) Hashcode() uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}

func (op *kernelOp[T]) DiffWRT(n int) []bool {
	d := op.k.differentiable()
	out := make([]bool, n)
	for i := range out {
		out[i] = i < len(d) && d[i] && (op.needGrad == nil || op.needGrad[i])
	}
	return out
}

func (op *kernelOp[T]) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	diffs := op.DiffWRT(len(inputs))
	out := make(G.Nodes, len(inputs))
	for i, d := range diffs {
		if !d {
			continue
		}
		args := append(append(G.Nodes{}, inputs...), output, grad)
		n, err := G.ApplyOp(&gradOp[T]{fwd: op, input: i}, args...)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

// gradOp computes the gradient of a kernelOp's output with respect to one of
// its inputs. Its arguments are the forward inputs, the output and the
// output's gradient.
type gradOp[T Float] struct {
	fwd   *kernelOp[T]
	input int
}

func (op *gradOp[T]) Arity() int { return len(op.fwd.inShapes) + 2 }

func (op *gradOp[T]) Type() hm.Type {
	var ts []hm.Type
	for _, s := range op.fwd.inShapes {
		ts = append(ts, tensorType(len(s)))
	}
	out := tensorType(len(op.fwd.k.outShape()))
	ts = append(ts, out, out, tensorType(len(op.fwd.inShapes[op.input])))
	return hm.NewFnType(ts...)
}

func (op *gradOp[T]) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return shapeOf(op.fwd.inShapes[op.input]), nil
}

func (op *gradOp[T]) Do(vals ...G.Value) (G.Value, error) {
	return op.doInto(make([]T, size(op.fwd.inShapes[op.input])), vals)
}

// doInto is Do computing into gin, zeroed, of the input's size.
func (op *gradOp[T]) doInto(gin []T, vals []G.Value) (G.Value, error) {
	all, err := dataOf[T](vals)
	if err != nil {
		return nil, op.fwd.fail("the gradient of ", err)
	}
	n := len(op.fwd.inShapes)
	shape := op.fwd.inShapes[op.input]
	if err := op.fwd.k.backward(op.input, all[:n], all[n], all[n+1], gin); err != nil {
		return nil, op.fwd.fail("the gradient of ", err)
	}
	return wrap(gin, shape), nil
}

func (op *gradOp[T]) ReturnsPtr() bool     { return false }
func (op *gradOp[T]) CallsExtern() bool    { return false }
func (op *gradOp[T]) OverwritesInput() int { return -1 }
func (op *gradOp[T]) String() string       { return fmt.Sprintf("d%s/d#%d", op.fwd.k.describe(), op.input) }

func (op *gradOp[T]) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "grad%d:%s#%d", op.input, op.fwd.k.describe(), op.fwd.id)
}

func (op *gradOp[T]) Hashcode() uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}

// dataOf returns the data of Gorgonia values as []T: tensors as their
// backing arrays, scalars as one-element slices.
func dataOf[T Float](vals []G.Value) ([][]T, error) {
	out := make([][]T, len(vals))
	for i, v := range vals {
		switch x := v.(type) {
		case *tensor.Dense:
			if x.Shape().TotalSize() == 0 {
				out[i] = []T{}
				continue
			}
			if !x.IsNativelyAccessible() || x.RequiresIterator() {
				return nil, fmt.Errorf("input %d is not a contiguous tensor", i)
			}
			d, ok := x.Data().([]T)
			if !ok {
				if s, ok := x.Data().(T); ok { // a 0-d tensor
					d = []T{s}
				} else {
					return nil, fmt.Errorf("input %d holds %T, want %T", i, x.Data(), d)
				}
			}
			out[i] = d
		case *G.F32:
			out[i] = []T{T(float32(*x))}
		case *G.F64:
			out[i] = []T{T(float64(*x))}
		default:
			return nil, fmt.Errorf("input %d is a %T", i, v)
		}
	}
	return out, nil
}

// wrap turns a result into a Gorgonia value: a scalar for shape nil.
func wrap[T Float](data []T, shape []int) G.Value {
	if len(shape) == 0 {
		switch any(data[0]).(type) {
		case float32:
			return G.NewF32(float32(data[0]))
		default:
			return G.NewF64(float64(data[0]))
		}
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
}

// size is the number of elements of a shape (1 for a scalar).
func size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
