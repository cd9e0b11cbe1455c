package data

import "image"

// libjpeg's YCbCr to RGB tables (16-bit fixed point), built once.
var (
	crR, cbB [256]int32 // red from Cr, blue from Cb, rounded
	crG, cbG [256]int32 // green terms, scaled by 2^16; cbG includes the rounding half
)

func init() {
	fix := func(x float64) int32 { return int32(x*65536 + 0.5) }
	for i := range 256 {
		x := int32(i - 128)
		crR[i] = (fix(1.40200)*x + 1<<15) >> 16
		cbB[i] = (fix(1.77200)*x + 1<<15) >> 16
		crG[i] = -fix(0.71414) * x
		cbG[i] = -fix(0.34414)*x + 1<<15
	}
}

func clampByte(v int32) uint8 {
	switch {
	case v < 0:
		return 0
	case v > 255:
		return 255
	}
	return uint8(v)
}

// fromYCbCr converts a decoded JPEG to RGB as libjpeg does by default:
// subsampled chroma is upsampled with its "fancy" triangle filter (3/4 of the
// nearer sample, 1/4 of the next, with its rounding biases; edges
// replicated), then converted with its integer tables.
func fromYCbCr(m *image.YCbCr) *Image {
	r := m.Bounds()
	w, h := r.Dx(), r.Dy()
	hf, vf := 1, 1
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		hf = 2
	case image.YCbCrSubsampleRatio420:
		hf, vf = 2, 2
	case image.YCbCrSubsampleRatio440:
		vf = 2
	case image.YCbCrSubsampleRatio411:
		hf = 4
	case image.YCbCrSubsampleRatio410:
		hf, vf = 4, 2
	}
	if r.Min.X%hf != 0 || r.Min.Y%vf != 0 {
		// A sub-image out of phase with its chroma: convert pixel by pixel.
		im := NewImage(w, h, 3)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := m.YCbCrAt(r.Min.X+x, r.Min.Y+y)
				putRGB(im.Pix[(y*w+x)*3:], c.Y, c.Cb, c.Cr)
			}
		}
		return im
	}
	cw, ch := (w+hf-1)/hf, (h+vf-1)/vf
	base := m.COffset(r.Min.X, r.Min.Y)
	cb := upsample(m.Cb[base:], m.CStride, cw, ch, hf, vf, w, h)
	cr := upsample(m.Cr[base:], m.CStride, cw, ch, hf, vf, w, h)
	im := NewImage(w, h, 3)
	for y := 0; y < h; y++ {
		yrow := m.Y[m.YOffset(r.Min.X, r.Min.Y+y):]
		for x := 0; x < w; x++ {
			i := y*w + x
			putRGB(im.Pix[3*i:], yrow[x], cb[i], cr[i])
		}
	}
	return im
}

func putRGB(p []uint8, y, cb, cr uint8) {
	yy := int32(y)
	p[0] = clampByte(yy + crR[cr])
	p[1] = clampByte(yy + (cbG[cb]+crG[cr])>>16)
	p[2] = clampByte(yy + cbB[cb])
}

// upsample expands a cw×ch chroma plane (rows stride apart) by hf×vf to
// w×h, as libjpeg does: fancy for 2×1, 2×2 (when the plane is over 2
// samples wide) and 1×2, replication otherwise.
func upsample(p []uint8, stride, cw, ch, hf, vf, w, h int) []uint8 {
	out := make([]uint8, w*h)
	at := func(x, y int) int32 { return int32(p[y*stride+x]) }
	fancy := hf == 1 && vf == 2 || hf == 2 && vf <= 2 && cw > 2
	if !fancy {
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				out[y*w+x] = p[(y/vf)*stride+x/hf]
			}
		}
		return out
	}
	sums := make([]int32, cw)
	for y := 0; y < h; y++ {
		cy := y / vf
		row := out[y*w : (y+1)*w]
		if vf == 1 { // 2×1
			for x := range row {
				c := x / 2
				if x%2 == 0 {
					row[x] = uint8((3*at(c, cy) + at(max(c-1, 0), cy) + 1) >> 2)
				} else {
					row[x] = uint8((3*at(c, cy) + at(min(c+1, cw-1), cy) + 2) >> 2)
				}
			}
			continue
		}
		// Vertically: 3/4 of the nearest row, 1/4 of the one above (even
		// output rows) or below (odd), edge rows replicated.
		ny, bias := max(cy-1, 0), int32(1)
		if y%2 == 1 {
			ny, bias = min(cy+1, ch-1), 2
		}
		for c := range sums {
			sums[c] = 3*at(c, cy) + at(c, ny)
		}
		if hf == 1 { // 1×2
			for x := range row {
				row[x] = uint8((sums[x] + bias) >> 2)
			}
			continue
		}
		for x := range row { // 2×2
			c := x / 2
			if x%2 == 0 {
				row[x] = uint8((3*sums[c] + sums[max(c-1, 0)] + 8) >> 4)
			} else {
				row[x] = uint8((3*sums[c] + sums[min(c+1, cw-1)] + 7) >> 4)
			}
		}
	}
	return out
}
