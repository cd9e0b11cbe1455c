package contract

import (
	"fmt"
	"slices"

	"github.com/graft-dev/graft/onnx"
)

// Derive works out m's contract: from the contract stored in its metadata
// (see Store) where there is one, else from the graph, else from
// documented defaults (torchvision's ImageNet preprocessing). The graph
// always decides what it states: the input's name, shape and layout, the
// number of classes, and a final Softmax, LogSoftmax or Sigmoid, which
// makes the output probabilities or log-probabilities whatever is stored.
//
// Inferred from the graph when nothing is stored:
//   - the input is the first graph input that is not an initializer; a
//     4-d shape is NCHW unless its channels sit last (NHWC, refused when
//     fed); free sizes default to 3 channels, 224×224;
//   - normalisation inside: when the input's only reader is a Sub of a
//     constant followed by a Div by (or Mul with) a constant, as
//     surgery.Normalize and many exporters make it, the model takes
//     pixels and normalises them itself;
//   - otherwise ImageNet's mean and std for 3 channels, none for 1;
//   - the resize of DefaultResize, pixels in [0, 1];
//   - the output's kind from its last node, looking through Identity,
//     Flatten, Reshape, Squeeze and Dropout; logits if there is none.
//
// Contract.Notes say which of these were used.
func Derive(m *onnx.Model) (*Contract, error) {
	if m == nil || m.Graph == nil {
		return nil, fmt.Errorf("contract: no model")
	}
	s, err := read(m)
	if err != nil {
		return nil, err
	}
	g := m.Graph
	x := firstInput(g)
	if x == nil {
		return nil, errNoInput
	}
	if len(g.Outputs) == 0 || g.Outputs[0] == nil {
		return nil, errNoOutput
	}
	c := &Contract{Stored: s != nil}
	if err := c.deriveInput(g, x, s); err != nil {
		return nil, err
	}
	c.deriveOutput(m, g.Outputs[0], s)
	return c, nil
}

// firstInput returns the first graph input that is not an initializer.
func firstInput(g *onnx.Graph) *onnx.Value {
	for _, v := range g.Inputs {
		if v != nil && !v.IsConst() {
			return v
		}
	}
	return nil
}

func (c *Contract) note(format string, args ...any) {
	c.Notes = append(c.Notes, fmt.Sprintf(format, args...))
}

