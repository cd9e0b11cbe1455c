package runtime

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
)

// padForward runs a Pad case on x and returns the output and its shape.
func padForward(t *testing.T, c opCase, x []float64) ([]float64, []int) {
	t.Helper()
	k := c.kernel(t)
	out := make([]float64, size(k.outShape()))
	if err := k.forward([][]float64{x}, out); err != nil {
		t.Fatal(err)
	}
	return out, k.outShape()
}

func TestPadExamples(t *testing.T) {
	// The examples of ONNX's operator documentation.
	x := []float64{1.0, 1.2, 2.3, 3.4, 4.5, 5.7}
	for _, c := range []struct {
		mode string
		want string
	}{
		{"constant", "[0 0 1 1.2 0 0 2.3 3.4 0 0 4.5 5.7]"},
		{"reflect", "[1 1.2 1 1.2 2.3 3.4 2.3 3.4 4.5 5.7 4.5 5.7]"},
		{"edge", "[1 1 1 1.2 2.3 2.3 2.3 3.4 4.5 4.5 4.5 5.7]"},
	} {
		// Input form (opset 11+) and attribute form (opset 2..10).
		in := opCase{op: "Pad", opset: 13, shapes: [][]int{{3, 2}}, ints: map[int][]int64{1: {0, 2, 0, 0}},
			attrs: []*onnx.Attribute{aString("mode", c.mode)}}
		attr := opCase{op: "Pad", opset: 2, shapes: [][]int{{3, 2}},
			attrs: []*onnx.Attribute{aString("mode", c.mode), aInts("pads", 0, 2, 0, 0)}}
		for _, oc := range []opCase{in, attr} {
			out, shape := padForward(t, oc, x)
			if fmt.Sprint(shape) != "[3 4]" || fmt.Sprint(out) != c.want {
				t.Errorf("%s opset %d: %v %v, want [3 4] %s", c.mode, oc.opset, shape, out, c.want)
			}
		}
	}
}

func TestPadValues(t *testing.T) {
	x := []float64{1, 2, 3, 4, 5}
	for _, c := range []struct {
		mode       string
		begin, end int64
		want       string
	}{
		{"constant", 2, 1, "[7 7 1 2 3 4 5 7]"},
		{"reflect", 2, 3, "[3 2 1 2 3 4 5 4 3 2]"},
		{"edge", 2, 3, "[1 1 1 2 3 4 5 5 5 5]"},
		// Negative pads crop; the padding then works on what is left.
		{"constant", -1, 2, "[2 3 4 5 7 7]"},
		{"reflect", -1, 2, "[2 3 4 5 4 3]"},
		{"edge", -1, 2, "[2 3 4 5 5 5]"},
		{"reflect", 2, -2, "[3 2 1 2 3]"},
		{"constant", -2, -1, "[3 4]"},
		// Pads longer than the axis reflect back and forth (numpy's pad).
		{"reflect", 6, 0, "[3 4 5 4 3 2 1 2 3 4 5]"},
		{"wrap", 2, 3, "[4 5 1 2 3 4 5 1 2 3]"},
	} {
		oc := opCase{op: "Pad", opset: 19, shapes: [][]int{{5}}, ints: map[int][]int64{1: {c.begin, c.end}},
			floats: map[int][]float64{2: {7}}, attrs: []*onnx.Attribute{aString("mode", c.mode)}}
		if out, _ := padForward(t, oc, x); fmt.Sprint(out) != c.want {
			t.Errorf("%s %d %d: %v, want %s", c.mode, c.begin, c.end, out, c.want)
		}
	}
	// Opset 18 axes: pad only the listed axes.
	oc := opCase{op: "Pad", opset: 18, shapes: [][]int{{2, 3}}, ints: map[int][]int64{1: {1, 0}, 3: {-1}},
		floats: map[int][]float64{2: {9}}}
	out, shape := padForward(t, oc, []float64{1, 2, 3, 4, 5, 6})
	if fmt.Sprint(shape) != "[2 4]" || fmt.Sprint(out) != "[9 1 2 3 9 4 5 6]" {
		t.Errorf("axes [-1]: %v %v", shape, out)
	}
	// Attribute form with value.
	oc = opCase{op: "Pad", opset: 10, shapes: [][]int{{1, 2}}, attrs: []*onnx.Attribute{aInts("pads", 1, 0, 0, 1), aFloat("value", 2.5)}}
	out, shape = padForward(t, oc, []float64{1, 2})
	if fmt.Sprint(shape) != "[2 3]" || fmt.Sprint(out) != "[2.5 2.5 2.5 1 2 2.5]" {
		t.Errorf("value attribute: %v %v", shape, out)
	}
}

