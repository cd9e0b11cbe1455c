package surgery

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
)

// STNOptions configure InsertSpatialTransformer.
type STNOptions struct {
	// Input names the image input to transform; empty means the model's
	// first graph input, the one its contract describes.
	Input string
	// Seed seeds the localisation net's initial weights.
	Seed int64
}

// Names InsertSpatialTransformer gives what it adds: parameters are
// "stn.localization.0.weight" and so on (PyTorch's spatial transformer
// tutorial's module names, under "stn."), nodes "stn/...".
const (
	stnPrefix = "stn"
	// STNTheta is the value holding each example's transform [N, 2, 3].
	STNTheta = "stn/theta"
	// STNOutput is the value holding the transformed images, what the
	// classifier now reads.
	STNOutput = "stn/transformed"
)

// stnMinSide is the smallest input side the localisation net takes:
// 7x7 conv, 2x2 pool, 5x5 conv, 2x2 pool must leave at least one pixel.
const stnMinSide = 16

// stnOpset is the opset where GridSample first appears, stnAffineOpset
// where AffineGrid does.
const (
	stnOpset       = 16
	stnAffineOpset = 20
)

// InsertSpatialTransformer returns an edit that puts a spatial transformer
// (Jaderberg et al.; PyTorch's tutorial) in front of a classifier: a
// localisation net
//
//	Conv(C->8, 7x7) MaxPool(2) Relu  Conv(8->10, 5x5) MaxPool(2) Relu
//	Flatten  Gemm(->32) Relu  Gemm(32->6)
//
// predicts each image's affine transform theta [N, 2, 3]; an affine grid
// (align_corners 0) and GridSample (bilinear, zero padding) resample the
// image by it, and the classifier reads the result. The last Gemm starts at
// zero weights and bias [1, 0, 0, 0, 1, 0], the identity: the edited model
// first computes what the classifier did (up to GridSample's bilinear
// rounding) and learns the transform end to end. The other weights are
// drawn as PyTorch's default (U(±1/sqrt(fan_in))) from opts.Seed.
//
// The image input must be NCHW with its channels, height and width fixed,
// at least 16x16. When the model normalises its input itself (a Sub and a
// Div after it, see Normalize), the transformer goes after that, so the
// contract still sees the normalisation and the zero padding is the mean.
// The input's name, type and contract do not change; a stored trainable set
// gains the new weights.
//
// GridSample needs opset 16. A model importing opset 13 to 15 is raised to
// 16 (and to IR version 8, if older), which changes no operator it may use
// (RoiAlign's default would change, and BatchNormalization's training
// outputs: a model with either is refused); older opsets are refused, since
// at 13 Squeeze, Unsqueeze, ReduceSum and Split changed form. From opset 20
// the grid is one AffineGrid node; below it, the same grid written in ops
// of the opset: MatMul of a constant base grid [H*W, 3] by theta
// transposed, reshaped to [N, H, W, 2], which every backend of the opset
// runs.
func InsertSpatialTransformer(opts STNOptions) Edit {
	return func(m *onnx.Model) error {
		g := m.Graph
		x := firstInput(g)
		if opts.Input != "" {
			x = nil
			for _, v := range g.Inputs {
				if v.Name == opts.Input && !v.IsConst() {
					x = v
				}
			}
		}
		if x == nil {
			return fmt.Errorf("insert spatial transformer: no graph input named %q", opts.Input)
		}
		c, h, w, err := stnInputSize(x)
		if err != nil {
			return fmt.Errorf("insert spatial transformer: %w", err)
		}
		if err := stnFreeNames(g); err != nil {
			return fmt.Errorf("insert spatial transformer: %w", err)
		}
		opset, err := stnOpsetFor(m)
		if err != nil {
			return fmt.Errorf("insert spatial transformer: %w", err)
		}
		before, err := contract.Derive(m)
		if err != nil {
			return fmt.Errorf("insert spatial transformer: %w", err)
		}
		at := x
		if before.Input.NormalizedInside && before.Input.Name == x.Name {
			at = normalizedValue(g, x)
		}
		b := &stnBuilder{g: g, rng: rand.New(rand.NewSource(opts.Seed))}
		if err := InsertAfter(at.Name, func(g *onnx.Graph, v *onnx.Value) (*onnx.Value, error) {
			return b.build(v, c, h, w, opset)
		})(m); err != nil {
			return fmt.Errorf("insert spatial transformer: %w", err)
		}
		if b.err != nil {
			return fmt.Errorf("insert spatial transformer: %w", b.err)
		}
		if opset != m.OpsetVersion("") {
			setOpset(m, opset)
			// IR version 8 came with opset 16 (ONNX 1.11).
			m.IRVersion = max(m.IRVersion, 8)
		}
		if trained, stored, err := storedTrainable(m); err != nil {
			return fmt.Errorf("insert spatial transformer: %w", err)
		} else if stored {
			if err := SetTrainable(m, append(trained, b.params...)); err != nil {
				return fmt.Errorf("insert spatial transformer: %w", err)
			}
		}
		return nil
	}
}

