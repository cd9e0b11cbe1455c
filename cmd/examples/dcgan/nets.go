package main

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/surgery"
)

// The two networks of DCGAN (Radford et al., PyTorch's DCGAN tutorial),
// sized for 28x28 gray images, as ONNX graphs built with the IR. Convolutions
// have no bias, as in the paper; every parameter is drawn by DCGAN's rule
// (surgery.DCGAN: weights N(0, 0.02), BatchNorm scale N(1, 0.02), bias 0).
//
//	generator      z [N, nz, 1, 1]
//	               ConvTranspose(nz -> 4ngf, 7x7)            BN ReLU  [N, 4ngf, 7, 7]
//	               ConvTranspose(4ngf -> 2ngf, 4x4, s2, p1)   BN ReLU  [N, 2ngf, 14, 14]
//	               ConvTranspose(2ngf -> 1, 4x4, s2, p1)      Tanh     [N, 1, 28, 28] in [-1, 1]
//
//	discriminator  image [N, 1, 28, 28] in [-1, 1]
//	               Conv(1 -> ndf, 4x4, s2, p1)                LeakyRelu(0.2)     [N, ndf, 14, 14]
//	               Conv(ndf -> 2ndf, 4x4, s2, p1)             BN LeakyRelu(0.2)  [N, 2ndf, 7, 7]
//	               Conv(2ndf -> 1, 7x7) Flatten -> logit [N, 1]; Sigmoid -> real [N, 1]

// Sizes are the networks' widths.
type Sizes struct {
	Z   int // the generator's noise size (nz)
	NGF int // the generator's width: its layers have 4ngf, 2ngf, 1 channels
	NDF int // the discriminator's width: ndf, 2ndf, 1 channels
}

// Names of the networks' inputs and outputs.
const (
	noiseInput = "z"
	imageName  = "image"
	realOutput = "real"  // D's probability that its input is a real digit
	logitValue = "logit" // its logit, the Sigmoid's input
)

// layers adds layers to a graph, one parameter tensor at a time.
type layers struct {
	g   *onnx.Graph
	err error
}

// param adds an initializer filled with v (surgery.Initialize redraws
// weights and scales).
func (l *layers) param(name string, v float32, dims ...int64) *onnx.Value {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = v
	}
	t, err := onnx.FromFloat32(name, dims, data)
	if err != nil && l.err == nil {
		l.err = err
	}
	return l.g.AddInitializer(t)
}

func ints(name string, v ...int64) *onnx.Attribute {
	return &onnx.Attribute{Name: name, Type: onnx.AttrInts, Ints: v}
}

// conv adds a Conv or ConvTranspose without bias: k x k kernel, stride s,
// padding p on every side. ONNX stores both kernels as PyTorch does: Conv
// [out, in, k, k], ConvTranspose [in, out, k, k].
func (l *layers) conv(op, name string, x *onnx.Value, in, out, k, s, p int) *onnx.Value {
	dims := []int64{int64(out), int64(in), int64(k), int64(k)}
	if op == "ConvTranspose" {
		dims[0], dims[1] = dims[1], dims[0]
	}
	w := l.param(name+".weight", 0, dims...)
	return l.g.AddNode(op, name, []*onnx.Value{x, w}, []string{name + "_out"},
		ints("kernel_shape", int64(k), int64(k)), ints("strides", int64(s), int64(s)),
		ints("pads", int64(p), int64(p), int64(p), int64(p))).Outputs[0]
}

// bn adds BatchNormalization over c channels with PyTorch's defaults
// (eps 1e-5, momentum 0.1, which ONNX writes as 0.9).
func (l *layers) bn(name string, x *onnx.Value, c int) *onnx.Value {
	in := []*onnx.Value{x,
		l.param(name+".weight", 1, int64(c)), l.param(name+".bias", 0, int64(c)),
		l.param(name+".running_mean", 0, int64(c)), l.param(name+".running_var", 1, int64(c))}
	return l.g.AddNode("BatchNormalization", name, in, []string{name + "_out"},
		&onnx.Attribute{Name: "epsilon", Type: onnx.AttrFloat, Float: 1e-5},
		&onnx.Attribute{Name: "momentum", Type: onnx.AttrFloat, Float: 0.9}).Outputs[0]
}

func (l *layers) act(op, name string, x *onnx.Value, attrs ...*onnx.Attribute) *onnx.Value {
	return l.g.AddNode(op, name, []*onnx.Value{x}, []string{name + "_out"}, attrs...).Outputs[0]
}

