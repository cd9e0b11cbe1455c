package attacks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/graft-dev/graft/internal/fileio"
)

// Report files written by WriteDir.
const (
	ReportJSON     = "report.json"
	ReportMarkdown = "report.md"
	AccuracyPlot   = "accuracy_vs_eps.png"
	ExamplesImage  = "examples.png"
)

// WriteDir writes the report into dir (created if missing): report.json,
// report.md, accuracy_vs_eps.png and, when the report has a grid,
// examples.png. Each file is written to a temporary file and renamed, so a
// reader never sees a partial file.
//
// A shard's report (Report.Shard set) is only part of a sweep: WriteDir
// writes its report.json alone, which Merge (graft merge-reports) reads.
func (r *Report) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if r.Shard != nil {
		r.Images = nil
		js, err := r.JSON()
		if err != nil {
			return err
		}
		return fileio.WriteFile(filepath.Join(dir, ReportJSON), js)
	}
	// Pictures first, so report.json can state their sizes.
	pics := []struct {
		name   string
		render func() ([]byte, error)
	}{{AccuracyPlot, r.AccuracyPNG}}
	if r.Grid != nil {
		pics = append(pics, struct {
			name   string
			render func() ([]byte, error)
		}{ExamplesImage, r.ExamplesPNG})
	}
	out := map[string][]byte{}
	r.Images = nil
	for _, p := range pics {
		b, err := p.render()
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		r.Images = append(r.Images, ImageFile{File: p.name, Width: cfg.Width, Height: cfg.Height})
		out[p.name] = b
	}
	js, err := r.JSON()
	if err != nil {
		return err
	}
	out[ReportJSON] = js
	out[ReportMarkdown] = []byte(r.Markdown())
	for _, name := range []string{ReportJSON, ReportMarkdown, AccuracyPlot, ExamplesImage} {
		b, ok := out[name]
		if !ok {
			continue
		}
		if err := fileio.WriteFile(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	return nil
}

// An ImageFile names a picture WriteDir wrote and its size in pixels.
type ImageFile struct {
	File   string `json:"file"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// JSON returns the report as indented JSON.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Markdown returns the report as a Markdown page: settings, the accuracy
// table and per-class accuracy.
func (r *Report) Markdown() string {
	var b bytes.Buffer
	s := r.Settings
	mode := "untargeted"
	if s.Targeted {
		mode = "targeted"
	}
	fmt.Fprintf(&b, "# Robustness report: %s (%s)\n\n", strings.ToUpper(s.Attack.Name), mode)
	fmt.Fprintf(&b, "| setting | value |\n|---|---|\n")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "| %s | %s |\n", k, mdEscape(v))
		}
	}
	row("model", s.Model)
	row("model sha256", code(s.ModelSHA256))
	row("data", s.Data)
	row("examples", fmt.Sprint(r.Examples))
	row("attack", s.Attack.String()+", "+mode)
	row("loss", s.Loss)
	row("eps (L-inf, pixels in [0,1])", joinFloats(s.Eps))
	if s.Attack.Steps > 0 {
		row("steps", fmt.Sprint(s.Attack.Steps))
		alpha := s.Attack.AlphaRule
		if s.Attack.Alpha > 0 {
			alpha = fmt.Sprint(s.Attack.Alpha)
		}
		row("step size", alpha)
	}
	if s.Attack.Seed != nil {
		row("seed", fmt.Sprint(*s.Attack.Seed))
	}
	if len(s.Mean) > 0 {
		row("normalisation (inside the model)", fmt.Sprintf("mean %s, std %s", joinFloats(s.Mean), joinFloats(s.Std)))
	}
	if s.BatchSize > 0 {
		row("batch size", fmt.Sprint(s.BatchSize))
	}
	if s.Limit > 0 {
		row("limit", fmt.Sprint(s.Limit))
	}
	row("clean accuracy", fmt.Sprintf("%.4f (%d/%d)", r.CleanAccuracy, r.CleanCorrect, r.Examples))
	row("time", fmt.Sprintf("%.1f s", r.Seconds))
	if len(s.Notes)+len(s.Warnings) > 0 {
		fmt.Fprintf(&b, "\nThe model's contract:\n\n")
		for _, n := range s.Warnings {
			fmt.Fprintf(&b, "- warning: %s\n", mdEscape(n))
		}
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "- %s\n", mdEscape(n))
		}
	}

	fmt.Fprintf(&b, "\n## Accuracy vs eps\n\n")
	fmt.Fprintf(&b, "Success rate is over the %d initially correct examples; confidence is the mean softmax probability of the predicted class.\n\n", r.CleanCorrect)
	fmt.Fprintf(&b, "| eps | accuracy | correct | success rate | mean confidence | max \\|x'-x\\| |\n|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range r.Points {
		fmt.Fprintf(&b, "| %g | %.4f | %d | %.4f | %.4f | %.4g |\n", p.Eps, p.Accuracy, p.Correct, p.SuccessRate, p.MeanConfidence, p.MaxPerturbation)
	}
	fmt.Fprintf(&b, "\n![accuracy vs eps](%s)\n", AccuracyPlot)

	fmt.Fprintf(&b, "\n## Accuracy per class\n\n| class | examples |")
	for _, p := range r.Points {
		fmt.Fprintf(&b, " eps %g |", p.Eps)
	}
	fmt.Fprintf(&b, "\n|---|---:|%s\n", strings.Repeat("---:|", len(r.Points)))
	for c := 0; c < r.Classes; c++ {
		fmt.Fprintf(&b, "| %s | %d |", mdEscape(r.className(c)), r.ClassExamples[c])
		for _, p := range r.Points {
			if v := float64(p.ClassAccuracy[c]); math.IsNaN(v) {
				b.WriteString(" - |")
			} else {
				fmt.Fprintf(&b, " %.3f |", v)
			}
		}
		b.WriteString("\n")
	}
	if r.Grid != nil {
		fmt.Fprintf(&b, "\n## Examples\n\nThe first %d examples, one row per eps; under each image: its label, then -> the prediction (red where the attack succeeded).\n\n![examples](%s)\n", len(r.Grid.Labels), ExamplesImage)
	}
	return b.String()
}

func (r *Report) className(c int) string {
	if c >= 0 && c < len(r.Settings.ClassNames) {
		return r.Settings.ClassNames[c]
	}
	return fmt.Sprint(c)
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + s + "`"
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

func joinFloats(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ", ")
}