// stnInputSize returns the image input's fixed channels, height and width.
func stnInputSize(x *onnx.Value) (c, h, w int64, err error) {
	var s onnx.Shape
	if x.Type != nil {
		s = x.Type.Shape
	}
	if len(s) != 4 || !s[1].Known() || !s[2].Known() || !s[3].Known() {
		return 0, 0, 0, fmt.Errorf("input %q has shape %v: want NCHW images with fixed channels, height and width", x.Name, s)
	}
	c, h, w = s[1].Value, s[2].Value, s[3].Value
	if h < stnMinSide || w < stnMinSide {
		return 0, 0, 0, fmt.Errorf("input %q is %dx%d: the localisation net needs at least %dx%d", x.Name, h, w, stnMinSide, stnMinSide)
	}
	return c, h, w, nil
}

// stnFreeNames refuses a model that already has names the transformer
// would take (one inserted before, say).
func stnFreeNames(g *onnx.Graph) error {
	var taken string
	walkGraph(g, func(v *onnx.Value) {
		if taken == "" && (strings.HasPrefix(v.Name, stnPrefix+".") || strings.HasPrefix(v.Name, stnPrefix+"/")) {
			taken = fmt.Sprintf("value %q", v.Name)
		}
	}, func(n *onnx.Node) {
		if taken == "" && strings.HasPrefix(n.Name, stnPrefix+"/") {
			taken = fmt.Sprintf("node %q", n.Name)
		}
	})
	if taken != "" {
		return fmt.Errorf("the model already has a %s, a name the transformer would take (was one inserted before?)", taken)
	}
	return nil
}

// stnOpsetFor returns the default-domain opset the edited model imports:
// its own from 16 on, 16 for 13 to 15 when that changes nothing it uses.
func stnOpsetFor(m *onnx.Model) (int64, error) {
	v := m.OpsetVersion("")
	switch {
	case v >= stnOpset:
		return v, nil
	case v < 13:
		return 0, fmt.Errorf("GridSample needs opset %d and the model imports opset %d; raising it past 13 would change Squeeze, Unsqueeze, ReduceSum and Split (convert the model to opset 13 or later first)", stnOpset, v)
	}
	var bad string
	walkGraph(m.Graph, func(*onnx.Value) {}, func(n *onnx.Node) {
		if bad != "" || n.Domain != "" && n.Domain != "ai.onnx" {
			return
		}
		switch {
		case n.OpType == "RoiAlign":
			bad = fmt.Sprintf("%s (its default coordinate_transformation_mode changes at opset 16)", n)
		case n.OpType == "BatchNormalization" && len(n.Outputs) > 1:
			bad = fmt.Sprintf("%s with training outputs (they change at opset 14)", n)
		}
	})
	if bad != "" {
		return 0, fmt.Errorf("GridSample needs opset %d and the model imports opset %d; it cannot be raised: the model has %s", stnOpset, v, bad)
	}
	return stnOpset, nil
}

func setOpset(m *onnx.Model, v int64) {
	for i, o := range m.Opsets {
		if o.Domain == "" || o.Domain == "ai.onnx" {
			m.Opsets[i].Version = v
		}
	}
}

// normalizedValue returns the output of the Sub-then-Div (or Mul) chain
// after x that the contract recognised as normalisation.
func normalizedValue(g *onnx.Graph, x *onnx.Value) *onnx.Value {
	if rs := g.Consumers(x); len(rs) == 1 && rs[0].OpType == "Sub" {
		if next := g.Consumers(rs[0].Outputs[0]); len(next) == 1 && (next[0].OpType == "Div" || next[0].OpType == "Mul") {
			return next[0].Outputs[0]
		}
	}
	return x
}

// stnBuilder adds the transformer's nodes, recording its parameters.
type stnBuilder struct {
	g      *onnx.Graph
	rng    *rand.Rand
	params []string
	err    error
}

func (b *stnBuilder) tensor(t *onnx.Tensor, err error) *onnx.Tensor {
	if err != nil && b.err == nil {
		b.err = err
	}
	return t
}

// param adds a float initializer; a nil v draws PyTorch's default,
// U(±1/sqrt(fanIn)).
func (b *stnBuilder) param(name string, v []float32, fanIn int64, dims ...int64) *onnx.Value {
	if v == nil {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		v = LinearDefault{}.Draw(b.rng, int(n), int(fanIn), 0)
	}
	name = stnPrefix + "." + name
	b.params = append(b.params, name)
	return b.g.AddInitializer(b.tensor(onnx.FromFloat32(name, dims, v)))
}

func (b *stnBuilder) node(op, name string, in []*onnx.Value, attrs ...*onnx.Attribute) *onnx.Value {
	name = stnPrefix + "/" + name
	return b.g.AddNode(op, name, in, []string{name}, attrs...).Outputs[0]
}

