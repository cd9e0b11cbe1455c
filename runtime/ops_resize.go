package runtime

import (
	"fmt"
	"math"
	"slices"

	"github.com/graft-dev/graft/onnx"
)

func registerResize[T Float](r registry[T]) {
	r["Resize"] = buildResize[T]
	r["Upsample"] = buildUpsample[T]
}

// Resize is linear in its input whatever the mode: each axis maps input
// positions to output positions with a few weights (nearest one, linear
// two, cubic four), and the axes apply one after the other, innermost
// first, as ONNX's reference does (which matters only for
// tf_crop_and_resize's extrapolation). The gradient applies the
// transposed maps in the reverse order.

// resizeSpec is what a Resize or Upsample node asks for.
type resizeSpec struct {
	mode        string // nearest, linear, cubic
	coord       string // coordinate_transformation_mode
	nearest     string // nearest_mode; "simple" is opset 10's and Upsample's
	cubicA      float64
	exclude     bool    // exclude_outside
	extrapolate float64 // extrapolation_value
}

// resizeAxis maps one axis: output position j reads input positions
// idx[start[j]:start[j+1]] with weights w, or, when outside[j], is the
// extrapolation value.
type resizeAxis struct {
	axis    int
	in, out int
	start   []int32
	idx     []int32
	w       []float64
	outside []bool
}

// identity reports whether the map copies its axis unchanged.
func (a *resizeAxis) identity() bool {
	if a.in != a.out {
		return false
	}
	for j := 0; j < a.out; j++ {
		if a.start[j+1]-a.start[j] != 1 || a.idx[a.start[j]] != int32(j) || a.w[a.start[j]] != 1 || a.outside != nil && a.outside[j] {
			return false
		}
	}
	return true
}

// sourceCoord maps output position x of an axis to the input coordinate
// it reads, ONNX's coordinate_transformation_mode. ok is false where
// tf_crop_and_resize falls outside the input.
func sourceCoord(mode string, x, scale float64, in, out int, roiStart, roiEnd float64) (c float64, ok bool) {
	switch mode {
	case "align_corners":
		if out == 1 {
			return 0, true
		}
		return x * float64(in-1) / float64(out-1), true
	case "asymmetric":
		return x / scale, true
	case "pytorch_half_pixel":
		if out == 1 {
			return 0, true
		}
		return (x+0.5)/scale - 0.5, true
	case "tf_half_pixel_for_nn":
		return (x + 0.5) / scale, true
	case "tf_crop_and_resize":
		if out == 1 {
			c = (roiEnd - roiStart) * float64(in-1) / 2
		} else {
			c = x * (roiEnd - roiStart) * float64(in-1) / float64(out-1)
		}
		c += roiStart * float64(in-1)
		return c, c >= 0 && c <= float64(in-1)
	}
	return (x+0.5)/scale - 0.5, true // half_pixel
}

// coeffs returns the weights of the input positions base-n/2+1 ...
// base+n/2 around a coordinate at ratio (0, 1] past base.
func (s *resizeSpec) coeffs(ratio, scale float64) []float64 {
	switch s.mode {
	case "linear":
		return []float64{1 - ratio, ratio}
	case "cubic":
		a := s.cubicA
		r, q := ratio, 1-ratio
		return []float64{
			((a*(r+1)-5*a)*(r+1)+8*a)*(r+1) - 4*a,
			((a+2)*r-(a+3))*r*r + 1,
			((a+2)*q-(a+3))*q*q + 1,
			((a*(q+1)-5*a)*(q+1)+8*a)*(q+1) - 4*a,
		}
	}
	ceil := false // nearest: take base+1 (ceil) or base (floor)
	switch {
	case ratio == 1:
		ceil = true // the coordinate is the integer base+1
	case s.nearest == "round_prefer_ceil":
		ceil = ratio >= 0.5
	case s.nearest == "floor":
	case s.nearest == "ceil":
		ceil = true
	case s.nearest == "simple": // ONNX Runtime's rule before opset 11
		ceil = scale < 1
	default: // round_prefer_floor
		ceil = ratio > 0.5
	}
	if ceil {
		return []float64{0, 1}
	}
	return []float64{1, 0}
}

