package data

import "math"

// precisionBits is the fixed-point precision of the resampling weights, as
// in PIL: 32 bits less 8 for the sample and 2 for overflow.
const precisionBits = 32 - 8 - 2

// ResizeTo resamples the image to width×height with PIL's antialiased
// bilinear filter (Image.resize with Resampling.BILINEAR), bit for bit: a
// horizontal pass then a vertical pass, each skipped when that dimension
// keeps its size, with an 8-bit image in between.
func (im *Image) ResizeTo(width, height int) *Image {
	if width <= 0 || height <= 0 {
		panic("data: ResizeTo to an empty size")
	}
	out := im
	if width != im.Width {
		out = resampleH(out, width)
	}
	if height != im.Height {
		out = resampleV(out, height)
	}
	if out == im {
		out = &Image{Width: im.Width, Height: im.Height, Channels: im.Channels, Pix: append([]uint8(nil), im.Pix...)}
	}
	return out
}

// weights are the fixed-point filter taps of every output sample: output i
// reads inputs first[i], first[i]+1, ... with taps k[i*n:(i+1)*n] (zero
// padded past count[i]).
type weights struct {
	n            int
	first, count []int
	k            []int32
}

// triangleWeights computes the taps for resampling in samples to out samples
// as PIL's precompute_coeffs does with the bilinear (triangle) filter: the
// filter is stretched by the downscale factor (so it averages every input
// sample under an output one), centred on (i+0.5)*scale, its window rounded
// to whole samples and clipped to the input, the taps normalised to sum to
// one and then rounded to precisionBits bits.
func triangleWeights(in, out int) weights {
	scale := float64(in) / float64(out)
	filterScale := max(scale, 1)
	support := 1.0 * filterScale // the triangle's support is 1
	n := int(math.Ceil(support))*2 + 1
	w := weights{n: n, first: make([]int, out), count: make([]int, out), k: make([]int32, out*n)}
	taps := make([]float64, n)
	ss := 1 / filterScale
	for i := 0; i < out; i++ {
		center := (float64(i) + 0.5) * scale
		lo := int(center - support + 0.5) // C's truncation toward zero
		lo = max(lo, 0)
		hi := min(int(center+support+0.5), in)
		cnt := hi - lo
		var sum float64
		for j := 0; j < cnt; j++ {
			x := (float64(j+lo) - center + 0.5) * ss
			t := 1 - math.Abs(x)
			if t < 0 {
				t = 0
			}
			taps[j] = t
			sum += t
		}
		for j := 0; j < cnt; j++ {
			v := taps[j]
			if sum != 0 {
				v /= sum
			}
			// Round half away from zero, as PIL's normalize_coeffs_8bpc.
			if v < 0 {
				w.k[i*n+j] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				w.k[i*n+j] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		w.first[i], w.count[i] = lo, cnt
	}
	return w
}

// clip8 turns an accumulated fixed-point sum into a sample.
func clip8(v int32) uint8 {
	v >>= precisionBits
	switch {
	case v < 0:
		return 0
	case v > 255:
		return 255
	}
	return uint8(v)
}

func resampleH(im *Image, width int) *Image {
	w := triangleWeights(im.Width, width)
	c := im.Channels
	out := NewImage(width, im.Height, c)
	for y := 0; y < im.Height; y++ {
		row := im.Pix[y*im.Width*c : (y+1)*im.Width*c]
		orow := out.Pix[y*width*c : (y+1)*width*c]
		for x := 0; x < width; x++ {
			k := w.k[x*w.n : x*w.n+w.count[x]]
			src := row[w.first[x]*c:]
			for ch := 0; ch < c; ch++ {
				acc := int32(1 << (precisionBits - 1))
				for j, kj := range k {
					acc += int32(src[j*c+ch]) * kj
				}
				orow[x*c+ch] = clip8(acc)
			}
		}
	}
	return out
}

func resampleV(im *Image, height int) *Image {
	w := triangleWeights(im.Height, height)
	c := im.Channels
	stride := im.Width * c
	out := NewImage(im.Width, height, c)
	acc := make([]int32, stride)
	for y := 0; y < height; y++ {
		for i := range acc {
			acc[i] = 1 << (precisionBits - 1)
		}
		k := w.k[y*w.n : y*w.n+w.count[y]]
		for j, kj := range k {
			src := im.Pix[(w.first[y]+j)*stride : (w.first[y]+j+1)*stride]
			for i, v := range src {
				acc[i] += int32(v) * kj
			}
		}
		orow := out.Pix[y*stride : (y+1)*stride]
		for i, a := range acc {
			orow[i] = clip8(a)
		}
	}
	return out
}
