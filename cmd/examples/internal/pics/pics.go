// Package pics draws the example programs' pictures: gray images side by
// side in a grid, encoded as PNG.
package pics

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
)

// Border is the gap, in pixels, between the images of a grid.
const Border = 2

// Grid lays out the images of pixels (each h x w values, row-major, 0 black
// and 1 white; values outside [0, 1] are clipped) cols to a row, on a
// mid-gray background that frames each one.
func Grid(pixels []float32, h, w, cols int) (*image.Gray, error) {
	if h < 1 || w < 1 || cols < 1 || len(pixels) == 0 || len(pixels)%(h*w) != 0 {
		return nil, fmt.Errorf("grid: %d values are not whole %dx%d images (%d a row)", len(pixels), h, w, cols)
	}
	n := len(pixels) / (h * w)
	rows := (n + cols - 1) / cols
	im := image.NewGray(image.Rect(0, 0, cols*(w+Border)+Border, rows*(h+Border)+Border))
	for i := range im.Pix {
		im.Pix[i] = 128
	}
	for k := 0; k < n; k++ {
		x0, y0 := Border+k%cols*(w+Border), Border+k/cols*(h+Border)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := math.Round(float64(pixels[k*h*w+y*w+x]) * 255)
				if math.IsNaN(v) {
					v = 0
				}
				im.SetGray(x0+x, y0+y, color.Gray{Y: uint8(max(0, min(255, v)))})
			}
		}
	}
	return im, nil
}

// PNG encodes im.
func PNG(im image.Image) ([]byte, error) {
	var b bytes.Buffer
	if err := png.Encode(&b, im); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
