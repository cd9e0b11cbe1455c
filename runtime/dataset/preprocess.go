package dataset

import (
	"fmt"
	"math/rand"
	"runtime"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime/data"
)

// Preprocessing describes how images become a model's input, the way
// torchvision's reference scripts do it:
//
//	evaluation: Resize(Resize), CenterCrop(Height×Width), ToTensor, Normalize(Mean, Std)
//	training with Augment: RandomResizedCrop(Height), RandomHorizontalFlip, ToTensor, Normalize
//
// after converting images to Channels channels. Mean and Std apply to
// pixels in [0, 1].
type Preprocessing struct {
	Channels int       `json:"channels"` // the model's input channels: 1 or 3
	Height   int       `json:"height"`   // the model's input size: the center crop
	Width    int       `json:"width"`
	Resize   int       `json:"resize"`         // the shorter side before the center crop (evaluation)
	Mean     []float32 `json:"mean,omitempty"` // per channel (or one value for all); nil: no normalization
	Std      []float32 `json:"std,omitempty"`
	Augment  bool      `json:"augment,omitempty"` // random crops and flips (training); needs a square input
}

// PreprocessingFor returns the preprocessing a model's input contract
// asks for (see contract.Derive): its channels, size and resize, and the
// normalisation outside the model, scale included
// (contract.Input.PixelNormalization). Augmentation is off.
func PreprocessingFor(in contract.Input) (Preprocessing, error) {
	if err := in.Check(); err != nil {
		return Preprocessing{}, err
	}
	mean, std := in.PixelNormalization()
	return Preprocessing{Channels: in.Channels, Height: in.Height, Width: in.Width, Resize: in.Resize, Mean: mean, Std: std}, nil
}

// ForInput returns the preprocessing of the default contract for a
// channels×height×width input (contract.ImageInput): the crop is the input
// size, the resize round(side*256/224) like torchvision's ImageNet models
// (256 for 224) except for small inputs, which images are resized to
// directly; ImageNet's mean and std for 3 channels, none for 1.
// Augmentation is off.
func ForInput(channels, height, width int) Preprocessing {
	in := contract.ImageInput(channels, height, width)
	mean, std := in.PixelNormalization()
	return Preprocessing{Channels: channels, Height: height, Width: width, Resize: in.Resize, Mean: mean, Std: std}
}

// Check reports a preprocessing that cannot work. Channels, Height and
// Width are read from a model input [N, C, H, W]; when Channels is not 1
// or 3 but Width is, the input is channels-last [N, H, W, C], and the
// error says so.
func (p Preprocessing) Check() error {
	if p.Channels != 1 && p.Channels != 3 {
		if p.Width == 1 || p.Width == 3 {
			// [N, 28, 28, 1] read as [N, C, H, W]: channels last.
			channels := "1 channel"
			if p.Width == 3 {
				channels = "3 channels"
			}
			return fmt.Errorf("preprocessing: the model's input layout is [N,H,W,C] (%dx%d images with %s last), not NCHW [N,C,H,W], which images are fed as", p.Channels, p.Height, channels)
		}
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
	if err := checkMeanStd(p.Mean, p.Std, p.Channels); err != nil {
		return fmt.Errorf("preprocessing: %w", err)
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