// axisMap builds the map of one axis.
func (s *resizeSpec) axisMap(axis, in, out int, scale, roiStart, roiEnd float64) resizeAxis {
	a := resizeAxis{axis: axis, in: in, out: out, start: []int32{0}}
	for j := 0; j < out; j++ {
		c, ok := sourceCoord(s.coord, float64(j), scale, in, out, roiStart, roiEnd)
		if !ok {
			if a.outside == nil {
				a.outside = make([]bool, out)
			}
			a.outside[j] = true
			a.start = append(a.start, int32(len(a.idx)))
			continue
		}
		// base = ceil(c) - 1 puts c at ratio (0, 1] past it, as ONNX's
		// reference does: an integer coordinate is ratio 1.
		base := math.Ceil(c) - 1
		w := s.coeffs(c-base, scale)
		first := int(base) - len(w)/2 + 1
		if s.exclude {
			sum := 0.0
			for t := range w {
				if p := first + t; p < 0 || p >= in {
					w[t] = 0
				}
				sum += w[t]
			}
			for t := range w {
				w[t] /= sum
			}
		}
		// Positions past the edges read the edge; taps on one position
		// merge, and zero weights are dropped (a nearest pick must not
		// read a neighbour's NaN).
		n0 := len(a.idx)
		for t, wt := range w {
			if wt == 0 {
				continue
			}
			p := int32(min(max(first+t, 0), in-1))
			if k := slices.Index(a.idx[n0:], p); k >= 0 {
				a.w[n0+k] += wt
				continue
			}
			a.idx = append(a.idx, p)
			a.w = append(a.w, wt)
		}
		a.start = append(a.start, int32(len(a.idx)))
	}
	return a
}

// resizeOp applies the axis maps in order.
type resizeOp[T Float] struct {
	name   string
	shapes [][]int // the input's shape, then the shape after each map
	axes   []resizeAxis
	extra  T // the extrapolation value
}

func (k *resizeOp[T]) describe() string       { return k.name }
func (k *resizeOp[T]) outShape() []int        { return k.shapes[len(k.shapes)-1] }
func (k *resizeOp[T]) differentiable() []bool { return []bool{true} }

func (k *resizeOp[T]) forward(in [][]T, out []T) error {
	cur := in[0]
	for i := range k.axes {
		a := &k.axes[i]
		next := out
		if i < len(k.axes)-1 {
			next = make([]T, size(k.shapes[i+1]))
		}
		shape := k.shapes[i]
		outer, inner := size(shape[:a.axis]), size(shape[a.axis+1:])
		parallelFor(outer*a.out, outer*a.out*inner, func(lo, hi int) {
			for oj := lo; oj < hi; oj++ {
				o, j := oj/a.out, oj%a.out
				dst := next[oj*inner : (oj+1)*inner]
				if a.outside != nil && a.outside[j] {
					for t := range dst {
						dst[t] = k.extra
					}
					continue
				}
				for t := a.start[j]; t < a.start[j+1]; t++ {
					w := T(a.w[t])
					src := cur[(o*a.in+int(a.idx[t]))*inner:]
					for e := range dst {
						dst[e] += w * src[e]
					}
				}
			}
		})
		cur = next
	}
	return nil
}

func (k *resizeOp[T]) backward(_ int, _ [][]T, _, gout, gin []T) error {
	g := gout
	for i := len(k.axes) - 1; i >= 0; i-- {
		a := &k.axes[i]
		prev := gin
		if i > 0 {
			prev = make([]T, size(k.shapes[i]))
		}
		shape := k.shapes[i]
		outer, inner := size(shape[:a.axis]), size(shape[a.axis+1:])
		// Each outer block adds into its own rows: split the work there.
		parallelFor(outer, outer*a.out*inner, func(lo, hi int) {
			for o := lo; o < hi; o++ {
				for j := 0; j < a.out; j++ {
					src := g[(o*a.out+j)*inner : (o*a.out+j+1)*inner]
					for t := a.start[j]; t < a.start[j+1]; t++ {
						w := T(a.w[t])
						dst := prev[(o*a.in+int(a.idx[t]))*inner:]
						for e, v := range src {
							dst[e] += w * v
						}
					}
				}
			}
		})
		g = prev
	}
	return nil
}

