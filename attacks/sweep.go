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
	// Shard and Detail are set in the report of one shard of a sweep
	// (RobustnessOptions.Shard): which shard it is, and every example's
	// outcome, which Merge needs to make the whole sweep's report.
	Shard  *dataset.Shard `json:"shard,omitempty"`
	Detail *Detail        `json:"detail,omitempty"`
}

// Settings record how a sweep was made. Sweep fills the attack's part;
// Robustness (or the caller of Sweep) describes the model and the data.
type Settings struct {
	Model       string `json:"model,omitempty"`
	ModelSHA256 string `json:"model_sha256,omitempty"`
	Data        string `json:"data,omitempty"`
	// DataFingerprint is the data set's dataset.Fingerprint (after the
	// limit): shards of other data are not merged.
	DataFingerprint string    `json:"data_fingerprint,omitempty"`
	Attack          Info      `json:"attack"`
	Loss            string    `json:"loss,omitempty"`
	Targeted        bool      `json:"targeted"`
	Eps             []float64 `json:"eps"`
	Limit           int       `json:"limit,omitempty"`
	BatchSize       int       `json:"batch_size,omitempty"`
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
// over a tensor). An error of data ends the sweep. A PGD attack draws the
// random starts of batch b from a stream of their own, seeded by its Seed
// and b (see PGD).
func Sweep(m Model, data dataset.Source, cfg Config) (*Report, error) {
	return sweep(m, data, cfg, nil)
}

// A part says which shard of a larger sweep a source serves: the k-th
// batch is block shard.Block(k) of the whole sweep's total examples, cut
// into blocks of block examples (see dataset.Shard).
type part struct {
	shard        dataset.Shard
	block, total int
}

// A perBatch attack has random state that Sweep restarts for every batch
// from the batch's number in the whole sweep, so that a shard attacking
// batch b draws what the whole sweep draws there.
type perBatch interface {
	forBatch(b int) Attack
}

func sweep(m Model, data dataset.Source, cfg Config, p *part) (*Report, error) {
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
	settings := Settings{Attack: cfg.Attack.Info(), Targeted: cfg.Targets != nil, Eps: eps, Limit: cfg.Limit}
	if l, ok := m.(interface{ LossName() string }); ok {
		settings.Loss = l.LossName()
	}
	d := newDetail(len(eps), max(samples, 0))
	maxPert := make([]float64, len(eps))
	if data == nil {
		return nil, errors.New("attacks: no data")
	}
	done, batchSize, k := 0, 0, -1
	for b, err := range data.Batches(0) {
		if err != nil {
			return nil, err
		}
		if cfg.Limit > 0 && done >= cfg.Limit {
			break
		}
		k++
		if b.X == nil || len(b.X.Shape()) == 0 {
			return nil, errors.New("attacks: a batch without inputs")
		}
		x, labels := b.X, b.Labels
		if n := x.Shape()[0]; len(labels) != n {
			return nil, fmt.Errorf("attacks: a batch of %d examples with %d labels", n, len(labels))
		}
		if cfg.Limit > 0 && done+len(labels) > cfg.Limit {
			n := cfg.Limit - done
			x, labels = rows(x, 0, n), labels[:n]
		}
		if batchSize == 0 {
			batchSize = len(labels)
		}
		// Where the batch lies in the whole sweep: its block number and
		// the index of its first example.
		block, first := k, done
		if p != nil {
			block = p.shard.Block(k)
			first = block * p.block
			if len(labels) > p.block || first+len(labels) > p.total || (first+len(labels) < p.total && len(labels) != p.block) {
				return nil, fmt.Errorf("attacks: batch %d of shard %v (%d examples) is not block %d of %d examples in blocks of %d", k, p.shard, len(labels), block, p.total, p.block)
			}
		}
		c := Misclassification(labels)
		if cfg.Targets != nil {
			c = TargetedMisclassification(labels, cfg.Targets(labels))
			if len(c.Targets) != len(labels) {
				return nil, fmt.Errorf("attacks: %d targets for %d labels", len(c.Targets), len(labels))
			}
		}
		attack := cfg.Attack
		if pb, ok := attack.(perBatch); ok {
			attack = pb.forBatch(block)
		}
		outs, err := Run(m, attack, x, c, runEps)
		if err != nil {
			return nil, err
		}
		clean := outs[0]
		if zeroAt >= 0 {
			clean = outs[zeroAt]
		} else {
			outs = outs[1:]
		}
		classes := clean.Scores.Shape()[1]
		if d.Classes == 0 {
			d.Classes = classes
		} else if classes != d.Classes {
			return nil, fmt.Errorf("attacks: the model gave %d classes, then %d", d.Classes, classes)
		}
		size := x.Shape().TotalSize() / len(labels)
		for i, l := range labels {
			if l < 0 || l >= classes {
				return nil, fmt.Errorf("attacks: label %d of example %d is not one of the model's %d classes", l, first+i, classes)
			}
			d.Index = append(d.Index, first+i)
			d.Labels = append(d.Labels, l)
			if c.Targeted() {
				d.Targets = append(d.Targets, c.Targets[i])
			}
			d.CleanPred = append(d.CleanPred, clean.Pred[i])
			for j, o := range outs {
				d.Pred[j] = append(d.Pred[j], o.Pred[i])
				d.Confidence[j] = append(d.Confidence[j], Fraction(o.Confidence[i]))
			}
			if first+i < d.Samples {
				if d.GridShape == nil {
					d.GridShape = x.Shape()[1:].Clone()
				}
				g := GridExample{Index: first + i, Clean: float64s(x, i*size, (i+1)*size)}
				for _, o := range outs {
					g.Adv = append(g.Adv, float64s(o.X, i*size, (i+1)*size))
				}
				d.Grid = append(d.Grid, g)
			}
		}
		for j, o := range outs {
			maxPert[j] = math.Max(maxPert[j], maxAbsDiff(o.X, x))
		}
		done += len(labels)
		if cfg.Progress != nil {
			cfg.Progress(done)
		}
	}
	if done == 0 {
		return nil, errors.New("attacks: no examples")
	}
	d.Total = done
	if p != nil {
		d.Total = p.total
	}
	settings.BatchSize = batchSize
	r := summarize(settings, d, maxPert)
	r.Seconds = time.Since(start).Seconds()
	if p != nil && p.shard.Count > 0 {
		sh := p.shard
		r.Shard, r.Detail = &sh, d
	}
	return r, nil
}

// summarize makes the report of the outcomes d, whose examples are in the
// order of the sweep: the one place a sweep's numbers are computed, for a
// whole sweep, a shard and a merge alike.
func summarize(s Settings, d *Detail, maxPert []float64) *Report {
	n := len(d.Labels)
	r := &Report{Settings: s, Examples: n, Classes: d.Classes, ClassExamples: make([]int, d.Classes)}
	for i, l := range d.Labels {
		r.ClassExamples[l]++
		if d.CleanPred[i] == l {
			r.CleanCorrect++
		}
	}
	r.CleanAccuracy = float64(r.CleanCorrect) / float64(n)
	r.Points = make([]Point, len(s.Eps))
	for j := range r.Points {
		pt := &r.Points[j]
		pt.Eps = s.Eps[j]
		pt.MaxPerturbation = maxPert[j]
		classCorrect := make([]int, d.Classes)
		var confSum float64
		for i, l := range d.Labels {
			pred := d.Pred[j][i]
			if pred == l {
				pt.Correct++
				classCorrect[l]++
			}
			if d.CleanPred[i] == l && d.success(j, i) {
				pt.Successes++
			}
			confSum += float64(d.Confidence[j][i])
		}
		pt.Accuracy = float64(pt.Correct) / float64(n)
		if r.CleanCorrect > 0 {
			pt.SuccessRate = float64(pt.Successes) / float64(r.CleanCorrect)
		}
		pt.MeanConfidence = confSum / float64(n)
		pt.ClassAccuracy = make([]Fraction, d.Classes)
		for l, c := range r.ClassExamples {
			pt.ClassAccuracy[l] = Fraction(math.NaN())
			if c > 0 {
				pt.ClassAccuracy[l] = Fraction(float64(classCorrect[l]) / float64(c))
			}
		}
	}
	r.Grid = d.grid(s.Eps)
	return r
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
