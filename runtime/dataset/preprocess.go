package dataset

import (
	"fmt"
	"math"
	"math/rand"
	"runtime"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/runtime/data"
)

// SmallInput is the input side below which a model counts as small
// (MNIST's 28, CIFAR's 32): images are resized straight to its size
// rather than resized larger and center-cropped.
const SmallInput = 64

// Preprocessing describes how images become a model's input, the way
// torchvision's reference scripts do it:
//
//	evaluation: Resize(Resize), CenterCrop(Height×Width), ToTensor, Normalize(Mean, Std)
//	training with Augment: RandomResizedCrop(Height), RandomHorizontalFlip, ToTensor, Normalize
//
// after converting images to Channels channels.
type Preprocessing struct {
	Channels      int       // the model's input channels: 1 or 3
	Height, Width int       // the model's input size
	Resize        int       // the shorter side before the center crop (evaluation)
	Mean, Std     []float32 // per channel (or one value for all); nil: no normalization
	Augment       bool      // random crops and flips (training); needs a square input
}

// ForInput returns the usual preprocessing for a model input of
// channels×height×width: the crop is the input size; the resize is
// round(side*256/224) like torchvision's ImageNet models (256 for 224),
// except for small inputs (sides below SmallInput), which images are
// resized to directly; ImageNet's mean and std for 3 channels, none for 1.
// Augmentation is off.
func ForInput(channels, height, width int) Preprocessing {
	p := Preprocessing{Channels: channels, Height: height, Width: width, Resize: DefaultResize(height, width)}
	if channels == 3 {
		p.Mean, p.Std = data.ImageNetMean, data.ImageNetStd
	}
	return p
}

// DefaultResize returns the resize ForInput picks for a height×width
// input: round(min(height, width)*256/224), or min(height, width) itself
// when that is below SmallInput.
func DefaultResize(height, width int) int {
	side := min(height, width)
	if side < SmallInput {
		return side
	}
	return int(math.Round(float64(side) * 256 / 224))
}

// Check reports a preprocessing that cannot work.
func (p Preprocessing) Check() error {
	if p.Channels != 1 && p.Channels != 3 {
		return fmt.Errorf("preprocessing: images can have 1 or 3 channels, not %d", p.Channels)
	}
	if p.Height < 1 || p.Width < 1 {
		return fmt.Errorf("preprocessing: input size %dx%d", p.Height, p.Width)
	}
	if p.Resize < 1 {
		return fmt.Errorf("preprocessing: resize to %d", p.Resize)
	}
	if p.Augment && p.Height != p.Width {
		return fmt.Errorf("preprocessing: augmentation makes square images; the input is %dx%d", p.Height, p.Width)
	}
	for _, v := range [][]float32{p.Mean, p.Std} {
		if len(v) > 1 && len(v) != p.Channels {
			return fmt.Errorf("preprocessing: %d mean and %d std values for %d channels (give 1 or %d)", len(p.Mean), len(p.Std), p.Channels, p.Channels)
		}
	}
	for _, s := range p.Std {
		if s == 0 {
			return fmt.Errorf("preprocessing: a std of 0")
		}
	}
	return p.checkMemory(runtime.GOMAXPROCS(0), 1)
}

// checkMemory checks that preprocessing with workers decoders at once and
// batches of batch examples fits in graft's memory limit. Each worker
// resizes an image to at least Resize×Resize pixels (the shorter side
// becomes Resize; augmentation resizes its crop to the input size) through
// an intermediate image as large, crops it to the input size and makes a
// float32 tensor of it; the batches in flight (the one in use and
// DefaultPrefetch ahead) hold their examples' tensors and the batch built
// from them.
func (p Preprocessing) checkMemory(workers, batch int) error {
	side := int64(max(p.Height, p.Width))
	if !p.Augment {
		side = max(side, int64(p.Resize))
	}
	c, input := int64(p.Channels), memlimit.Mul(int64(p.Height), int64(p.Width), int64(p.Channels))
	worker := memlimit.Add(memlimit.Mul(2, side, side, c), memlimit.Mul(5, input))
	batches := memlimit.Mul(DefaultPrefetch+1, 2, int64(batch), input, 4)
	need := memlimit.Add(memlimit.Mul(int64(workers), worker), batches)
	return memlimit.Check(fmt.Sprintf("preprocessing: resizing images to %d pixels on the shorter side and cropping them to %dx%d, in %d workers with batches of %d",
		side, p.Width, p.Height, workers, batch), need)
}

// Pipeline returns the evaluation pipeline: convert channels, resize,
// center crop, to tensor, normalize.
func (p Preprocessing) Pipeline() *data.Pipeline {
	return &data.Pipeline{
		Channels:  p.Channels,
		Transform: data.Compose(data.Resize(p.Resize), data.CenterCropTo(p.Width, p.Height)),
		Mean:      p.Mean,
		Std:       p.Std,
	}
}

// Augmentation returns the training transform, made per example from its
// random source: RandomResizedCrop to the input size, then a random
// horizontal flip. It returns nil when Augment is off.
func (p Preprocessing) Augmentation() func(rng *rand.Rand) data.Transform {
	if !p.Augment {
		return nil
	}
	size := p.Height
	return func(rng *rand.Rand) data.Transform {
		return data.Compose(data.RandomResizedCrop(size, rng), data.RandomHorizontalFlip(rng))
	}
}

// Config returns a loader configuration for ds with this preprocessing.
// When ds holds in-memory (IDX) images that already have the input's size
// and channel count and the preprocessing would leave them as they are
// (no augmentation, resize to that size), the pipeline has no transform,
// and the loader serves the images without preprocessing them.
func (p Preprocessing) Config(ds *Dataset, batchSize int, shuffle bool, seed int64) (Config, error) {
	if err := p.Check(); err != nil {
		return Config{}, err
	}
	if err := p.checkMemory(runtime.GOMAXPROCS(0), batchSize); err != nil {
		return Config{}, err
	}
	cfg := Config{BatchSize: batchSize, Shuffle: shuffle, Seed: seed, Pipeline: p.Pipeline(), Augment: p.Augmentation()}
	if m := ds.images; m != nil && !p.Augment && p.Channels == 1 &&
		m.Rows == p.Height && m.Cols == p.Width && p.Resize == min(p.Height, p.Width) {
		cfg.Pipeline.Transform = nil // resizing and cropping to the image's own size change nothing
	}
	return cfg, nil
}
