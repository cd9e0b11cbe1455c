package finetune

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/png"

	"github.com/graft-dev/graft/runtime/train"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	vgdraw "gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// trainingPlot draws loss and accuracy per epoch, for training and
// validation, side by side, as a PNG.
func trainingPlot(h *train.History) ([]byte, error) {
	var trLoss, trAcc, vaLoss, vaAcc plotter.XYs
	for _, e := range h.Epochs {
		x := float64(e.Epoch + 1)
		trLoss = append(trLoss, plotter.XY{X: x, Y: e.Loss})
		trAcc = append(trAcc, plotter.XY{X: x, Y: 100 * e.Accuracy})
		if e.Val != nil {
			vaLoss = append(vaLoss, plotter.XY{X: x, Y: e.Val.Loss})
			vaAcc = append(vaAcc, plotter.XY{X: x, Y: 100 * e.Val.Accuracy})
		}
	}
	panel := func(title, ylabel string, tr, va plotter.XYs) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "epoch"
		p.Y.Label.Text = ylabel
		p.Add(plotter.NewGrid())
		for i, s := range []struct {
			name string
			xy   plotter.XYs
			c    color.RGBA
		}{{"training", tr, color.RGBA{31, 119, 180, 255}}, {"validation", va, color.RGBA{255, 127, 14, 255}}} {
			if len(s.xy) == 0 {
				continue
			}
			l, pts, err := plotter.NewLinePoints(s.xy)
			if err != nil {
				return nil, err
			}
			l.Color, pts.Color = s.c, s.c
			if i == 1 {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			}
			p.Add(l, pts)
			p.Legend.Add(s.name, l, pts)
		}
		p.Legend.Top = title == "Loss" // accuracy rises: keep its legend low
		return p, nil
	}
	lossPlot, err := panel("Loss", "cross-entropy", trLoss, vaLoss)
	if err != nil {
		return nil, err
	}
	accPlot, err := panel("Accuracy", "accuracy (%)", trAcc, vaAcc)
	if err != nil {
		return nil, err
	}
	const w, h2 = 5 * vg.Inch, 3.5 * vg.Inch
	out := image.NewRGBA(image.Rect(0, 0, 2*int(w.Dots(96)), int(h2.Dots(96))))
	draw.Draw(out, out.Bounds(), image.White, image.Point{}, draw.Src)
	for i, p := range []*plot.Plot{lossPlot, accPlot} {
		c := vgimg.NewWith(vgimg.UseWH(w, h2), vgimg.UseDPI(96))
		p.Draw(vgdraw.New(c))
		img := c.Image()
		off := image.Pt(i*int(w.Dots(96)), 0)
		draw.Draw(out, img.Bounds().Add(off), img, image.Point{}, draw.Over)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
