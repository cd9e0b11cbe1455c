package attacks

import (
	"bytes"
	"fmt"
	"image/color"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// AccuracyPNG draws accuracy and attack success rate (over the initially
// correct examples) against eps, as a PNG.
func (r *Report) AccuracyPNG() ([]byte, error) {
	p := plot.New()
	mode := ""
	if r.Settings.Targeted {
		mode = " (targeted)"
	}
	p.Title.Text = fmt.Sprintf("%s%s: accuracy vs eps, %d examples", strings.ToUpper(r.Settings.Attack.Name), mode, r.Examples)
	p.X.Label.Text = "eps (L-inf, pixels in [0, 1])"
	p.Y.Label.Text = "fraction of examples"
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	acc := make(plotter.XYs, len(r.Points))
	succ := make(plotter.XYs, len(r.Points))
	var ticks []plot.Tick
	for i, pt := range r.Points {
		acc[i] = plotter.XY{X: pt.Eps, Y: pt.Accuracy}
		succ[i] = plotter.XY{X: pt.Eps, Y: pt.SuccessRate}
		ticks = append(ticks, plot.Tick{Value: pt.Eps, Label: fmt.Sprint(pt.Eps)})
	}
	if len(r.Points) > 0 && len(r.Points) <= 12 {
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
	}
	blue := color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange := color.RGBA{R: 255, G: 127, B: 14, A: 255}
	for _, s := range []struct {
		name  string
		xys   plotter.XYs
		color color.Color
		dash  []vg.Length
		shape draw.GlyphDrawer
	}{
		{"accuracy", acc, blue, nil, draw.CircleGlyph{}},
		{"attack success", succ, orange, []vg.Length{vg.Points(4), vg.Points(3)}, draw.SquareGlyph{}},
	} {
		l, pts, err := plotter.NewLinePoints(s.xys)
		if err != nil {
			return nil, err
		}
		l.Color, l.Width, l.Dashes = s.color, vg.Points(1.5), s.dash
		pts.Color, pts.Shape, pts.Radius = s.color, s.shape, vg.Points(3)
		p.Add(l, pts)
		p.Legend.Add(s.name, l, pts)
	}
	// Mid-left: accuracy starts high and success low, so both lines are
	// away from there.
	p.Legend.Left = true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(10), vg.Points(80)
	w, err := p.WriterTo(6*vg.Inch, 4*vg.Inch, "png")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