func attrInts(name string, v ...int64) *onnx.Attribute {
	return &onnx.Attribute{Name: name, Type: onnx.AttrInts, Ints: v}
}

func (b *stnBuilder) conv(name, module string, x *onnx.Value, in, out, k int64) *onnx.Value {
	fanIn := in * k * k
	w := b.param(module+".weight", nil, fanIn, out, in, k, k)
	bias := b.param(module+".bias", nil, fanIn, out)
	return b.node("Conv", name, []*onnx.Value{x, w, bias}, attrInts("kernel_shape", k, k))
}

func (b *stnBuilder) pool(name string, x *onnx.Value) *onnx.Value {
	return b.node("MaxPool", name, []*onnx.Value{x}, attrInts("kernel_shape", 2, 2), attrInts("strides", 2, 2))
}

func (b *stnBuilder) gemm(name string, x, w, bias *onnx.Value) *onnx.Value {
	return b.node("Gemm", name, []*onnx.Value{x, w, bias}, &onnx.Attribute{Name: "transB", Type: onnx.AttrInt, Int: 1})
}

// build adds the transformer reading x (C x H x W images) and returns the
// transformed images.
func (b *stnBuilder) build(x *onnx.Value, c, h, w, opset int64) (*onnx.Value, error) {
	relu := func(name string, v *onnx.Value) *onnx.Value { return b.node("Relu", name, []*onnx.Value{v}) }
	l := relu("relu1", b.pool("pool1", b.conv("conv1", "localization.0", x, c, 8, 7)))
	l = relu("relu2", b.pool("pool2", b.conv("conv2", "localization.3", l, 8, 10, 5)))
	lh, lw := ((h-6)/2-4)/2, ((w-6)/2-4)/2
	features := 10 * lh * lw
	l = b.node("Flatten", "flatten", []*onnx.Value{l})
	l = relu("relu3", b.gemm("fc1", l, b.param("fc_loc.0.weight", nil, features, 32, features), b.param("fc_loc.0.bias", nil, features, 32)))
	theta6 := b.gemm("fc2", l, b.param("fc_loc.2.weight", make([]float32, 6*32), 32, 6, 32),
		b.param("fc_loc.2.bias", []float32{1, 0, 0, 0, 1, 0}, 32, 6))
	shape := b.g.AddInitializer(b.tensor(onnx.FromInt64(stnPrefix+".theta_shape", []int64{3}, []int64{-1, 2, 3})))
	theta := b.node("Reshape", "theta", []*onnx.Value{theta6, shape})

	var grid *onnx.Value
	mode := "bilinear"
	if opset >= stnAffineOpset {
		size := b.node("Shape", "size", []*onnx.Value{x})
		grid = b.node("AffineGrid", "grid", []*onnx.Value{theta, size}, &onnx.Attribute{Name: "align_corners", Type: onnx.AttrInt, Int: 0})
		mode = "linear" // GridSample-20's name for bilinear
	} else {
		// The grid of AffineGrid (align_corners 0): pixel (i, j) samples
		// theta · (x_j, y_i, 1), x_j = (2j+1)/W - 1, y_i = (2i+1)/H - 1.
		base := make([]float32, 0, h*w*3)
		for i := range h {
			for j := range w {
				base = append(base, float32(2*j+1)/float32(w)-1, float32(2*i+1)/float32(h)-1, 1)
			}
		}
		// A Constant node, not an initializer: the base grid never trains.
		bg := b.node("Constant", "base_grid", nil, &onnx.Attribute{Name: "value", Type: onnx.AttrTensor,
			Tensor: b.tensor(onnx.FromFloat32(stnPrefix+"/base_grid", []int64{h * w, 3}, base))})
		thetaT := b.node("Transpose", "theta_t", []*onnx.Value{theta}, attrInts("perm", 0, 2, 1))
		flat := b.node("MatMul", "grid_flat", []*onnx.Value{bg, thetaT})
		gshape := b.g.AddInitializer(b.tensor(onnx.FromInt64(stnPrefix+".grid_shape", []int64{4}, []int64{-1, h, w, 2})))
		grid = b.node("Reshape", "grid", []*onnx.Value{flat, gshape})
	}
	out := b.node("GridSample", "transformed", []*onnx.Value{x, grid},
		&onnx.Attribute{Name: "mode", Type: onnx.AttrString, String: []byte(mode)},
		&onnx.Attribute{Name: "padding_mode", Type: onnx.AttrString, String: []byte("zeros")},
		&onnx.Attribute{Name: "align_corners", Type: onnx.AttrInt, Int: 0})
	if x.Type != nil {
		out.Type = &onnx.Type{Elem: x.Type.Elem, Shape: slices.Clone(x.Type.Shape)}
	}
	return out, b.err
}
