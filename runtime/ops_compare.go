package runtime

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
)

// Comparisons, logic and Where. Their boolean results are folded when the
// graph is built if the inputs are known then (the shape arithmetic of
// exported graphs: Where(Equal(shape, -1), 1, shape) before an Expand),
// else computed at run time as 0 and 1 (attention masks).

func registerCompare[T Float](r registry[T]) {
	cmp := func(name string, f func(a, b float64) bool) {
		r[name] = func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
			return one(b.comparison(name, in, false, func(x, y T) bool { return f(float64(x), float64(y)) }))
		}
	}
	cmp("Equal", func(a, b float64) bool { return a == b })
	cmp("Less", func(a, b float64) bool { return a < b })
	cmp("Greater", func(a, b float64) bool { return a > b })
	cmp("LessOrEqual", func(a, b float64) bool { return a <= b })
	cmp("GreaterOrEqual", func(a, b float64) bool { return a >= b })
	logic := func(name string, f func(a, b bool) bool) {
		r[name] = func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
			return one(b.comparison(name, in, true, func(x, y T) bool { return f(x != 0, y != 0) }))
		}
	}
	logic("And", func(a, b bool) bool { return a && b })
	logic("Or", func(a, b bool) bool { return a || b })
	logic("Xor", func(a, b bool) bool { return a != b })
	r["Not"] = buildNot[T]
	r["Where"] = buildWhere[T]
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// comparison builds a binary op with a boolean result: of bool inputs when
// logical, else of two inputs of one kind (both float or both integer).
func (b *builder[T]) comparison(name string, in []*val[T], logical bool, f func(x, y T) bool) (*val[T], error) {
	if len(in) != 2 || in[0] == nil || in[1] == nil {
		return nil, fmt.Errorf("needs 2 inputs")
	}
	x, y := in[0], in[1]
	if logical {
		for i, v := range in {
			if v.dtype() != onnx.Bool {
				return nil, fmt.Errorf("input %d is %s, not bool", i, v.dtype())
			}
		}
	} else if x.integral() != y.integral() {
		return nil, fmt.Errorf("inputs are %s and %s: %s compares values of one type", x.dtype(), y.dtype(), name)
	}
	if x.isInt() && y.isInt() {
		return foldBinary(x, y, onnx.Bool, func(a, c int64) (int64, error) {
			if logical {
				return boolInt(f(T(boolInt(a != 0)), T(boolInt(c != 0)))), nil
			}
			// Exact whatever T: compare the integers, not their floats.
			switch {
			case a == c:
				return boolInt(f(0, 0)), nil
			case a < c:
				return boolInt(f(0, 1)), nil
			}
			return boolInt(f(1, 0)), nil
		})
	}
	return b.intBinaryOf(name, x, y, onnx.Bool, func(a, c T) (int64, error) { return boolInt(f(a, c)), nil })
}

func buildNot[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	if x.dtype() != onnx.Bool {
		return nil, fmt.Errorf("input is %s, not bool", x.dtype())
	}
	if x.isInt() {
		data := make([]int64, len(x.ints))
		for i, v := range x.ints {
			data[i] = boolInt(v == 0)
		}
		return []*val[T]{{ints: data, shape: x.shape, elem: onnx.Bool}}, nil
	}
	return one(b.applyInt(&intUnaryOp[T]{name: "Not", shape: x.shape, elem: onnx.Bool,
		f: func(v T) (int64, error) { return boolInt(v == 0), nil }}, onnx.Bool, x))
}

// where picks x where the condition holds, else y, all three broadcast.
// Its gradient goes to the input picked; the condition has none.
type where[T Float] struct {
	out        []int
	ic, ix, iy []int32 // source element per output element; nil when shapes equal
}

func (k *where[T]) describe() string       { return fmt.Sprintf("Where%v", k.out) }
func (k *where[T]) outShape() []int        { return k.out }
func (k *where[T]) differentiable() []bool { return []bool{false, true, true} }

func (k *where[T]) forward(in [][]T, out []T) error {
	c, x, y := in[0], in[1], in[2]
	for i := range out {
		if c[at(k.ic, i)] != 0 {
			out[i] = x[at(k.ix, i)]
		} else {
			out[i] = y[at(k.iy, i)]
		}
	}
	return nil
}

func (k *where[T]) backward(which int, in [][]T, _, gout, gin []T) error {
	c := in[0]
	idx, pick := k.ix, true
	if which == 2 {
		idx, pick = k.iy, false
	}
	for i, g := range gout {
		if (c[at(k.ic, i)] != 0) == pick {
			gin[at(idx, i)] += g
		}
	}
	return nil
}

func buildWhere[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) != 3 || in[0] == nil || in[1] == nil || in[2] == nil {
		return nil, fmt.Errorf("needs condition, X and Y")
	}
	c, x, y := in[0], in[1], in[2]
	if c.dtype() != onnx.Bool {
		return nil, fmt.Errorf("the condition is %s, not bool", c.dtype())
	}
	if x.integral() != y.integral() {
		return nil, fmt.Errorf("X is %s but Y is %s", x.dtype(), y.dtype())
	}
	cx, err := broadcast(c.shape, x.shape)
	if err != nil {
		return nil, err
	}
	out, err := broadcast(cx, y.shape)
	if err != nil {
		return nil, fmt.Errorf("shapes %v, %v and %v do not broadcast", c.shape, x.shape, y.shape)
	}
	if err := checkIndexable(out); err != nil {
		return nil, err
	}
	k := &where[T]{out: out}
	for _, p := range []struct {
		shape []int
		idx   *[]int32
	}{{c.shape, &k.ic}, {x.shape, &k.ix}, {y.shape, &k.iy}} {
		if size(p.shape) != size(out) {
			*p.idx = broadcastIndex(p.shape, out)
		}
	}
	if c.isInt() && x.isInt() && y.isInt() {
		data := make([]int64, size(out))
		for i := range data {
			if c.ints[at(k.ic, i)] != 0 {
				data[i] = x.ints[at(k.ix, i)]
			} else {
				data[i] = y.ints[at(k.iy, i)]
			}
		}
		return []*val[T]{{ints: data, shape: out, elem: x.dtype()}}, nil
	}
	if size(out) == 0 {
		return nil, fmt.Errorf("the result %v is empty; Gorgonia's tensors cannot be empty", out)
	}
	if x.integral() {
		return one(b.applyInt(k, x.dtype(), c, x, y))
	}
	v, err := b.apply(k, c, x, y)
	if err != nil {
		return nil, err
	}
	v.elem = onnx.Float // X's type, not the condition's
	return []*val[T]{v}, nil
}
