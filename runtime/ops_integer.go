package runtime

import (
	"fmt"
	"math"

	"github.com/graft-dev/graft/onnx"
)

// Integer and boolean arithmetic: folded when the graph is built if every
// input is known then (shape arithmetic), else computed at run time on
// exact integers held in the program's float type (see val). Both ways
// share the functions below, so a value has one meaning either way.

func registerInteger[T Float](r registry[T]) {
	r["Cast"] = buildCast[T]
	r["CastLike"] = buildCastLike[T]
	r["Mod"] = buildMod[T]
}

// wrapInt converts an integer to an ONNX integer type as C does: by
// keeping the low bits (bool: nonzero is 1).
func wrapInt(v int64, dt onnx.DType) int64 {
	switch dt {
	case onnx.Int8:
		return int64(int8(v))
	case onnx.Uint8:
		return int64(uint8(v))
	case onnx.Int16:
		return int64(int16(v))
	case onnx.Uint16:
		return int64(uint16(v))
	case onnx.Int32:
		return int64(int32(v))
	case onnx.Uint32:
		return int64(uint32(v))
	case onnx.Bool:
		if v != 0 {
			return 1
		}
		return 0
	}
	return v
}

// castElem converts a float to an integer type: truncated toward zero and
// wrapped, or for bool, nonzero (NaN included) is true, as numpy does.
func castElem(v float64, dt onnx.DType) (int64, error) {
	if dt == onnx.Bool {
		if v != 0 {
			return 1, nil
		}
		return 0, nil
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= -0x1p63 || v >= 0x1p63 {
		return 0, fmt.Errorf("cannot cast %g to %s", v, dt)
	}
	return wrapInt(int64(v), dt), nil
}

// castTo converts x to the element type dt. Known values are converted
// when the graph is built; values computed at run time by a kernel.
func castTo[T Float](b *builder[T], n *onnx.Node, x *val[T], dt onnx.DType) (*val[T], error) {
	toFloat, err := floatType(dt)
	if err != nil {
		return nil, fmt.Errorf("cast to %w", err)
	}
	switch {
	case toFloat && x.isInt():
		data := make([]T, len(x.ints))
		for i, v := range x.ints {
			data[i] = T(v)
		}
		v, err := floatVal(b, n, data, x.shape)
		if err != nil {
			return nil, err
		}
		v.elem = onnx.Float
		return v, nil
	case toFloat && x.integral():
		// Run-time integers are already exact floats.
		return &val[T]{node: x.node, shape: x.shape, elem: onnx.Float}, nil
	case toFloat:
		// float32 and float64 are both computed in the program's type.
		return x, nil
	case x.isInt():
		data := make([]int64, len(x.ints))
		for i, v := range x.ints {
			data[i] = wrapInt(v, dt)
		}
		return &val[T]{ints: data, shape: x.shape, elem: dt}, nil
	case x.consts != nil:
		// A float constant (or initializer, read as it is when the graph is
		// built) becomes integers, truncated toward zero.
		data := make([]int64, len(x.consts))
		for i, f := range x.consts {
			if data[i], err = castElem(float64(f), dt); err != nil {
				return nil, err
			}
		}
		return &val[T]{ints: data, shape: x.shape, elem: dt}, nil
	}
	return b.applyInt(&intUnaryOp[T]{name: fmt.Sprintf("Cast(to=%s)", dt), shape: x.shape, elem: dt,
		f: func(v T) (int64, error) { return castElem(float64(v), dt) }}, dt, x)
}

func buildCast[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	a := n.Attr("to")
	if a == nil {
		return nil, fmt.Errorf("the to attribute is required")
	}
	return one(castTo(b, n, x, onnx.DType(a.Int)))
}

// buildCastLike casts to the type of its second input.
func buildCastLike[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	if len(in) < 2 || in[1] == nil {
		return nil, fmt.Errorf("input 1 (target_type) is missing")
	}
	return one(castTo(b, n, x, in[1].dtype()))
}

// foldInts evaluates an elementwise op when the graph is built if every
// input is an integer constant (shape arithmetic), with ONNX's integer
// semantics: Div truncates toward zero, results wrap to input 0's type. ok
// is false when the op is not folded and must be built as a kernel.
func foldInts[T Float](op string, in []*val[T]) (out []*val[T], ok bool, err error) {
	if len(in) == 0 || len(in) > 2 {
		return nil, false, nil
	}
	for _, v := range in {
		if v == nil || !v.isInt() {
			return nil, false, nil
		}
	}
	elem := in[0].dtype()
	if len(in) == 1 {
		f := intUnary(op)
		if f == nil {
			return nil, false, nil
		}
		data := make([]int64, len(in[0].ints))
		for i, x := range in[0].ints {
			data[i] = wrapInt(f(x), elem)
		}
		return []*val[T]{{ints: data, shape: in[0].shape, elem: elem}}, true, nil
	}
	f := intBinary(op)
	if f == nil {
		return nil, false, nil
	}
	v, err := foldBinary(in[0], in[1], elem, f)
	return []*val[T]{v}, true, err
}

// foldBinary applies f to two broadcast integer constants, wrapping the
// results to elem.
func foldBinary[T Float](a, c *val[T], elem onnx.DType, f func(a, b int64) (int64, error)) (*val[T], error) {
	shape, err := broadcast(a.shape, c.shape)
	if err != nil {
		return nil, err
	}
	ia, ic := broadcastIndex(a.shape, shape), broadcastIndex(c.shape, shape)
	data := make([]int64, size(shape))
	for i := range data {
		r, err := f(a.ints[ia[i]], c.ints[ic[i]])
		if err != nil {
			return nil, err
		}
		data[i] = wrapInt(r, elem)
	}
	return &val[T]{ints: data, shape: shape, elem: elem}, nil
}

func intUnary(op string) func(int64) int64 {
	switch op {
	case "Identity":
		return func(x int64) int64 { return x }
	case "Neg":
		return func(x int64) int64 { return -x }
	case "Abs":
		return func(x int64) int64 { return max(x, -x) }
	case "Relu":
		return func(x int64) int64 { return max(x, 0) }
	case "Sign":
		return func(x int64) int64 { return int64(sign(float64(x))) }
	}
	return nil
}

func intBinary(op string) func(a, b int64) (int64, error) {
	switch op {
	case "Add":
		return func(a, b int64) (int64, error) { return a + b, nil }
	case "Sub":
		return func(a, b int64) (int64, error) { return a - b, nil }
	case "Mul":
		return func(a, b int64) (int64, error) { return a * b, nil }
	case "Div":
		return func(a, b int64) (int64, error) {
			if b == 0 {
				return 0, fmt.Errorf("integer division by zero")
			}
			return a / b, nil // Go, like ONNX, truncates toward zero
		}
	case "Pow":
		return func(a, b int64) (int64, error) {
			if b < 0 {
				return 0, fmt.Errorf("integer %d to the negative power %d", a, b)
			}
			p := int64(1)
			for ; b > 0; b >>= 1 {
				if b&1 == 1 {
					p *= a
				}
				a *= a
			}
			return p, nil
		}
	}
	return nil
}

// intMod is Mod on integers: with fmod the remainder takes the dividend's
// sign (C's fmod, Go's %), without it the divisor's (Python's %).
func intMod(fmod bool) func(a, b int64) (int64, error) {
	return func(a, b int64) (int64, error) {
		if b == 0 {
			return 0, fmt.Errorf("integer modulo by zero")
		}
		r := a % b
		if !fmod && r != 0 && (r < 0) != (b < 0) {
			r += b
		}
		return r, nil
	}
}

// intArithmetic builds Add, Sub, Mul, Div or Pow on an integer tensor
// computed at run time (ONNX's integer Pow may take a float exponent).
func (b *builder[T]) intArithmetic(op string, x, y *val[T]) (*val[T], error) {
	elem := x.dtype()
	var f func(a, c T) (int64, error)
	if op == "Pow" && !y.integral() {
		f = func(a, c T) (int64, error) { return castElem(math.Pow(float64(a), float64(c)), onnx.Int64) }
	} else {
		g := intBinary(op)
		if g == nil {
			return nil, fmt.Errorf("%s on %s tensors is not supported", op, elem)
		}
		f = func(a, c T) (int64, error) { return g(int64(a), int64(c)) }
	}
	return b.intBinaryOf(op, x, y, elem, f)
}

// intBinaryOf applies f elementwise to two broadcast values, giving a
// value of type elem computed at run time.
func (b *builder[T]) intBinaryOf(name string, x, y *val[T], elem onnx.DType, f func(a, c T) (int64, error)) (*val[T], error) {
	out, err := broadcast(x.shape, y.shape)
	if err != nil {
		return nil, err
	}
	if err := checkIndexable(out); err != nil {
		return nil, err
	}
	k := &intBinaryOp[T]{name: name, out: out, elem: elem, f: f}
	if size(x.shape) != size(out) {
		k.ia = broadcastIndex(x.shape, out)
	}
	if size(y.shape) != size(out) {
		k.ib = broadcastIndex(y.shape, out)
	}
	return b.applyInt(k, elem, x, y)
}

// applyInt adds a kernel whose result is an integer or boolean tensor of
// type elem.
func (b *builder[T]) applyInt(k kernel[T], elem onnx.DType, in ...*val[T]) (*val[T], error) {
	v, err := b.apply(k, in...)
	if err != nil {
		return nil, err
	}
	v.elem, v.need = elem, false
	return v, nil
}

// storeExact writes an integer result into out[i], refusing one T does
// not hold exactly.
func storeExact[T Float](out []T, i int, r int64) error {
	v, ok := exactly[T](r)
	if !ok {
		return fmt.Errorf("element %d is %d, beyond the integers %T holds exactly; graft computes integer tensors in the program's float type", i, r, v)
	}
	out[i] = v
	return nil
}

// intUnaryOp maps each element to an integer or boolean of type elem; it
// has no gradient.
type intUnaryOp[T Float] struct {
	name  string
	shape []int
	elem  onnx.DType
	f     func(v T) (int64, error)
}

func (k *intUnaryOp[T]) describe() string       { return k.name }
func (k *intUnaryOp[T]) outShape() []int        { return k.shape }
func (k *intUnaryOp[T]) differentiable() []bool { return []bool{false} }

func (k *intUnaryOp[T]) forward(in [][]T, out []T) error {
	for i, v := range in[0] {
		r, err := k.f(v)
		if err != nil {
			return err
		}
		if err := storeExact(out, i, wrapInt(r, k.elem)); err != nil {
			return err
		}
	}
	return nil
}

func (k *intUnaryOp[T]) backward(int, [][]T, []T, []T, []T) error {
	return fmt.Errorf("%s has no gradient", k.name)
}

// intBinaryOp applies an integer or boolean function to two broadcast
// inputs; it has no gradient.
type intBinaryOp[T Float] struct {
	name   string
	out    []int
	ia, ib []int32 // source element per output element; nil when shapes equal
	elem   onnx.DType
	f      func(a, b T) (int64, error)
}

func (k *intBinaryOp[T]) describe() string       { return k.name }
func (k *intBinaryOp[T]) outShape() []int        { return k.out }
func (k *intBinaryOp[T]) differentiable() []bool { return []bool{false, false} }

func (k *intBinaryOp[T]) forward(in [][]T, out []T) error {
	a, c := in[0], in[1]
	for i := range out {
		r, err := k.f(a[at(k.ia, i)], c[at(k.ib, i)])
		if err != nil {
			return err
		}
		if err := storeExact(out, i, wrapInt(r, k.elem)); err != nil {
			return err
		}
	}
	return nil
}

func (k *intBinaryOp[T]) backward(int, [][]T, []T, []T, []T) error {
	return fmt.Errorf("%s has no gradient", k.name)
}

// buildMod is ONNX's Mod: on integers, the remainder with the divisor's
// sign (fmod 0, Python's %) or the dividend's (fmod 1, C's fmod); on
// floats, ONNX requires fmod 1.
func buildMod[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) != 2 || in[0] == nil || in[1] == nil {
		return nil, fmt.Errorf("needs 2 inputs")
	}
	fmodAttr := n.AttrInt("fmod", 0)
	if fmodAttr != 0 && fmodAttr != 1 {
		return nil, fmt.Errorf("fmod is %d, not 0 or 1", fmodAttr)
	}
	fmod := fmodAttr == 1
	x, y := in[0], in[1]
	if x.integral() != y.integral() {
		return nil, fmt.Errorf("inputs are %s and %s: Mod needs one type", x.dtype(), y.dtype())
	}
	if x.integral() {
		f := intMod(fmod)
		if x.isInt() && y.isInt() {
			return one(foldBinary(x, y, x.dtype(), f))
		}
		return one(b.intBinaryOf(fmt.Sprintf("Mod(fmod=%d)", fmodAttr), x, y, x.dtype(),
			func(a, c T) (int64, error) { return f(int64(a), int64(c)) }))
	}
	if !fmod {
		return nil, fmt.Errorf("fmod is 0 on float inputs; ONNX requires fmod 1 for floats")
	}
	// d/da fmod(a, b) = 1 and d/db = -trunc(a/b), away from the jumps.
	k, err := newBinary("Mod(fmod=1)", x.shape, y.shape,
		func(a, c T) T { return T(math.Mod(float64(a), float64(c))) },
		func(_, _, _ T) T { return 1 },
		func(a, c, _ T) T { return -T(math.Trunc(float64(a) / float64(c))) })
	if err != nil {
		return nil, err
	}
	return one(b.apply(k, x, y))
}
