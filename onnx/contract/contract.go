package contract

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/graft-dev/graft/onnx"
)

// Key is the metadata_props key under which graft stores a model's
// contract, as JSON.
const Key = "graft.contract"

// version is the stored format's version; Derive refuses newer ones.
const version = 1

// A Layout is the order of an image input's dimensions.
type Layout string

// The layouts of image inputs.
const (
	// NCHW, a batch of channel planes, is the layout graft feeds:
	// PyTorch's, and what every torchvision export has.
	NCHW Layout = "NCHW"
	// NHWC (channels last, TensorFlow's) is recognised, to say so, but not
	// fed.
	NHWC Layout = "NHWC"
)

// A Kind says what a classifier's first output holds.
type Kind string

// The output kinds.
const (
	// Logits are unnormalised scores: probabilities are their softmax.
	Logits Kind = "logits"
	// LogProbabilities come from a final LogSoftmax: probabilities are
	// their exp.
	LogProbabilities Kind = "log_probabilities"
	// Probabilities come from a final Softmax (they sum to 1) or Sigmoid
	// (one independent probability per class): they are the output itself.
	Probabilities Kind = "probabilities"
)

// A Contract is what a classifier expects and what it outputs. Derive works
// it out for any model; Store records it in a model graft writes, so every
// command that reads the model later feeds and reads it the same way.
type Contract struct {
	Input  Input  `json:"input"`
	Output Output `json:"output"`
	// Stored says the model's metadata holds a contract (graft wrote it).
	Stored bool `json:"stored"`
	// Notes say which parts were not stored in the model but inferred from
	// the graph or taken from defaults, one sentence each.
	Notes []string `json:"notes,omitempty"`
	// Warnings say what in the model looked wrong and was set aside (class
	// names stored for another number of classes, say); commands print
	// them.
	Warnings []string `json:"warnings,omitempty"`
}

// Input is what the model expects: a batch of images, preprocessed as
// torchvision's evaluation transforms do (Resize(Resize), CenterCrop to
// Height×Width, ToTensor, Normalize(Mean, Std)), after converting images
// to Channels channels.
type Input struct {
	// Name is the graph input fed with images.
	Name string `json:"name"`
	// Shape is the graph input's declared shape, for messages.
	Shape onnx.Shape `json:"-"`
	// Layout is NCHW for an image input, "" for an input that is not a
	// batch of images (its Shape says what it is); only tensor files can
	// feed those.
	Layout   Layout `json:"layout,omitempty"`
	Channels int    `json:"channels,omitempty"`
	// Height and Width are the input's size: the center crop.
	Height int `json:"height,omitempty"`
	Width  int `json:"width,omitempty"`
	// Resize is the shorter side images are resized to before the crop.
	Resize int `json:"resize,omitempty"`
	// PixelScale is the value a full-intensity pixel has before
	// normalisation: 1 for torchvision's ToTensor (pixels in [0, 1]), 255
	// for models that take raw 8-bit values.
	PixelScale float64 `json:"pixel_scale,omitempty"`
	// Mean and Std are the per-channel normalisation (x - mean) / std, one
	// value or one per channel; nil means none.
	Mean []float32 `json:"mean,omitempty"`
	Std  []float32 `json:"std,omitempty"`
	// NormalizedInside says the model normalises its input itself (Mean
	// and Std, when known, are the values it uses): callers feed it scaled
	// pixels and apply nothing.
	NormalizedInside bool `json:"normalized_inside,omitempty"`
}

// Output is what the model's first output holds.
type Output struct {
	// Name is the graph output.
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// NumClasses is the number of classes, 0 if the output's shape does
	// not tell.
	NumClasses int `json:"num_classes,omitempty"`
	// Classes names the classes by index; nil when unknown.
	Classes []string `json:"classes,omitempty"`
	// Activation is the op type of the final node that turns logits into
	// the output (Softmax, LogSoftmax or Sigmoid), "" for logits or when
	// none is found; Logits is the name of that node's input, where
	// training and attacks read the logits (see runtime.LossFor).
	Activation string `json:"activation,omitempty"`
	Logits     string `json:"logits,omitempty"`
}

