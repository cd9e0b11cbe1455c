package data

import (
	"fmt"
	"math"
	"math/rand"
)

// A Transform changes an image: resizes, crops, flips or converts it. It
// returns a new image and leaves its argument alone.
type Transform func(*Image) (*Image, error)

// Compose applies the transforms in order.
func Compose(ts ...Transform) Transform {
	return func(im *Image) (*Image, error) {
		for _, t := range ts {
			if t == nil {
				continue
			}
			var err error
			if im, err = t(im); err != nil {
				return nil, err
			}
		}
		return im, nil
	}
}

func bad(format string, args ...any) Transform {
	err := fmt.Errorf(format, args...)
	return func(*Image) (*Image, error) { return nil, err }
}

// ResizedSize returns the size Resize(size) gives a width×height image, as
// torchvision computes it: the shorter side becomes size and the longer
// side int(size * long / short), truncated.
func ResizedSize(width, height, size int) (int, int) {
	short, long := width, height
	if width > height {
		short, long = height, width
	}
	newLong := int(float64(size*long) / float64(short))
	if width <= height {
		return size, newLong
	}
	return newLong, size
}

// Resize scales the shorter side to size, keeping the aspect ratio, like
// torchvision.transforms.Resize(size) on a PIL image: PIL's antialiased
// bilinear resampling (see ResizeTo).
func Resize(size int) Transform {
	if size <= 0 {
		return bad("resize to %d: the size must be positive", size)
	}
	return func(im *Image) (*Image, error) {
		w, h := ResizedSize(im.Width, im.Height, size)
		return im.ResizeTo(w, h), nil
	}
}

// CenterCrop cuts the central size×size square, rounding the offset as
// torchvision does (int(round((h - size) / 2.0)), halves to even). A side
// shorter than size is first padded with black, as torchvision does.
func CenterCrop(size int) Transform { return CenterCropTo(size, size) }

// CenterCropTo is CenterCrop to a width×height rectangle
// (torchvision's CenterCrop((height, width))).
func CenterCropTo(width, height int) Transform {
	if width <= 0 || height <= 0 {
		return bad("center crop to %dx%d: the size must be positive", width, height)
	}
	return func(im *Image) (*Image, error) {
		if width > im.Width || height > im.Height {
			// torchvision pads left/top by floor(d/2), right/bottom by ceil.
			left, top := 0, 0
			if width > im.Width {
				left = -(width - im.Width) / 2
			}
			if height > im.Height {
				top = -(height - im.Height) / 2
			}
			im = im.Crop(left, top, max(width, im.Width), max(height, im.Height))
		}
		left := int(math.RoundToEven(float64(im.Width-width) / 2))
		top := int(math.RoundToEven(float64(im.Height-height) / 2))
		return im.Crop(left, top, width, height), nil
	}
}

// Channels converts images to n channels: 1 converts color to gray as PIL's
// convert("L") does, 3 replicates a gray channel (PIL's convert("RGB")).
func Channels(n int) Transform {
	switch n {
	case 1:
		return func(im *Image) (*Image, error) { return im.Gray(), nil }
	case 3:
		return func(im *Image) (*Image, error) { return im.RGB(), nil }
	}
	return bad("images can have 1 or 3 channels, not %d", n)
}

// RandomResizedCrop crops a random part of the image and resizes it to
// size×size, as torchvision.transforms.RandomResizedCrop(size) does with its
// defaults: up to 10 tries of an area fraction uniform in [0.08, 1) and an
// aspect ratio log-uniform in [3/4, 4/3), falling back to the largest
// central crop within those ratios. The random numbers come from rng.
func RandomResizedCrop(size int, rng *rand.Rand) Transform {
	if size <= 0 {
		return bad("random resized crop to %d: the size must be positive", size)
	}
	if rng == nil {
		return bad("random resized crop: no random source")
	}
	return func(im *Image) (*Image, error) {
		x, y, w, h := randomCropBox(im.Width, im.Height, rng)
		return im.Crop(x, y, w, h).ResizeTo(size, size), nil
	}
}

// randomCropBox is torchvision's RandomResizedCrop.get_params with scale
// (0.08, 1) and ratio (3/4, 4/3); it returns left, top, width, height.
func randomCropBox(width, height int, rng *rand.Rand) (int, int, int, int) {
	const minScale, maxScale = 0.08, 1.0
	const minRatio, maxRatio = 3.0 / 4.0, 4.0 / 3.0
	area := float64(width * height)
	logLo, logHi := math.Log(minRatio), math.Log(maxRatio)
	for range 10 {
		target := area * (minScale + (maxScale-minScale)*rng.Float64())
		aspect := math.Exp(logLo + (logHi-logLo)*rng.Float64())
		w := int(math.RoundToEven(math.Sqrt(target * aspect)))
		h := int(math.RoundToEven(math.Sqrt(target / aspect)))
		if 0 < w && w <= width && 0 < h && h <= height {
			top := rng.Intn(height - h + 1)
			left := rng.Intn(width - w + 1)
			return left, top, w, h
		}
	}
	w, h := width, height
	switch ratio := float64(width) / float64(height); {
	case ratio < minRatio:
		h = int(math.RoundToEven(float64(w) / minRatio))
	case ratio > maxRatio:
		w = int(math.RoundToEven(float64(h) * maxRatio))
	}
	return (width - w) / 2, (height - h) / 2, w, h
}

// RandomHorizontalFlip mirrors the image with probability 1/2, drawing
// from rng.
func RandomHorizontalFlip(rng *rand.Rand) Transform {
	if rng == nil {
		return bad("random horizontal flip: no random source")
	}
	return func(im *Image) (*Image, error) {
		if rng.Float64() < 0.5 {
			return im.FlipHorizontal(), nil
		}
		return im, nil
	}
}
