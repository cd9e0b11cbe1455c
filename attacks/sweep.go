package attacks

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

// DefaultEps are the radii of a sweep when none are given: those of
// PyTorch's FGSM tutorial.
var DefaultEps = []float64{0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3}

// rows copies examples [i, j) of x into a new tensor.
func rows(x *tensor.Dense, i, j int) *tensor.Dense {
	s := x.Shape().Clone()
	size := s.TotalSize() / s[0]
	s[0] = j - i
	switch v := x.Data().(type) {
	case []float32:
		return tensor.New(tensor.WithShape(s...), tensor.WithBacking(append([]float32(nil), v[i*size:j*size]...)))
	case []float64:
		return tensor.New(tensor.WithShape(s...), tensor.WithBacking(append([]float64(nil), v[i*size:j*size]...)))
	}
	panic(fmt.Sprintf("attacks: inputs are %v", x.Dtype()))
}

// Config configures a sweep.
type Config struct {
	Attack Attack
	// Eps are the radii, in pixel units (pixels in [0, 1]); nil means
	// DefaultEps.
	Eps []float64
	// Targets, when set, makes the sweep targeted: it gives the target
	// class of each example from the labels of its batch.
	Targets func(labels []int) []int
	// Limit stops after this many examples; 0 evaluates them all.
	Limit int
	// Samples is how many of the first examples are kept for the image
	// grid (Report.Grid): 0 means 8, negative none.
	Samples int
	// Progress, when set, is called after each batch with the number of
	// examples done.
	Progress func(done int)
}

// A Report is the outcome of a sweep: accuracy and attack success per eps.
type Report struct {
	Settings Settings `json:"settings"`
	// Examples is the number of examples evaluated; Classes the model's
	// number of classes and ClassExamples how many examples each has.
	Examples      int   `json:"examples"`
	Classes       int   `json:"classes"`
	ClassExamples []int `json:"class_examples"`
	// CleanAccuracy is the accuracy on the unperturbed inputs.
	CleanAccuracy float64 `json:"clean_accuracy"`
	CleanCorrect  int     `json:"clean_correct"`
	Points        []Point `json:"points"`
	Seconds       float64 `json:"seconds"`
	// Images lists the pictures WriteDir wrote, with their sizes.
	Images []ImageFile `json:"images,omitempty"`
	// Grid holds the first examples, clean and attacked, for pictures.
	Grid *Grid `json:"-"`
}