// The defaults for a model whose graph and metadata leave something open:
// torchvision's ImageNet preprocessing.
var (
	ImageNetMean = []float32{0.485, 0.456, 0.406}
	ImageNetStd  = []float32{0.229, 0.224, 0.225}
)

// DefaultSize is the input side assumed when the graph does not fix it.
const DefaultSize = 224

// SmallInput is the input side below which a model counts as small
// (MNIST's 28, CIFAR's 32): images are resized straight to its size rather
// than resized larger and center-cropped.
const SmallInput = 64

// DefaultResize returns the resize for a height×width input:
// round(min(height, width)*256/224), as torchvision's ImageNet models use
// (256 for 224), or min(height, width) itself below SmallInput.
func DefaultResize(height, width int) int {
	side := min(height, width)
	if side < SmallInput {
		return side
	}
	return int(math.Round(float64(side) * 256 / 224))
}

// ImageInput returns the default contract input for channels×height×width
// images: the resize of DefaultResize, pixels in [0, 1], ImageNet's mean
// and std for 3 channels and none for 1.
func ImageInput(channels, height, width int) Input {
	in := Input{Layout: NCHW, Channels: channels, Height: height, Width: width,
		Resize: DefaultResize(height, width), PixelScale: 1}
	if channels == 3 {
		in.Mean, in.Std = ImageNetMean, ImageNetStd
	}
	return in
}

// PixelNormalization returns the per-channel (x - mean) / std that turns
// pixels in [0, 1] into what the model takes, one value a channel, or nil,
// nil when they are what it takes: the pixel scale and the normalisation
// outside the model, in one step. Image loaders apply it after ToTensor;
// attacks, which work in [0, 1] pixel space, put it inside the model
// instead (surgery.Normalize).
func (in Input) PixelNormalization() (mean, std []float32) {
	s := in.PixelScale
	if s == 0 {
		s = 1
	}
	if in.NormalizedInside || len(in.Mean) == 0 {
		if s == 1 {
			return nil, nil
		}
		return perChannel([]float32{0}, in.Channels), perChannel([]float32{float32(1 / s)}, in.Channels)
	}
	mean, std = perChannel(in.Mean, in.Channels), perChannel(in.Std, in.Channels)
	for i := range mean {
		mean[i] = float32(float64(mean[i]) / s)
		std[i] = float32(float64(std[i]) / s)
	}
	return mean, std
}

// perChannel returns a copy of v with one value a channel: a single value
// repeated.
func perChannel(v []float32, channels int) []float32 {
	if len(v) == 1 && channels > 1 {
		out := make([]float32, channels)
		for i := range out {
			out[i] = v[0]
		}
		return out
	}
	return slices.Clone(v)
}

// Check reports an input contract that cannot be fed: not an NCHW image
// input, a channel count other than 1 or 3, sizes below 1, mean and std
// that do not match the channels, a std of 0, values that are not finite.
func (in Input) Check() error {
	switch in.Layout {
	case NCHW:
	case NHWC:
		return fmt.Errorf("input %q has shape %s, channels last (NHWC): graft feeds images channels first, [N, C, H, W] (export the model from PyTorch, or transpose its input)", in.Name, in.Shape)
	default:
		return fmt.Errorf("input %q has shape %s: graft feeds images as a batch [N, C, H, W]", in.Name, in.Shape)
	}
	if in.Channels != 1 && in.Channels != 3 {
		return fmt.Errorf("input %q takes %d channels: images have 1 (gray) or 3 (RGB)", in.Name, in.Channels)
	}
	if in.Height < 1 || in.Width < 1 {
		return fmt.Errorf("input %q: image size %dx%d", in.Name, in.Width, in.Height)
	}
	if in.Resize < 1 {
		return fmt.Errorf("input %q: resize to %d", in.Name, in.Resize)
	}
	if !(in.PixelScale > 0) || math.IsInf(in.PixelScale, 0) {
		return fmt.Errorf("input %q: pixel scale %v, want a positive number (1 for pixels in [0, 1], 255 for 0-255)", in.Name, in.PixelScale)
	}
	if (len(in.Mean) == 0) != (len(in.Std) == 0) {
		return fmt.Errorf("input %q: a mean without a std, or a std without a mean", in.Name)
	}
	for _, v := range []struct {
		what string
		x    []float32
	}{{"mean", in.Mean}, {"std", in.Std}} {
		if len(v.x) > 1 && len(v.x) != in.Channels {
			return fmt.Errorf("input %q: %d %s values for %d channels (give 1 or %d)", in.Name, len(v.x), v.what, in.Channels, in.Channels)
		}
		for i, x := range v.x {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("input %q: %s[%d] is %v", in.Name, v.what, i, x)
			}
		}
	}
	for i, s := range in.Std {
		if s == 0 {
			return fmt.Errorf("input %q: std[%d] is 0", in.Name, i)
		}
	}
	return nil
}

