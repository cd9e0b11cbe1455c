package main

import (
	"bytes"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// lossPlot draws G's and D's loss at every iteration, as PyTorch's DCGAN
// tutorial plots them, as a PNG.
func lossPlot(steps []Step) ([]byte, error) {
	p := plot.New()
	p.Title.Text = "Generator and discriminator loss during training"
	p.X.Label.Text = "iteration"
	p.Y.Label.Text = "loss"
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	for _, s := range []struct {
		name string
		loss func(Step) float64
		c    color.RGBA
	}{{"G", func(s Step) float64 { return s.GLoss }, color.RGBA{31, 119, 180, 255}},
		{"D", func(s Step) float64 { return s.DLoss }, color.RGBA{255, 127, 14, 255}}} {
		xy := make(plotter.XYs, len(steps))
		for i, st := range steps {
			xy[i] = plotter.XY{X: float64(i + 1), Y: s.loss(st)}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		l.Color = s.c
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	w, err := p.WriterTo(8*vg.Inch, 4*vg.Inch, "png")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