// resize builds the op for x resized to out with the given scales (one
// per axis) and tf_crop_and_resize's roi (starts then ends, or nil).
func (b *builder[T]) resize(x *val[T], out []int, scales []float64, roi []float64, s *resizeSpec) (*val[T], error) {
	if err := checkIndexable(x.shape, out); err != nil {
		return nil, err
	}
	if size(out) == 0 {
		return nil, fmt.Errorf("the output %v is empty; Gorgonia's tensors cannot be empty", out)
	}
	r := len(x.shape)
	k := &resizeOp[T]{name: fmt.Sprintf("Resize(%s,%s)%v", s.mode, s.coord, out), shapes: [][]int{x.shape}, extra: T(s.extrapolate)}
	shape := append([]int(nil), x.shape...)
	for d := r - 1; d >= 0; d-- {
		start, end := 0.0, 1.0
		if roi != nil {
			start, end = roi[d], roi[r+d]
		}
		a := s.axisMap(d, x.shape[d], out[d], scales[d], start, end)
		if a.identity() {
			continue
		}
		shape = append([]int(nil), shape...)
		shape[d] = out[d]
		k.axes = append(k.axes, a)
		k.shapes = append(k.shapes, shape)
	}
	if len(k.axes) == 0 {
		return b.reshape(x, x.shape) // every axis is copied unchanged
	}
	return b.apply(k, x)
}

// resizeAttrs reads Resize's attributes (opset 11 on; opset 10 has mode
// only, with asymmetric coordinates).
func resizeAttrs(n *onnx.Node, opset int64) (*resizeSpec, error) {
	s := &resizeSpec{
		mode:        n.AttrString("mode", "nearest"),
		coord:       n.AttrString("coordinate_transformation_mode", "half_pixel"),
		nearest:     n.AttrString("nearest_mode", "round_prefer_floor"),
		cubicA:      float64(n.AttrFloat("cubic_coeff_a", -0.75)),
		exclude:     n.AttrInt("exclude_outside", 0) == 1,
		extrapolate: float64(n.AttrFloat("extrapolation_value", 0)),
	}
	if opset < 11 {
		s.coord, s.nearest = "asymmetric", "simple"
	}
	switch s.mode {
	case "nearest", "linear", "cubic":
	default:
		return nil, fmt.Errorf("mode %q is not nearest, linear or cubic", s.mode)
	}
	switch s.coord {
	case "half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize":
	default:
		return nil, fmt.Errorf("coordinate_transformation_mode %q is not supported", s.coord)
	}
	switch s.nearest {
	case "round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple":
	default:
		return nil, fmt.Errorf("nearest_mode %q is not supported", s.nearest)
	}
	if n.AttrInt("antialias", 0) != 0 {
		return nil, fmt.Errorf("antialias is not supported")
	}
	return s, nil
}

// optionalFloats returns a float input known at compile time, or nil when
// it is omitted or empty.
func (b *builder[T]) optionalFloats(in []*val[T], i int, what string) ([]float64, error) {
	if i >= len(in) || in[i] == nil {
		return nil, nil
	}
	c, err := b.floatConsts(in, i, what)
	if err != nil {
		return nil, err
	}
	if len(c) == 0 {
		return nil, nil
	}
	out := make([]float64, len(c))
	for j, v := range c {
		out[j] = float64(v)
	}
	return out, nil
}

// float32s rounds to float32: ONNX's scales are float32, and the output
// size floor(size * scale) must be computed from the same number.
func float32s(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(float32(x))
	}
	return out
}