// Check reports an output contract that contradicts itself.
func (o Output) Check() error {
	switch o.Kind {
	case Logits, LogProbabilities, Probabilities:
	default:
		return fmt.Errorf("output %q: kind %q, want logits, log_probabilities or probabilities", o.Name, o.Kind)
	}
	if o.Classes != nil && o.NumClasses > 0 && len(o.Classes) != o.NumClasses {
		return fmt.Errorf("output %q: %d class names for %d classes", o.Name, len(o.Classes), o.NumClasses)
	}
	return nil
}

// Probabilities returns the class probabilities for one example's scores
// (a row of the first output), by the output's kind: the softmax of
// logits, the exp of log-probabilities, probabilities as they are. It is
// the one rule for confidences: graft run, robustness reports and
// evaluation all use it.
func (o Output) Probabilities(scores []float64) []float64 {
	p := make([]float64, len(scores))
	switch o.Kind {
	case Probabilities:
		copy(p, scores)
	case LogProbabilities:
		for i, x := range scores {
			p[i] = math.Exp(x)
		}
	default:
		mx := math.Inf(-1)
		for _, x := range scores {
			mx = math.Max(mx, x)
		}
		var sum float64
		for i, x := range scores {
			p[i] = math.Exp(x - mx)
			sum += p[i]
		}
		for i := range p {
			p[i] /= sum
		}
	}
	return p
}

// ClassName returns class c's name, or its number when unnamed.
func (o Output) ClassName(c int) string {
	if c >= 0 && c < len(o.Classes) {
		return o.Classes[c]
	}
	return fmt.Sprint(c)
}

// Argmax returns the index of v's largest value, the first one on ties;
// a NaN loses to any number. Predictions are the argmax of scores of any
// kind, since softmax, exp and sigmoid keep the order.
func Argmax[T float32 | float64](v []T) int {
	best := 0
	for i, x := range v {
		if x > v[best] || (x == x && v[best] != v[best]) {
			best = i
		}
	}
	return best
}

// stored is the JSON form of a contract in a model's metadata. The graph
// input and output names are not stored: the graph has them.
type stored struct {
	Version int          `json:"version"`
	Input   storedInput  `json:"input"`
	Output  storedOutput `json:"output"`
}

type storedInput struct {
	Layout           Layout    `json:"layout"`
	Channels         int       `json:"channels"`
	Height           int       `json:"height"`
	Width            int       `json:"width"`
	Resize           int       `json:"resize"`
	PixelScale       float64   `json:"pixel_scale"`
	Mean             []float32 `json:"mean,omitempty"`
	Std              []float32 `json:"std,omitempty"`
	NormalizedInside bool      `json:"normalized_inside,omitempty"`
}

type storedOutput struct {
	Kind    Kind     `json:"kind"`
	Classes []string `json:"classes,omitempty"`
}

// Store records c in m's metadata (key Key), replacing a contract stored
// before. It refuses a contract that does not check or does not fit m's
// graph.
func Store(m *onnx.Model, c *Contract) error {
	if c.Input.Layout != "" {
		if err := c.Input.Check(); err != nil {
			return fmt.Errorf("store contract: %w", err)
		}
	}
	if err := c.Output.Check(); err != nil {
		return fmt.Errorf("store contract: %w", err)
	}
	if err := fits(m, c); err != nil {
		return fmt.Errorf("store contract: %w", err)
	}
	s := stored{Version: version,
		Input: storedInput{Layout: c.Input.Layout, Channels: c.Input.Channels, Height: c.Input.Height, Width: c.Input.Width,
			Resize: c.Input.Resize, PixelScale: c.Input.PixelScale, Mean: c.Input.Mean, Std: c.Input.Std,
			NormalizedInside: c.Input.NormalizedInside},
		Output: storedOutput{Kind: c.Output.Kind, Classes: c.Output.Classes}}
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("store contract: %w", err)
	}
	m.SetMetadata(Key, string(b))
	return nil
}

