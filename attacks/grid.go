package attacks

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	gridBG      = color.RGBA{255, 255, 255, 255}
	gridText    = color.RGBA{20, 20, 20, 255}
	gridLabel   = color.RGBA{90, 90, 90, 255}
	gridSuccess = color.RGBA{200, 30, 30, 255}
	gridCorrect = color.RGBA{20, 120, 40, 255}
)

// ExamplesPNG draws the report's grid as a PNG, as PyTorch's FGSM tutorial
// does: one row per eps (a clean row first when eps 0 is not swept), one
// column per example, and under each image its label and "-> prediction",
// red where the attack succeeded.
func (r *Report) ExamplesPNG() ([]byte, error) {
	g := r.Grid
	if g == nil || len(g.Labels) == 0 {
		return nil, errors.New("the report keeps no examples")
	}
	type row struct {
		title   string
		images  [][]float64
		pred    []int
		success []bool
	}
	var rowsOut []row
	hasZero := false
	for _, e := range g.Eps {
		hasZero = hasZero || e == 0
	}
	if !hasZero {
		rowsOut = append(rowsOut, row{"clean", g.Clean, g.CleanPred, make([]bool, len(g.Labels))})
	}
	for k, e := range g.Eps {
		title := fmt.Sprintf("eps %g", e)
		if e == 0 {
			title = "eps 0 (clean)"
		}
		rowsOut = append(rowsOut, row{title, g.Adv[k], g.Pred[k], g.Success[k]})
	}

	ch, h, w := 1, 0, 0
	switch len(g.Shape) {
	case 2:
		h, w = g.Shape[0], g.Shape[1]
	case 3:
		ch, h, w = g.Shape[0], g.Shape[1], g.Shape[2]
	default:
		return nil, fmt.Errorf("cannot draw inputs of shape %v as images", g.Shape)
	}
	// Small images are enlarged, large ones reduced, to about 100 pixels.
	up, down := 1, 1
	if m := max(h, w); m < 100 {
		up = max(1, (100+m/2)/m)
	} else if m > 160 {
		down = (m + 127) / 128
	}
	iw, ih := w*up/down, h*up/down
	face := basicfont.Face7x13
	const charW, lineH, pad, maxChars = 7, 15, 10, 20
	// Under each image: the label (and target), then "-> prediction".
	first := make([]string, len(g.Labels))
	longest := 0
	for c := range g.Labels {
		first[c] = r.className(g.Labels[c])
		if g.Targets != nil {
			first[c] += " / t " + r.className(g.Targets[c])
		}
		longest = max(longest, len(first[c]))
	}
	for _, rw := range rowsOut {
		for _, p := range rw.pred {
			longest = max(longest, 3+len(r.className(p)))
		}
	}
	chars := min(longest, maxChars)
	cellW := max(iw, chars*charW) + pad
	cellH := ih + 2*lineH + pad
	fit := func(s string) string {
		if len(s) > chars {
			return s[:chars]
		}
		return s
	}
	leftW := 0
	for _, r := range rowsOut {
		leftW = max(leftW, len(r.title)*charW)
	}
	leftW += 2 * pad
	topH := 2*lineH + pad
	cols := len(g.Labels)
	W, H := leftW+cols*cellW+pad, topH+len(rowsOut)*cellH+pad
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.NewUniform(gridBG), image.Point{}, draw.Src)
	text := func(s string, x, y int, c color.Color) {
		d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
		d.DrawString(s)
	}
	mode := "untargeted"
	legend := "under each image: label, -> prediction (red where the attack succeeded)"
	if g.Targets != nil {
		mode = "targeted"
		legend = "under each image: label / t target, -> prediction (red where the target was reached)"
	}
	text(fmt.Sprintf("%s (%s)", r.Settings.Attack.String(), mode), pad, lineH, gridText)
	text(legend, pad, 2*lineH, gridText)
	for ri, rw := range rowsOut {
		y0 := topH + ri*cellH
		text(rw.title, pad, y0+ih/2+5, gridText)
		for c := 0; c < cols; c++ {
			x0 := leftW + c*cellW
			drawPixels(img, x0, y0, rw.images[c], ch, h, w, up, down)
			col := gridText
			switch {
			case rw.success[c]:
				col = gridSuccess
			case rw.pred[c] == g.Labels[c]:
				col = gridCorrect
			}
			text(fit(first[c]), x0, y0+ih+lineH-2, gridLabel)
			text(fit("-> "+r.className(rw.pred[c])), x0, y0+ih+2*lineH-2, col)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// drawPixels draws one CHW image with values in [0, 1] at (x0, y0),
// enlarged up times and reduced down times by nearest neighbour. One
// channel is gray, three RGB; of other counts the first is drawn gray.
func drawPixels(img *image.RGBA, x0, y0 int, v []float64, ch, h, w, up, down int) {
	byteAt := func(c, y, x int) uint8 {
		p := v[(c*h+y)*w+x]
		if math.IsNaN(p) {
			return 0
		}
		return uint8(math.Round(255 * math.Max(0, math.Min(1, p))))
	}
	for y := 0; y < h*up/down; y++ {
		sy := y * down / up
		for x := 0; x < w*up/down; x++ {
			sx := x * down / up
			var c color.RGBA
			if ch == 3 {
				c = color.RGBA{byteAt(0, sy, sx), byteAt(1, sy, sx), byteAt(2, sy, sx), 255}
			} else {
				b := byteAt(0, sy, sx)
				c = color.RGBA{b, b, b, 255}
			}
			img.SetRGBA(x0+x, y0+y, c)
		}
	}
}