// Settings record how a sweep was made. Sweep fills the attack's part;
// Robustness (or the caller of Sweep) describes the model and the data.
type Settings struct {
	Model       string    `json:"model,omitempty"`
	ModelSHA256 string    `json:"model_sha256,omitempty"`
	Data        string    `json:"data,omitempty"`
	Attack      Info      `json:"attack"`
	Loss        string    `json:"loss,omitempty"`
	Targeted    bool      `json:"targeted"`
	Eps         []float64 `json:"eps"`
	Limit       int       `json:"limit,omitempty"`
	BatchSize   int       `json:"batch_size,omitempty"`
	// Mean and Std are the normalisation (x - mean) / std of pixels in
	// [0, 1] inside the attacked model: put there by Robustness from the
	// model's contract, or the model's own.
	Mean []float64 `json:"mean,omitempty"`
	Std  []float64 `json:"std,omitempty"`
	// ClassNames, when set, name the classes in pictures and tables.
	ClassNames []string `json:"class_names,omitempty"`
	// Notes and Warnings are the model contract's (contract.Contract):
	// what was inferred rather than stored, and what looked wrong.
	Notes    []string `json:"notes,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// A Point is the sweep's result at one eps.
type Point struct {
	Eps float64 `json:"eps"`
	// Accuracy is the fraction of examples whose adversarial prediction is
	// their label; at eps 0, the clean accuracy.
	Accuracy float64 `json:"accuracy"`
	Correct  int     `json:"correct"`
	// SuccessRate is the fraction of the initially correct examples on
	// which the attack succeeded (prediction moved off the label, or onto
	// the target when targeted).
	SuccessRate float64 `json:"success_rate"`
	Successes   int     `json:"successes"`
	// MeanConfidence is the mean softmax probability of the predicted class.
	MeanConfidence float64 `json:"mean_confidence"`
	// ClassAccuracy is the accuracy on the examples of each class (by
	// label); NaN (null in JSON) for a class without examples.
	ClassAccuracy []Fraction `json:"class_accuracy"`
	// MaxPerturbation is the largest |x' - x| seen: at most Eps.
	MaxPerturbation float64 `json:"max_perturbation"`
}

// A Fraction is a float that is null in JSON when NaN.
type Fraction float64

// MarshalJSON writes null for NaN.
func (f Fraction) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}

// UnmarshalJSON reads null as NaN.
func (f *Fraction) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Fraction(math.NaN())
		return nil
	}
	return json.Unmarshal(b, (*float64)(f))
}

// Grid is the first examples of a sweep, for examples.png: their clean
// inputs [C, H, W] and, per eps, the adversarial inputs and predictions.
type Grid struct {
	Labels    []int
	Targets   []int // nil when untargeted
	Eps       []float64
	Clean     [][]float64 // per example, C*H*W in [0, 1]
	Shape     []int       // C, H, W (or H, W)
	CleanPred []int
	Adv       [][][]float64 // [eps][example]
	Pred      [][]int       // [eps][example]
	Success   [][]bool
}

// Sweep attacks every batch of data at every eps and reports the accuracy,
// attack success and confidence per eps, over all examples and per class.
// The inputs are pixels in [0, 1]: normalisation belongs inside the model
// (surgery.Normalize), so eps is in pixel units. Accuracy at eps 0 is the
// clean accuracy exactly: it is the prediction on the unperturbed input.
//
// data serves the examples: its first epoch's batches, in order (a
// dataset.Loader over an image folder or IDX files, or dataset.NewMemory
// over a tensor). An error of data ends the sweep.
func Sweep(m Model, data dataset.Source, cfg Config) (*Report, error) {
	if cfg.Attack == nil {
		return nil, errors.New("attacks: no attack")
	}
	eps := cfg.Eps
	if eps == nil {
		eps = DefaultEps
	}
	if len(eps) == 0 {
		return nil, errors.New("attacks: no eps")
	}
	if err := checkEps(eps); err != nil { // before any example is attacked
		return nil, err
	}
	// Clean predictions come from eps 0; add it when missing.
	runEps := eps
	zeroAt := -1
	for k, e := range eps {
		if e == 0 && zeroAt < 0 {
			zeroAt = k
		}
	}
	if zeroAt < 0 {
		runEps = append([]float64{0}, eps...)
	}
	samples := cfg.Samples
	if samples == 0 {
		samples = 8
	}
	start := time.Now()
	r := &Report{Settings: Settings{Attack: cfg.Attack.Info(), Targeted: cfg.Targets != nil, Eps: eps, Limit: cfg.Limit}}
	if l, ok := m.(interface{ LossName() string }); ok {
		r.Settings.Loss = l.LossName()
	}
	points := make([]Point, len(eps))
	confSum := make([]float64, len(eps))
	var classCorrect [][]int // [eps][class]
	if data == nil {
		return nil, errors.New("attacks: no data")
	}
	for b, err := range data.Batches(0) {
		if err != nil {
			return nil, err
		}
		if cfg.Limit > 0 && r.Examples >= cfg.Limit {
			break
		}
		if b.X == nil || len(b.X.Shape()) == 0 {
			return nil, errors.New("attacks: a batch without inputs")
		}
		x, labels := b.X, b.Labels
		if n := x.Shape()[0]; len(labels) != n {
			return nil, fmt.Errorf("attacks: a batch of %d examples with %d labels", n, len(labels))
		}
		if cfg.Limit > 0 && r.Examples+len(labels) > cfg.Limit {
			k := cfg.Limit - r.Examples
			x, labels = rows(x, 0, k), labels[:k]
		}
		if r.Settings.BatchSize == 0 {
			r.Settings.BatchSize = len(labels)
		}
		c := Misclassification(labels)
		if cfg.Targets != nil {
			c = TargetedMisclassification(labels, cfg.Targets(labels))
			if len(c.Targets) != len(labels) {
				return nil, fmt.Errorf("attacks: %d targets for %d labels", len(c.Targets), len(labels))
			}
		}
		outs, err := Run(m, cfg.Attack, x, c, runEps)
		if err != nil {
			return nil, err
		}
		clean := outs[0]
		if zeroAt >= 0 {
			clean = outs[zeroAt]
		} else {
			outs = outs[1:]
		}
		k := clean.Scores.Shape()[1]
		if r.Classes == 0 {
			r.Classes = k
			r.ClassExamples = make([]int, k)
			classCorrect = make([][]int, len(eps))
			for j := range classCorrect {
				classCorrect[j] = make([]int, k)
			}
		} else if k != r.Classes {
			return nil, fmt.Errorf("attacks: the model gave %d classes, then %d", r.Classes, k)
		}
		for i, l := range labels {
			if l < 0 || l >= k {
				return nil, fmt.Errorf("attacks: label %d of example %d is not one of the model's %d classes", l, r.Examples+i, k)
			}
			r.ClassExamples[l]++
			if clean.Pred[i] == l {
				r.CleanCorrect++
			}
		}
		for j, o := range outs {
			pt := &points[j]
			for i, l := range labels {
				if o.Pred[i] == l {
					pt.Correct++
					classCorrect[j][l]++
				}
				if clean.Pred[i] == l && o.Success[i] {
					pt.Successes++
				}
				confSum[j] += o.Confidence[i]
			}
			pt.MaxPerturbation = math.Max(pt.MaxPerturbation, maxAbsDiff(o.X, x))
		}
		if samples > 0 {
			if r.Grid == nil {
				r.Grid = &Grid{Eps: eps, Shape: x.Shape()[1:].Clone(), Adv: make([][][]float64, len(eps)),
					Pred: make([][]int, len(eps)), Success: make([][]bool, len(eps))}
			}
			g := r.Grid
			size := x.Shape().TotalSize() / len(labels)
			for i := 0; i < len(labels) && len(g.Labels) < samples; i++ {
				g.Labels = append(g.Labels, labels[i])
				if c.Targeted() {
					g.Targets = append(g.Targets, c.Targets[i])
				}
				g.Clean = append(g.Clean, float64s(x, i*size, (i+1)*size))
				g.CleanPred = append(g.CleanPred, clean.Pred[i])
				for j, o := range outs {
					g.Adv[j] = append(g.Adv[j], float64s(o.X, i*size, (i+1)*size))
					g.Pred[j] = append(g.Pred[j], o.Pred[i])
					g.Success[j] = append(g.Success[j], o.Success[i])
				}
			}
		}
		r.Examples += len(labels)
		if cfg.Progress != nil {
			cfg.Progress(r.Examples)
		}
	}
	if r.Examples == 0 {
		return nil, errors.New("attacks: no examples")
	}
	r.CleanAccuracy = float64(r.CleanCorrect) / float64(r.Examples)
	for j := range points {
		pt := &points[j]
		pt.Eps = eps[j]
		pt.Accuracy = float64(pt.Correct) / float64(r.Examples)
		if r.CleanCorrect > 0 {
			pt.SuccessRate = float64(pt.Successes) / float64(r.CleanCorrect)
		}
		pt.MeanConfidence = confSum[j] / float64(r.Examples)
		pt.ClassAccuracy = make([]Fraction, r.Classes)
		for l, n := range r.ClassExamples {
			pt.ClassAccuracy[l] = Fraction(math.NaN())
			if n > 0 {
				pt.ClassAccuracy[l] = Fraction(float64(classCorrect[j][l]) / float64(n))
			}
		}
	}
	r.Points = points
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

func float64s(x *tensor.Dense, i, j int) []float64 {
	out := make([]float64, j-i)
	switch v := x.Data().(type) {
	case []float32:
		for k := range out {
			out[k] = float64(v[i+k])
		}
	case []float64:
		copy(out, v[i:j])
	}
	return out
}

func maxAbsDiff(a, b *tensor.Dense) float64 {
	x, y := float64s(a, 0, a.Shape().TotalSize()), float64s(b, 0, b.Shape().TotalSize())
	var d float64
	for i := range x {
		d = math.Max(d, math.Abs(x[i]-y[i]))
	}
	return d
}