// read returns the contract stored in m's metadata, nil if there is none.
// It checks the stored values but not the graph; Derive does both.
func read(m *onnx.Model) (*stored, error) {
	v, ok := m.MetadataValue(Key)
	if !ok {
		return nil, nil
	}
	return parseStored(v)
}

// parseStored decodes and checks a stored contract.
func parseStored(v string) (*stored, error) {
	var s stored
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("metadata %s is not a graft contract: %s", Key, oneLine(err.Error()))
	}
	if dec.More() {
		return nil, fmt.Errorf("metadata %s is not a graft contract: text after the JSON object", Key)
	}
	if s.Version < 1 || s.Version > version {
		return nil, fmt.Errorf("metadata %s has version %d; this graft reads version %d (a newer graft wrote it?)", Key, s.Version, version)
	}
	in := Input{Name: "(stored)", Layout: s.Input.Layout, Channels: s.Input.Channels, Height: s.Input.Height, Width: s.Input.Width,
		Resize: s.Input.Resize, PixelScale: s.Input.PixelScale, Mean: s.Input.Mean, Std: s.Input.Std}
	if in.Layout != "" {
		if err := in.Check(); err != nil {
			return nil, fmt.Errorf("metadata %s: %w", Key, err)
		}
	}
	if err := (Output{Name: "(stored)", Kind: s.Output.Kind}).Check(); err != nil {
		return nil, fmt.Errorf("metadata %s: %w", Key, err)
	}
	return &s, nil
}

// errNoInput and errNoOutput are the graphs Derive cannot describe.
var (
	errNoInput  = errors.New("the model has no input to feed")
	errNoOutput = errors.New("the model has no output")
)

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Overrides are the parts of a contract a user sets by hand (command-line
// flags such as --mean, --std, --resize, --crop, --labels); they win over
// what Derive found. Zero values keep the derived parts.
type Overrides struct {
	// Mean and Std replace the normalisation outside the model; give both.
	Mean, Std []float32
	// Resize replaces the shorter side images are resized to.
	Resize int
	// Crop sets a square input size, for models whose size is free.
	Crop int
	// Classes names the classes.
	Classes []string
}

// Override applies o to c. It fails when an override contradicts the
// graph (a crop for a model whose size is fixed otherwise, class names
// for another number of classes) or the result does not check.
func (c *Contract) Override(o Overrides) error {
	in := &c.Input
	if (len(o.Mean) == 0) != (len(o.Std) == 0) {
		return fmt.Errorf("give both a mean and a std")
	}
	if len(o.Mean) != 0 {
		if in.NormalizedInside {
			c.Warnings = append(c.Warnings, fmt.Sprintf("the model normalises its input itself, and the given mean and std normalise it again before it"))
		}
		in.Mean, in.Std, in.NormalizedInside = o.Mean, o.Std, false
	}
	if o.Crop != 0 {
		if len(in.Shape) == 4 {
			for _, d := range in.Shape[2:] {
				if d.Known() && d.Value != int64(o.Crop) {
					return fmt.Errorf("a %dx%d crop, but input %q has shape %s", o.Crop, o.Crop, in.Name, in.Shape)
				}
			}
		}
		in.Height, in.Width = o.Crop, o.Crop
		if o.Resize == 0 {
			in.Resize = DefaultResize(o.Crop, o.Crop)
		}
	}
	if o.Resize != 0 {
		in.Resize = o.Resize
	}
	if o.Classes != nil {
		if c.Output.NumClasses > 0 && len(o.Classes) != c.Output.NumClasses {
			return fmt.Errorf("%d class names for the %d classes of output %q", len(o.Classes), c.Output.NumClasses, c.Output.Name)
		}
		c.Output.Classes = o.Classes
	}
	if in.Layout == NCHW {
		return in.Check()
	}
	return nil
}