func (c *Contract) deriveInput(g *onnx.Graph, x *onnx.Value, s *stored) error {
	in := &c.Input
	in.Name = x.Name
	if x.Type != nil {
		in.Shape = x.Type.Shape
	}
	dims := func(i int) int { // a fixed dimension, 0 when free
		if len(in.Shape) > i && in.Shape[i].Known() {
			return int(in.Shape[i].Value)
		}
		return 0
	}
	switch {
	case in.Shape == nil:
		in.Layout = NCHW
		c.note("input %q has no declared shape: it is taken to be a batch of images [N, C, H, W]", in.Name)
	case len(in.Shape) != 4:
		// Not an image batch: tensor files can still feed it.
		in.Layout = ""
	case dims(1) != 0 && dims(1) != 1 && dims(1) != 3 && (dims(3) == 1 || dims(3) == 3):
		in.Layout = NHWC
		in.Height, in.Width, in.Channels = dims(1), dims(2), dims(3)
	default:
		in.Layout = NCHW
		in.Channels, in.Height, in.Width = dims(1), dims(2), dims(3)
	}
	if in.Layout != NCHW {
		return nil
	}
	if s != nil && s.Input.Layout != "" {
		// The stored contract, checked against what the graph fixes.
		st := s.Input
		for _, d := range []struct {
			what        string
			graph, meta int
		}{{"channels", in.Channels, st.Channels}, {"height", in.Height, st.Height}, {"width", in.Width, st.Width}} {
			if d.graph != 0 && d.graph != d.meta {
				return fmt.Errorf("metadata %s says the input's %s is %d, but input %q has shape %s", Key, d.what, d.meta, in.Name, in.Shape)
			}
		}
		in.Channels, in.Height, in.Width = st.Channels, st.Height, st.Width
		in.Resize, in.PixelScale = st.Resize, st.PixelScale
		in.Mean, in.Std, in.NormalizedInside = st.Mean, st.Std, st.NormalizedInside
		return nil
	}
	if in.Channels == 0 {
		in.Channels = 3
		c.note("input %q does not fix its channels: 3 (RGB) assumed", in.Name)
	}
	switch {
	case in.Height == 0 && in.Width == 0:
		in.Height, in.Width = DefaultSize, DefaultSize
		c.note("input %q does not fix its size: %dx%d assumed", in.Name, DefaultSize, DefaultSize)
	case in.Height == 0:
		in.Height = in.Width
		c.note("input %q does not fix its height: the width, %d, assumed", in.Name, in.Width)
	case in.Width == 0:
		in.Width = in.Height
		c.note("input %q does not fix its width: the height, %d, assumed", in.Name, in.Height)
	}
	in.Resize = DefaultResize(in.Height, in.Width)
	in.PixelScale = 1
	if mean, std, ok := normalizationInside(g, x); ok {
		in.Mean, in.Std, in.NormalizedInside = mean, std, true
		c.note("the model normalises its input itself (a Sub and a Div after %q): it takes pixels in [0, 1]", in.Name)
		return nil
	}
	if in.Channels == 3 {
		in.Mean, in.Std = ImageNetMean, ImageNetStd
		c.note("no normalisation stored in the model: ImageNet's mean and std, the default for 3-channel models")
	} else {
		c.note("no normalisation stored in the model: none, the default for 1-channel models")
	}
	return nil
}

// normalizationInside recognises (x - mean) / std (or (x - mean) * (1/std))
// right after the input x, with per-channel or single constants.
func normalizationInside(g *onnx.Graph, x *onnx.Value) (mean, std []float32, ok bool) {
	readers := g.Consumers(x)
	if len(readers) != 1 || readers[0].OpType != "Sub" || readers[0].Input(0) != x {
		return nil, nil, false
	}
	sub := readers[0]
	mean, ok = channelConst(sub.Input(1))
	if !ok || len(sub.Outputs) != 1 {
		return nil, nil, false
	}
	next := g.Consumers(sub.Outputs[0])
	if len(next) != 1 || next[0].Input(0) != sub.Outputs[0] {
		return nil, nil, false
	}
	k, ok := channelConst(next[0].Input(1))
	if !ok {
		return nil, nil, false
	}
	switch next[0].OpType {
	case "Div":
		std = k
	case "Mul":
		std = make([]float32, len(k))
		for i, v := range k {
			if v == 0 {
				return nil, nil, false
			}
			std[i] = 1 / v
		}
	default:
		return nil, nil, false
	}
	return mean, std, true
}

// channelConst returns the values of a constant that broadcasts per
// channel over [N, C, H, W]: a scalar, or C values shaped [C, 1, 1] or
// [1, C, 1, 1].
func channelConst(v *onnx.Value) ([]float32, bool) {
	if v == nil || v.Const == nil || (v.Const.DType != onnx.Float && v.Const.DType != onnx.Double) {
		return nil, false
	}
	var n int64 = 1
	for i, d := range v.Const.Dims {
		n *= d
		// Only the channel axis may be longer than 1.
		if d != 1 && len(v.Const.Dims)-i != 3 {
			return nil, false
		}
	}
	if n != 1 && n != 3 {
		return nil, false
	}
	f, err := v.Const.Float64s()
	if err != nil {
		return nil, false
	}
	out := make([]float32, len(f))
	for i, x := range f {
		out[i] = float32(x)
	}
	return out, true
}

// passThrough are ops that keep the class scores' values: the activation
// may sit before them.
var passThrough = []string{"Identity", "Flatten", "Reshape", "Squeeze", "Dropout"}