func leaky(l *layers, name string, x *onnx.Value) *onnx.Value {
	return l.act("LeakyRelu", name, x, &onnx.Attribute{Name: "alpha", Type: onnx.AttrFloat, Float: 0.2})
}

// model wraps a graph as an opset-13 model and draws its parameters by
// DCGAN's rule from seed.
func model(l *layers, seed int64) (*onnx.Model, error) {
	if l.err != nil {
		return nil, l.err
	}
	m := &onnx.Model{IRVersion: 8, Opsets: []onnx.Opset{{Version: 13}}, ProducerName: "graft dcgan example", Graph: l.g}
	if err := surgery.Apply(m, surgery.Initialize(surgery.DCGAN(), nil, seed)); err != nil {
		return nil, fmt.Errorf("%s: %w", l.g.Name, err)
	}
	return m, nil
}

// Generator returns the generator, its parameters drawn from seed.
func Generator(s Sizes, seed int64) (*onnx.Model, error) {
	l := &layers{g: &onnx.Graph{Name: "generator"}}
	z := l.g.AddInput(noiseInput, &onnx.Type{Elem: onnx.Float,
		Shape: onnx.Shape{onnx.Symbolic("N"), onnx.Fixed(int64(s.Z)), onnx.Fixed(1), onnx.Fixed(1)}})
	h := l.act("Relu", "relu1", l.bn("bn1", l.conv("ConvTranspose", "deconv1", z, s.Z, 4*s.NGF, 7, 1, 0), 4*s.NGF))
	h = l.act("Relu", "relu2", l.bn("bn2", l.conv("ConvTranspose", "deconv2", h, 4*s.NGF, 2*s.NGF, 4, 2, 1), 2*s.NGF))
	img := l.act("Tanh", "tanh", l.conv("ConvTranspose", "deconv3", h, 2*s.NGF, 1, 4, 2, 1))
	img.Name = imageName
	// InferShapes does not know ConvTranspose: the output's type is given.
	img.Type = &onnx.Type{Elem: onnx.Float, Shape: onnx.Shape{onnx.Symbolic("N"), onnx.Fixed(1), onnx.Fixed(28), onnx.Fixed(28)}}
	l.g.Outputs = []*onnx.Value{img}
	return model(l, seed)
}

// Discriminator returns the discriminator, its parameters drawn from seed.
func Discriminator(s Sizes, seed int64) (*onnx.Model, error) {
	l := &layers{g: &onnx.Graph{Name: "discriminator"}}
	x := l.g.AddInput(imageName, &onnx.Type{Elem: onnx.Float,
		Shape: onnx.Shape{onnx.Symbolic("N"), onnx.Fixed(1), onnx.Fixed(28), onnx.Fixed(28)}})
	h := leaky(l, "lrelu1", l.conv("Conv", "conv1", x, 1, s.NDF, 4, 2, 1))
	h = leaky(l, "lrelu2", l.bn("bn2", l.conv("Conv", "conv2", h, s.NDF, 2*s.NDF, 4, 2, 1), 2*s.NDF))
	logit := l.act("Flatten", "flatten", l.conv("Conv", "conv3", h, 2*s.NDF, 1, 7, 1, 0))
	logit.Name = logitValue
	prob := l.act("Sigmoid", "sigmoid", logit)
	prob.Name = realOutput
	l.g.Outputs = []*onnx.Value{prob}
	return model(l, seed)
}

// pairOutput is the training copy's second output: [0, logit] per row.
const pairOutput = "logit_pair"

// withLogitPair returns a copy of the discriminator with a second output,
// [0, logit] for each example. DCGAN's loss is the binary cross-entropy of
// the Sigmoid's output, and for p = sigmoid(l), -log p and -log(1-p) are
// the two-class cross-entropy of the logits [0, l] (softmax([0, l]) =
// [1-p, p]): so runtime.CrossEntropy on this output, class 1 = real, is
// PyTorch's BCELoss, computed from the logit without the saturating exp.
func withLogitPair(d *onnx.Model) (*onnx.Model, error) {
	m, err := d.Clone()
	if err != nil {
		return nil, err
	}
	g := m.Graph
	l := g.Value(logitValue)
	zero := g.AddNode("Sub", "zero_logit", []*onnx.Value{l, l}, []string{"zero_logit_out"}).Outputs[0]
	pair := g.AddNode("Concat", "logit_pair", []*onnx.Value{zero, l}, []string{pairOutput},
		&onnx.Attribute{Name: "axis", Type: onnx.AttrInt, Int: 1}).Outputs[0]
	g.Outputs = append(g.Outputs, pair)
	if err := surgery.Apply(m); err != nil { // shape-infers and validates
		return nil, err
	}
	return m, nil
}
