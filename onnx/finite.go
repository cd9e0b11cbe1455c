package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
)

// CheckFinite reports the first NaN or infinity among the model's
// floating-point constants: initializers, tensor and float attributes, in
// subgraphs too. A model holding one computes NaN for every input it
// reaches, so training and attacks would only fail later, after the work.
// The error names the tensor, the first bad element (flat index and
// position in the shape) and how many more there are.
func (m *Model) CheckFinite() error {
	if m.Graph == nil {
		return nil
	}
	return m.Graph.checkFinite("")
}

func (g *Graph) checkFinite(where string) error {
	for _, v := range g.Initializers {
		if err := checkTensorFinite(v.Const); err != nil {
			return fmt.Errorf("%sinitializer %s %w", where, quote(v.Name), err)
		}
	}
	for _, n := range g.Nodes {
		for _, a := range n.Attrs {
			at := fmt.Sprintf("%s%s attribute %s", where, n, quote(a.Name))
			if a.Type == AttrFloat && !finite(float64(a.Float)) {
				return fmt.Errorf("%s is %v", at, a.Float)
			}
			for i, f := range a.Floats {
				if !finite(float64(f)) {
					return fmt.Errorf("%s holds %v at element %d", at, f, i)
				}
			}
			for i, t := range append([]*Tensor{a.Tensor}, a.Tensors...) {
				if t == nil {
					continue
				}
				if err := checkTensorFinite(t); err != nil {
					if a.Tensor == nil || i > 0 {
						at += fmt.Sprintf(" tensor %d", i)
					}
					return fmt.Errorf("%s %w", at, err)
				}
			}
			for _, sg := range a.subgraphs() {
				if err := sg.checkFinite(fmt.Sprintf("%s, subgraph %s: ", at, quote(sg.Name))); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// checkTensorFinite scans a floating-point tensor's elements; other types
// pass.
func checkTensorFinite(t *Tensor) error {
	var size int
	var at func(b []byte) float64 // the element's value if it is not finite, else 0
	switch t.DType {
	case Float:
		size, at = 4, func(b []byte) float64 { return float64(math.Float32frombits(binary.LittleEndian.Uint32(b))) }
	case Double:
		size, at = 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) }
	case Float16:
		size, at = 2, func(b []byte) float64 {
			u := binary.LittleEndian.Uint16(b)
			return special(u>>10&0x1f == 0x1f, u&0x3ff != 0, u>>15 != 0)
		}
	case BFloat16:
		size, at = 2, func(b []byte) float64 {
			u := binary.LittleEndian.Uint16(b)
			return special(u>>7&0xff == 0xff, u&0x7f != 0, u>>15 != 0)
		}
	case Float8E4M3FN:
		size, at = 1, func(b []byte) float64 { return special(b[0]&0x7f == 0x7f, true, false) }
	case Float8E4M3FNUZ, Float8E5M2FNUZ:
		size, at = 1, func(b []byte) float64 { return special(b[0] == 0x80, true, false) }
	case Float8E5M2:
		size, at = 1, func(b []byte) float64 { return special(b[0]>>2&0x1f == 0x1f, b[0]&3 != 0, b[0]>>7 != 0) }
	default:
		return nil
	}
	first, bad := -1, 0
	var firstVal float64
	for i := 0; i+size <= len(t.raw); i += size {
		if v := at(t.raw[i : i+size]); !finite(v) {
			if first < 0 {
				first, firstVal = i/size, v
			}
			bad++
		}
	}
	if first < 0 {
		return nil
	}
	msg := fmt.Sprintf("holds %v at element %d", firstVal, first)
	if len(t.Dims) > 1 {
		msg += fmt.Sprintf(" (%s of %s%s)", position(first, t.Dims), t.DType, dimsString(t.Dims))
	}
	if bad > 1 {
		msg += fmt.Sprintf(", and %d more NaN or infinite elements", bad-1)
	}
	return errors.New(msg)
}

// special returns the value of an element whose exponent bits are all set
// (allOnes): NaN if nan, otherwise an infinity of the sign; 0 otherwise.
func special(allOnes, nan, negative bool) float64 {
	switch {
	case !allOnes:
		return 0
	case nan:
		return math.NaN()
	case negative:
		return math.Inf(-1)
	}
	return math.Inf(1)
}

// position returns the row-major index of flat element i in dims, as
// "[i0,i1,...]".
func position(i int, dims []int64) string {
	idx := make([]string, len(dims))
	for k := len(dims) - 1; k >= 0; k-- {
		d := int(dims[k])
		idx[k] = itoa(int64(i % d))
		i /= d
	}
	return "[" + strings.Join(idx, ",") + "]"
}

func dimsString(dims []int64) string {
	s := make([]string, len(dims))
	for i, d := range dims {
		s[i] = itoa(d)
	}
	return "[" + strings.Join(s, ",") + "]"
}