func (c *Contract) deriveOutput(m *onnx.Model, y *onnx.Value, s *stored) {
	out := &c.Output
	out.Name = y.Name
	if y.Type != nil && len(y.Type.Shape) == 2 && y.Type.Shape[1].Known() {
		out.NumClasses = int(y.Type.Shape[1].Value)
	}
	if act := finalActivation(m, y); act != nil {
		out.Activation, out.Logits = act.OpType, act.Input(0).Name
	}
	switch out.Activation {
	case "LogSoftmax":
		out.Kind = LogProbabilities
	case "Softmax", "Sigmoid":
		out.Kind = Probabilities
	default:
		out.Kind = Logits
		if s != nil && s.Output.Kind != "" {
			out.Kind = s.Output.Kind
		} else {
			c.note("output %q is taken to hold logits (no final Softmax, LogSoftmax or Sigmoid)", out.Name)
		}
	}
	if s != nil && s.Output.Classes != nil {
		if out.NumClasses > 0 && len(s.Output.Classes) != out.NumClasses {
			c.Warnings = append(c.Warnings, fmt.Sprintf("metadata %s names %d classes, but output %q has %d: the names are ignored",
				Key, len(s.Output.Classes), out.Name, out.NumClasses))
		} else {
			out.Classes = slices.Clone(s.Output.Classes)
			if out.NumClasses == 0 {
				out.NumClasses = len(out.Classes)
			}
		}
	}
}

// finalActivation returns the Softmax, LogSoftmax or Sigmoid over the
// class axis that makes output y, looking back through pass-through ops;
// nil if there is none.
func finalActivation(m *onnx.Model, y *onnx.Value) *onnx.Node {
	for n := y.Producer(); n != nil; {
		switch {
		case n.OpType == "Sigmoid":
			return n
		case n.OpType == "Softmax" || n.OpType == "LogSoftmax":
			if n.Input(0) == nil || !classAxis(m, n) {
				return nil
			}
			return n
		case slices.Contains(passThrough, n.OpType) && n.Input(0) != nil:
			n = n.Input(0).Producer()
			continue
		}
		return nil
	}
	return nil
}

// classAxis reports whether a Softmax or LogSoftmax normalises over axis 1
// of a 2-d input, the class scores of a batch.
func classAxis(m *onnx.Model, n *onnx.Node) bool {
	def := int64(-1)
	if m.OpsetVersion("") < 13 {
		def = 1
	}
	axis := n.AttrInt("axis", def)
	if t := n.Input(0).Type; t != nil && t.Shape != nil {
		r := int64(len(t.Shape))
		if axis < 0 {
			axis += r
		}
		return r == 2 && axis == 1
	}
	return axis == 1 || axis == -1
}

// fits checks a contract against m's graph: its first input and output
// exist, and the sizes and class count agree with what the graph fixes.
func fits(m *onnx.Model, c *Contract) error {
	if m == nil || m.Graph == nil {
		return fmt.Errorf("no model")
	}
	x := firstInput(m.Graph)
	if x == nil {
		return errNoInput
	}
	if len(m.Graph.Outputs) == 0 {
		return errNoOutput
	}
	if c.Input.Layout == NCHW && x.Type != nil && len(x.Type.Shape) == 4 {
		s := x.Type.Shape
		for i, want := range []int{c.Input.Channels, c.Input.Height, c.Input.Width} {
			if d := s[i+1]; d.Known() && d.Value != int64(want) {
				return fmt.Errorf("the contract's input is %dx%dx%d, but input %q has shape %s", c.Input.Channels, c.Input.Height, c.Input.Width, x.Name, s)
			}
		}
	}
	y := m.Graph.Outputs[0]
	if y.Type != nil && len(y.Type.Shape) == 2 && y.Type.Shape[1].Known() && c.Output.Classes != nil &&
		int64(len(c.Output.Classes)) != y.Type.Shape[1].Value {
		return fmt.Errorf("%d class names, but output %q has %d classes", len(c.Output.Classes), y.Name, y.Type.Shape[1].Value)
	}
	return nil
}
