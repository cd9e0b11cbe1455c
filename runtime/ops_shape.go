package runtime

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
)

func registerShape[T Float](r registry[T]) {
	r["Flatten"] = buildFlatten[T]
	r["Reshape"] = buildReshape[T]
	r["Constant"] = buildConstant[T]
}

// reshape changes a tensor's shape without moving data. Integer constants
// are reshaped at compile time.
func (b *builder[T]) reshape(x *val[T], shape []int) (*val[T], error) {
	if size(shape) != size(x.shape) {
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", x.shape, size(x.shape), shape)
	}
	if x.node == nil {
		return &val[T]{ints: x.ints, consts: x.consts, shape: shape}, nil
	}
	return b.apply(&unary[T]{name: fmt.Sprintf("Reshape%v", shape), shape: shape,
		f: func(v T) T { return v }, df: func(_, _ T) T { return 1 }}, x)
}

func buildFlatten[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x := in[0]
	axis := int(n.AttrInt("axis", 1))
	if axis < 0 {
		axis += len(x.shape)
	}
	if axis < 0 || axis > len(x.shape) {
		return nil, fmt.Errorf("axis %d is out of range for input %v", n.AttrInt("axis", 1), x.shape)
	}
	return one(b.reshape(x, []int{size(x.shape[:axis]), size(x.shape[axis:])}))
}

func buildReshape[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	target, err := b.intsOf(in, 1, "shape")
	if err != nil {
		return nil, err
	}
	x := in[0]
	allowZero := n.AttrInt("allowzero", 0) == 1
	shape := make([]int, len(target))
	infer := -1
	known := 1
	for i, d := range target {
		switch {
		case d == -1 && infer < 0:
			infer = i
			continue
		case d == -1:
			return nil, fmt.Errorf("shape %v has more than one -1", target)
		case d == 0 && !allowZero:
			if i >= len(x.shape) {
				return nil, fmt.Errorf("shape %v copies dimension %d, which input %v lacks", target, i, x.shape)
			}
			shape[i] = x.shape[i]
		case d < 0:
			return nil, fmt.Errorf("shape %v has a negative dimension", target)
		default:
			shape[i] = int(d)
		}
		known *= shape[i]
	}
	if infer >= 0 {
		if known == 0 || size(x.shape)%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", x.shape, target)
		}
		shape[infer] = size(x.shape) / known
	}
	return one(b.reshape(x, shape))
}

func buildConstant[T Float](b *builder[T], n *onnx.Node, _ []*val[T]) ([]*val[T], error) {
	a := n.Attr("value")
	if a == nil || a.Tensor == nil {
		for _, name := range []string{"value_float", "value_floats", "value_int", "value_ints"} {
			if x := n.Attr(name); x != nil {
				switch name {
				case "value_float":
					return []*val[T]{b.constant(n.Name, []T{T(x.Float)}, []int{})}, nil
				case "value_floats":
					data := make([]T, len(x.Floats))
					for i, f := range x.Floats {
						data[i] = T(f)
					}
					return []*val[T]{b.constant(n.Name, data, []int{len(data)})}, nil
				case "value_int":
					return []*val[T]{{ints: []int64{x.Int}, shape: []int{}}}, nil
				default:
					return []*val[T]{{ints: x.Ints, shape: []int{len(x.Ints)}}}, nil
				}
			}
		}
		return nil, fmt.Errorf("no value attribute (sparse constants are not supported)")
	}
	return tensorVal[T](b, n.Name, a.Tensor)
}

// tensorVal turns a constant tensor into a value: float tensors become graph
// constants, integer tensors compile-time integers.
func tensorVal[T Float](b *builder[T], name string, t *onnx.Tensor) ([]*val[T], error) {
	shape := ints(t.Dims)
	switch t.DType {
	case onnx.Float, onnx.Double:
		f, err := t.Float64s()
		if err != nil {
			return nil, err
		}
		data := make([]T, len(f))
		for i, x := range f {
			data[i] = T(x)
		}
		return []*val[T]{b.constant(name, data, shape)}, nil
	}
	v, err := t.Int64s()
	if err != nil {
		return nil, fmt.Errorf("constant %q: %s tensors are not supported", name, t.DType)
	}
	return []*val[T]{{ints: v, shape: shape}}, nil
}
