package onnx

import (
	"fmt"
	"math"
)

// Shape rules of comparisons, logic, Where, Mod, Cast, Split, ScatterND,
// Resize and Upsample.

func addIndexRules(rules map[string]shapeRule) {
	for _, op := range []string{"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"} {
		rules[op] = boolRule(broadcastRule)
	}
	rules["Not"] = boolRule(func(n *Node, in []*Type, _ int64) ([]*Type, error) { return []*Type{in[0]}, nil })
	rules["Mod"] = broadcastRule
	rules["Where"] = whereRule
	rules["Cast"] = castRule
	rules["CastLike"] = castLikeRule
	rules["Split"] = splitRule
	rules["ScatterND"] = func(n *Node, in []*Type, _ int64) ([]*Type, error) { return []*Type{in[0]}, nil }
	rules["Resize"] = resizeRule
	rules["Upsample"] = resizeRule
}

// boolRule gives a rule's output the element type bool.
func boolRule(rule shapeRule) shapeRule {
	return func(n *Node, in []*Type, opset int64) ([]*Type, error) {
		out, err := rule(n, in, opset)
		if err != nil || len(out) == 0 {
			return out, err
		}
		t := withShape(out[0], nil)
		if out[0] != nil {
			t.Shape = out[0].Shape
		}
		t.Elem = Bool
		return []*Type{t}, nil
	}
}

func whereRule(n *Node, in []*Type, opset int64) ([]*Type, error) {
	if len(in) != 3 {
		return nil, fmt.Errorf("needs 3 inputs, has %d", len(in))
	}
	cx, err := broadcastRule(n, []*Type{in[0], in[1]}, opset)
	if err != nil {
		return nil, err
	}
	out, err := broadcastRule(n, []*Type{cx[0], in[2]}, opset)
	if err != nil {
		return nil, err
	}
	t := withShape(in[1], out[0].Shape)
	return []*Type{t}, nil
}

func castRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	a := n.Attr("to")
	if a == nil {
		return nil, fmt.Errorf("the to attribute is required")
	}
	t := withShape(in[0], nil)
	if x := known(in[0]); x != nil {
		t.Shape = x
	}
	t.Elem = DType(a.Int)
	return []*Type{t}, nil
}

func castLikeRule(n *Node, in []*Type, _ int64) ([]*Type, error) {
	if len(in) < 2 || in[1] == nil {
		return []*Type{withShape(in[0], known(in[0]))}, nil
	}
	t := withShape(in[0], known(in[0]))
	t.Elem = in[1].Elem
	return []*Type{t}, nil
}

func splitRule(n *Node, in []*Type, opset int64) ([]*Type, error) {
	outs := len(n.Outputs)
	x := known(in[0])
	unknown := make([]*Type, outs)
	for i := range unknown {
		unknown[i] = withShape(in[0], nil)
	}
	if x == nil {
		return unknown, nil
	}
	axis := n.AttrInt("axis", 0)
	if axis < 0 {
		axis += int64(len(x))
	}
	if axis < 0 || axis >= int64(len(x)) {
		return nil, fmt.Errorf("axis %d is out of range for %v", n.AttrInt("axis", 0), x)
	}
	dim := x[axis]
	var sizes []int64
	given := false
	switch {
	case opset < 13 && n.Attr("split") != nil:
		sizes, given = n.AttrInts("split", nil), true
	case n.Input(1) != nil:
		if sizes, given = constInput(n, 1); !given {
			return unknown, nil
		}
	case opset >= 18 && n.Attr("num_outputs") != nil && dim.Known():
		k := n.AttrInt("num_outputs", 1)
		if k < 1 {
			return nil, fmt.Errorf("num_outputs is %d", k)
		}
		chunk := (dim.Value + k - 1) / k
		for i := int64(0); i < k; i++ {
			sizes = append(sizes, max(min(chunk, dim.Value-i*chunk), 0))
		}
	case dim.Known():
		if outs == 0 || dim.Value%int64(outs) != 0 {
			return nil, fmt.Errorf("axis of size %d does not split into %d equal parts", dim.Value, outs)
		}
		for range outs {
			sizes = append(sizes, dim.Value/int64(outs))
		}
	default:
		return unknown, nil
	}
	if len(sizes) != outs {
		return nil, fmt.Errorf("split %v has %d parts but the node has %d outputs", sizes, len(sizes), outs)
	}
	total := int64(0)
	for _, s := range sizes {
		total += s
	}
	if given && dim.Known() && total != dim.Value {
		return nil, fmt.Errorf("split %v adds up to %d, not the axis size %d", sizes, total, dim.Value)
	}
	out := make([]*Type, outs)
	for i, s := range sizes {
		sh := append(Shape{}, x...)
		sh[axis] = Fixed(s)
		out[i] = withShape(in[0], sh)
	}
	return out, nil
}

// constFloats returns the values of a float input when it is a constant.
func constFloats(n *Node, i int) ([]float64, bool) {
	t := n.ConstInput(i)
	if t == nil {
		return nil, false
	}
	vals, err := t.Float64s()
	return vals, err == nil
}

// resizeRule sizes Resize's output from constant sizes or scales (floor of
// size times scale), and Upsample's from its scales.
func resizeRule(n *Node, in []*Type, opset int64) ([]*Type, error) {
	x := known(in[0])
	if x == nil {
		return []*Type{withShape(in[0], nil)}, nil
	}
	r := len(x)
	axes := make([]int, r)
	for d := range axes {
		axes[d] = d
	}
	if a := n.AttrInts("axes", nil); a != nil && n.OpType == "Resize" && opset >= 18 {
		axes = axes[:0]
		for _, v := range a {
			if v < 0 {
				v += int64(r)
			}
			if v < 0 || v >= int64(r) {
				return nil, fmt.Errorf("axes %v are out of range for %v", a, x)
			}
			axes = append(axes, int(v))
		}
	}
	var scales []float64
	var sizes []int64
	ok := false
	switch {
	case n.OpType == "Upsample" && opset < 9:
		if a := n.Attr("scales"); a != nil {
			for _, f := range a.Floats {
				scales = append(scales, float64(f))
			}
		}
		ok = scales != nil
	case n.OpType == "Upsample" || opset < 11:
		scales, ok = constFloats(n, 1)
	default:
		if sizes, ok = constInput(n, 3); !ok || len(sizes) == 0 {
			sizes = nil
			scales, ok = constFloats(n, 2)
		}
	}
	if !ok || n.AttrString("keep_aspect_ratio_policy", "stretch") != "stretch" && sizes != nil {
		return []*Type{withShape(in[0], nil)}, nil
	}
	out := append(Shape{}, x...)
	for i, ax := range axes {
		switch {
		case sizes != nil:
			if len(sizes) != len(axes) {
				return nil, fmt.Errorf("sizes %v have %d values for %d axes", sizes, len(sizes), len(axes))
			}
			out[ax] = Fixed(sizes[i])
		default:
			if len(scales) != len(axes) {
				return nil, fmt.Errorf("scales %v have %d values for %d axes", scales, len(scales), len(axes))
			}
			if !x[ax].Known() {
				if scales[i] != 1 {
					out[ax] = UnknownDim()
				}
				continue
			}
			// As the runtime does: size times the float32 scale, rounded down.
			out[ax] = Fixed(int64(math.Floor(float64(x[ax].Value) * float64(float32(scales[i])))))
		}
	}
	return []*Type{withShape(in[0], out)}, nil
}