func TestPadGradients(t *testing.T) {
	cases := []struct {
		shape []int
		pads  []int64
	}{
		{[]int{2, 3, 5, 4}, []int64{0, 0, 2, 1, 0, 0, 3, 2}},
		{[]int{2, 3, 5, 4}, []int64{0, 1, -1, 3, 1, 0, 2, -1}},
		{[]int{3, 5}, []int64{4, 6, 5, 9}}, // pads beyond the axis length
		{[]int{7}, []int64{3, -2}},
	}
	for _, mode := range []string{"constant", "reflect", "edge", "wrap"} {
		for _, c := range cases {
			oc := opCase{op: "Pad", opset: 19, shapes: [][]int{c.shape}, ints: map[int][]int64{1: c.pads},
				attrs: []*onnx.Attribute{aString("mode", mode)}}
			checkGrad(t, oc.kernel(t), randomInputs(30, [][]int{c.shape}))
		}
	}
	// Reflection accumulates: every output adds its gradient to its source.
	k := opCase{op: "Pad", opset: 13, shapes: [][]int{{3}}, ints: map[int][]int64{1: {2, 2}},
		attrs: []*onnx.Attribute{aString("mode", "reflect")}}.kernel(t)
	gout := []float64{1, 1, 1, 1, 1, 1, 1}
	gin := make([]float64, 3)
	k.backward(0, [][]float64{{1, 2, 3}}, nil, gout, gin)
	if fmt.Sprint(gin) != "[2 3 2]" {
		t.Errorf("reflect gradient %v, want [2 3 2]", gin)
	}
}

func TestPadErrors(t *testing.T) {
	for _, c := range []struct {
		oc   opCase
		want string
	}{
		{opCase{op: "Pad", opset: 13, shapes: [][]int{{3}}, ints: map[int][]int64{1: {1}}}, "pads has 1 values"},
		{opCase{op: "Pad", opset: 13, shapes: [][]int{{3}}, ints: map[int][]int64{1: {-2, -1}}}, "empty"},
		{opCase{op: "Pad", opset: 13, shapes: [][]int{{3}}, ints: map[int][]int64{1: {-3, 2}}, attrs: []*onnx.Attribute{aString("mode", "edge")}}, "nothing to repeat"},
		{opCase{op: "Pad", opset: 13, shapes: [][]int{{3}}, ints: map[int][]int64{1: {1, 1}}, attrs: []*onnx.Attribute{aString("mode", "wrap")}}, "opset 19"},
		{opCase{op: "Pad", opset: 13, shapes: [][]int{{3}}, ints: map[int][]int64{1: {1, 1}}, attrs: []*onnx.Attribute{aString("mode", "mirror")}}, "not one of"},
		{opCase{op: "Pad", opset: 13, shapes: [][]int{{3}}}, "pads"},
	} {
		err := buildErr(t, c.oc)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.oc.attrs, err, c.want)
		}
	}
}

// buildErr builds a case's node and returns the error opCase.build would
// have failed the test with, or nil.
func buildErr(t *testing.T, c opCase) error {
	t.Helper()
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.build(tb)
	}()
	<-done
	return tb.err
}

// fatalTB records a Fatalf instead of failing the test.
type fatalTB struct {
	testing.TB
	err error
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.err = fmt.Errorf(format, args...)
	runtime.Goexit()
}