func buildResize[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	if x.integral() {
		return nil, fmt.Errorf("input is %s: graft resizes float tensors", x.dtype())
	}
	s, err := resizeAttrs(n, b.opset)
	if err != nil {
		return nil, err
	}
	r := len(x.shape)
	if b.opset < 11 {
		scales, err := b.optionalFloats(in, 1, "scales")
		if err != nil {
			return nil, err
		}
		return one(b.resizeByScales(x, float32s(scales), nil, s))
	}
	roi, err := b.optionalFloats(in, 1, "roi")
	if err != nil {
		return nil, err
	}
	scales, err := b.optionalFloats(in, 2, "scales")
	if err != nil {
		return nil, err
	}
	var sizes []int64
	if len(in) > 3 && in[3] != nil {
		if sizes, err = b.intsOf(in, 3, "sizes"); err != nil {
			return nil, err
		}
		if len(sizes) == 0 {
			sizes = nil
		}
	}
	if (scales == nil) == (sizes == nil) {
		return nil, fmt.Errorf("exactly one of scales and sizes must be given")
	}
	// Opset 18's axes name the axes scales, sizes and roi cover.
	axes := make([]int, r)
	for d := range axes {
		axes[d] = d
	}
	if a := n.AttrInts("axes", nil); a != nil && b.opset >= 18 {
		axes = axes[:0]
		for _, v := range a {
			ax, err := shapeAxis(v, r)
			if err != nil {
				return nil, err
			}
			if slices.Contains(axes, ax) {
				return nil, fmt.Errorf("axes %v repeat an axis", a)
			}
			axes = append(axes, ax)
		}
	}
	if s.coord == "tf_crop_and_resize" {
		if len(roi) != 2*len(axes) {
			return nil, fmt.Errorf("roi has %d values; tf_crop_and_resize needs %d", len(roi), 2*len(axes))
		}
		full := make([]float64, 2*r)
		for d := range r {
			full[d], full[r+d] = 0, 1
		}
		for i, ax := range axes {
			full[ax], full[r+ax] = roi[i], roi[len(axes)+i]
		}
		roi = full
	} else {
		roi = nil
	}
	if scales != nil {
		if len(scales) != len(axes) {
			return nil, fmt.Errorf("scales %v have %d values for %d axes", scales, len(scales), len(axes))
		}
		full := make([]float64, r)
		for d := range full {
			full[d] = 1
		}
		for i, ax := range axes {
			full[ax] = scales[i]
		}
		return one(b.resizeByScales(x, float32s(full), roi, s))
	}
	if len(sizes) != len(axes) {
		return nil, fmt.Errorf("sizes %v have %d values for %d axes", sizes, len(sizes), len(axes))
	}
	out := append([]int(nil), x.shape...)
	policy := "stretch"
	if b.opset >= 18 {
		policy = n.AttrString("keep_aspect_ratio_policy", "stretch")
	}
	if policy != "stretch" && policy != "not_larger" && policy != "not_smaller" {
		return nil, fmt.Errorf("keep_aspect_ratio_policy %q is not stretch, not_larger or not_smaller", policy)
	}
	common := 0.0
	for i, ax := range axes {
		if sizes[i] < 1 {
			return nil, fmt.Errorf("sizes %v must be positive", sizes)
		}
		sc := float64(sizes[i]) / float64(x.shape[ax])
		if i == 0 || policy == "not_larger" && sc < common || policy == "not_smaller" && sc > common {
			common = sc
		}
		out[ax] = int(sizes[i])
	}
	scales = make([]float64, r)
	for d := range scales {
		scales[d] = float64(out[d]) / float64(x.shape[d])
	}
	if policy != "stretch" {
		// One scale for every axis named, and the sizes it gives, rounded.
		for _, ax := range axes {
			out[ax] = int(math.Round(common * float64(x.shape[ax])))
			scales[ax] = common
		}
	}
	return one(b.resize(x, out, scales, roi, s))
}

// resizeByScales resizes every axis by its scale: the output has floor(size
// * scale) elements (of the roi's part, for tf_crop_and_resize).
func (b *builder[T]) resizeByScales(x *val[T], scales, roi []float64, s *resizeSpec) (*val[T], error) {
	r := len(x.shape)
	if len(scales) != r {
		return nil, fmt.Errorf("scales %v have %d values for input %v", scales, len(scales), x.shape)
	}
	out := make([]int, r)
	for d, sc := range scales {
		if !(sc > 0) || math.IsInf(sc, 0) {
			return nil, fmt.Errorf("scales %v must be positive and finite", scales)
		}
		f := float64(x.shape[d]) * sc
		if roi != nil {
			f *= roi[r+d] - roi[d]
		}
		if f >= math.MaxInt32 {
			return nil, fmt.Errorf("scales %v make the output too large", scales)
		}
		out[d] = int(f)
	}
	return b.resize(x, out, scales, roi, s)
}

// buildUpsample is Upsample, Resize's predecessor: scales as an attribute
// (opset 7) or an input (opset 9), asymmetric coordinates, nearest picks
// rounding down.
func buildUpsample[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	x, err := input0(in)
	if err != nil {
		return nil, err
	}
	if x.integral() {
		return nil, fmt.Errorf("input is %s: graft resizes float tensors", x.dtype())
	}
	s := &resizeSpec{mode: n.AttrString("mode", "nearest"), coord: "asymmetric", nearest: "simple"}
	if s.mode == "bilinear" {
		s.mode = "linear" // opset 7 spelled it so
	}
	if s.mode != "nearest" && s.mode != "linear" {
		return nil, fmt.Errorf("mode %q is not nearest or linear", s.mode)
	}
	var scales []float64
	if b.opset < 9 {
		a := n.Attr("scales")
		if a == nil || len(a.Floats) == 0 {
			return nil, fmt.Errorf("the scales attribute is required")
		}
		for _, f := range a.Floats {
			scales = append(scales, float64(f))
		}
	} else if scales, err = b.optionalFloats(in, 1, "scales"); err != nil {
		return nil, err
	}
	return one(b.resizeByScales(x, float32s(scales), nil, s))
}
