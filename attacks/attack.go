package attacks

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/graft-dev/graft/onnx/contract"
	"gorgonia.org/tensor"
)

// A Criterion says what an attack aims for and when it succeeded.
type Criterion struct {
	// Labels are the true classes, one per example.
	Labels []int
	// Targets, when set, make the attack targeted: it lowers the loss of
	// these classes and succeeds when the model predicts them. Otherwise
	// the attack raises the loss of Labels and succeeds when the
	// prediction differs from the label.
	Targets []int
}

// Misclassification is the untargeted criterion: any class but the label.
func Misclassification(labels []int) Criterion { return Criterion{Labels: labels} }

// TargetedMisclassification aims for the target class of each example.
func TargetedMisclassification(labels, targets []int) Criterion {
	return Criterion{Labels: labels, Targets: targets}
}

// Targeted reports whether the criterion has targets.
func (c Criterion) Targeted() bool { return c.Targets != nil }

// Success reports, for each prediction, whether the attack succeeded.
func (c Criterion) Success(pred []int) []bool {
	ok := make([]bool, len(pred))
	for i, p := range pred {
		if c.Targeted() {
			ok[i] = p == c.Targets[i]
		} else {
			ok[i] = p != c.Labels[i]
		}
	}
	return ok
}

// classes returns the classes whose loss the attack follows and the sign
// of the step: +1 up the loss of the labels, -1 down the loss of the targets.
func (c Criterion) classes() ([]int, float64) {
	if c.Targeted() {
		return c.Targets, -1
	}
	return c.Labels, 1
}

func (c Criterion) check(n int) error {
	if len(c.Labels) != n {
		return fmt.Errorf("attacks: %d labels for a batch of %d", len(c.Labels), n)
	}
	if c.Targeted() && len(c.Targets) != n {
		return fmt.Errorf("attacks: %d targets for a batch of %d", len(c.Targets), n)
	}
	return nil
}

// An Attack perturbs a batch of inputs, pixels in [0, 1], within an L-inf
// ball of radius eps, keeping pixels in [0, 1]. Perturb takes a list of
// radii and returns one adversarial batch per radius, in order; an attack
// that can share work between radii (FGSM's single gradient) does. A radius
// of 0 returns a copy of x.
type Attack interface {
	Perturb(m Model, x *tensor.Dense, c Criterion, eps []float64) ([]*tensor.Dense, error)
	Info() Info
}

// Info describes an attack and its settings, for reports.
type Info struct {
	Name  string `json:"name"`
	Steps int    `json:"steps,omitempty"`
	// Alpha is the step size; 0 with AlphaRule set when it follows eps.
	Alpha       float64 `json:"alpha,omitempty"`
	AlphaRule   string  `json:"alpha_rule,omitempty"`
	RandomStart bool    `json:"random_start,omitempty"`
	Seed        *int64  `json:"seed,omitempty"`
}

func (i Info) String() string {
	s := i.Name
	if i.Steps > 0 {
		s += fmt.Sprintf(", %d steps", i.Steps)
	}
	switch {
	case i.Alpha > 0:
		s += fmt.Sprintf(", step %g", i.Alpha)
	case i.AlphaRule != "":
		s += ", step " + i.AlphaRule
	}
	if i.RandomStart {
		s += ", random start"
	}
	if i.Seed != nil {
		s += fmt.Sprintf(", seed %d", *i.Seed)
	}
	return s
}

// FGSM is the fast gradient sign method (Goodfellow et al., 2015): one step
// x' = clamp(x + eps*sign(grad_x loss), 0, 1), or down the loss of the
// target class when targeted. One gradient serves every eps.
type FGSM struct{}

// Info describes FGSM.
func (FGSM) Info() Info { return Info{Name: "fgsm"} }

// Perturb returns x' for each eps.
func (FGSM) Perturb(m Model, x *tensor.Dense, c Criterion, eps []float64) ([]*tensor.Dense, error) {
	if err := checkInput(x, c, eps); err != nil {
		return nil, err
	}
	out := make([]*tensor.Dense, len(eps))
	var grad *tensor.Dense
	classes, dir := c.classes()
	for k, e := range eps {
		if e == 0 {
			out[k] = x.Clone().(*tensor.Dense)
			continue
		}
		if grad == nil {
			var err error
			if _, grad, err = m.Gradient(x, classes); err != nil {
				return nil, err
			}
		}
		adv := x.Clone().(*tensor.Dense)
		signStep(adv, x, grad, dir*e, -1)
		out[k] = adv
	}
	return out, nil
}

// BIM is the basic iterative method (Kurakin et al., 2017): Steps FGSM steps
// of size Alpha from x, each followed by projection onto the eps-ball around
// x and onto [0, 1].
type BIM struct {
	Steps int     // 0 means 10
	Alpha float64 // step size; 0 means 2.5*eps/Steps
}

// Info describes BIM.
func (a BIM) Info() Info {
	return iterInfo("bim", a.Steps, a.Alpha)
}

// Perturb runs the iterations for each eps.
func (a BIM) Perturb(m Model, x *tensor.Dense, c Criterion, eps []float64) ([]*tensor.Dense, error) {
	return iterate(m, x, c, eps, a.Steps, a.Alpha, nil)
}

// PGD is projected gradient descent under L-inf (Madry et al., 2018): BIM
// from a random start drawn uniformly in the eps-ball around x (and clamped
// to [0, 1]).
//
// The random starts come from one stream seeded by Seed, drawn in call
// order: the same calls in the same order give the same batches. In a
// Sweep (and so in Robustness), batch b of the sweep draws from a stream
// of its own, seeded by Seed and b (batch 0's is the one stream): the
// starts of an example do not depend on the batches before it, so a shard
// of a sweep draws what the whole sweep draws.
type PGD struct {
	Steps int     // 0 means 10
	Alpha float64 // step size; 0 means 2.5*eps/Steps
	Seed  int64

	rng *rand.Rand
}

// Info describes PGD.
func (a *PGD) Info() Info {
	i := iterInfo("pgd", a.Steps, a.Alpha)
	i.RandomStart = true
	seed := a.Seed
	i.Seed = &seed
	return i
}

// Perturb runs the iterations for each eps, each from its own random
// start, drawn as Start draws it.
func (a *PGD) Perturb(m Model, x *tensor.Dense, c Criterion, eps []float64) ([]*tensor.Dense, error) {
	return iterate(m, x, c, eps, a.Steps, a.Alpha, a.Start)
}

// Start draws the next random start from a's stream: x plus noise uniform
// in [-eps, eps], clamped to [0, 1], in x's element type. Perturb draws
// one start per nonzero radius, in order, and nothing else, so a PGD with
// the same seed returns from Start the start that Perturb's first radius
// iterates from (what a reference implementation needs to follow the same
// path).
func (a *PGD) Start(x *tensor.Dense, eps float64) *tensor.Dense {
	if a.rng == nil {
		a.rng = rand.New(rand.NewPCG(uint64(a.Seed), pgdStream))
	}
	adv := x.Clone().(*tensor.Dense)
	randomStart(adv, x, eps, a.rng)
	return adv
}

// pgdStream is the second seed of PGD's generator: "graft-pg".
const pgdStream = 0x67726166742d7067

// forBatch returns a PGD with a's settings whose starts come from the
// stream of batch b of a sweep.
func (a *PGD) forBatch(b int) Attack {
	return &PGD{Steps: a.Steps, Alpha: a.Alpha, Seed: a.Seed,
		rng: rand.New(rand.NewPCG(uint64(a.Seed), pgdStream^mix64(uint64(b))))}
}

// mix64 is MurmurHash3's 64-bit finaliser: distinct batches get unrelated
// streams, and batch 0 keeps the one stream (mix64(0) is 0).
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

const defaultSteps = 10

func iterInfo(name string, steps int, alpha float64) Info {
	if steps <= 0 {
		steps = defaultSteps
	}
	i := Info{Name: name, Steps: steps, Alpha: alpha}
	if alpha <= 0 {
		i.Alpha, i.AlphaRule = 0, "2.5*eps/steps"
	}
	return i
}

// iterate runs the iterative attack at each eps, from x or, when start is
// set, from start(x, eps).
func iterate(m Model, x *tensor.Dense, c Criterion, eps []float64, steps int, alpha float64, start func(x *tensor.Dense, eps float64) *tensor.Dense) ([]*tensor.Dense, error) {
	if err := checkInput(x, c, eps); err != nil {
		return nil, err
	}
	if steps <= 0 {
		steps = defaultSteps
	}
	if alpha < 0 || math.IsNaN(alpha) || math.IsInf(alpha, 0) {
		return nil, fmt.Errorf("attacks: step size %g", alpha)
	}
	classes, dir := c.classes()
	out := make([]*tensor.Dense, len(eps))
	for k, e := range eps {
		if e == 0 {
			out[k] = x.Clone().(*tensor.Dense)
			continue
		}
		step := alpha
		if step == 0 {
			step = 2.5 * e / float64(steps)
		}
		adv := x.Clone().(*tensor.Dense)
		if start != nil {
			adv = start(x, e)
		}
		out[k] = adv
		for s := 0; s < steps; s++ {
			_, grad, err := m.Gradient(adv, classes)
			if err != nil {
				return nil, err
			}
			signStep(adv, x, grad, dir*step, e)
		}
	}
	return out, nil
}

func checkInput(x *tensor.Dense, c Criterion, eps []float64) error {
	if x == nil || len(x.Shape()) < 1 || x.Shape().TotalSize() == 0 {
		return errors.New("attacks: empty input batch")
	}
	if dt := x.Dtype(); dt != tensor.Float32 && dt != tensor.Float64 {
		return fmt.Errorf("attacks: inputs are %v, want float32 or float64", dt)
	}
	if err := checkEps(eps); err != nil {
		return err
	}
	return c.check(x.Shape()[0])
}

// checkEps refuses radii outside [0, 1], NaN included.
func checkEps(eps []float64) error {
	for _, e := range eps {
		if !(e >= 0 && e <= 1) {
			return fmt.Errorf("attacks: eps %g is outside [0, 1]", e)
		}
	}
	return nil
}

// signStep sets adv = clamp(adv + step*sign(grad), 0, 1), first projecting
// onto the ball |adv - x| <= eps when eps >= 0. For FGSM, adv is x and eps
// is -1: the arithmetic is PyTorch's, x + eps*sign(grad) in the element type,
// then the clamp.
func signStep(adv, x, grad *tensor.Dense, step, eps float64) {
	switch a := adv.Data().(type) {
	case []float32:
		signStepT(a, x.Data().([]float32), grad.Data().([]float32), float32(step), eps)
	case []float64:
		signStepT(a, x.Data().([]float64), grad.Data().([]float64), step, eps)
	}
}

type float interface{ ~float32 | ~float64 }

// sign is 1, -1 or 0 (for zero and NaN), without branches: a gradient's
// signs are a coin toss for the branch predictor.
func sign[T float](v T) T {
	var pos, neg int32
	if v > 0 {
		pos = 1
	}
	if v < 0 {
		neg = 1
	}
	return T(pos - neg)
}

func clamp[T float](v, lo, hi T) T {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

func signStepT[T float](adv, x, grad []T, step T, eps float64) {
	e := T(eps)
	for i := range adv {
		v := adv[i] + step*sign(grad[i])
		if eps >= 0 {
			v = clamp(v, x[i]-e, x[i]+e)
		}
		adv[i] = clamp(v, 0, 1)
	}
}

func randomStart(adv, x *tensor.Dense, eps float64, rng *rand.Rand) {
	switch a := adv.Data().(type) {
	case []float32:
		xs := x.Data().([]float32)
		for i := range a {
			a[i] = clamp(xs[i]+float32(eps*(2*rng.Float64()-1)), 0, 1)
		}
	case []float64:
		xs := x.Data().([]float64)
		for i := range a {
			a[i] = clamp(xs[i]+eps*(2*rng.Float64()-1), 0, 1)
		}
	}
}

// An Outcome is an attack's result at one eps.
type Outcome struct {
	Eps float64
	// X is the adversarial batch; at eps 0, a copy of the input.
	X *tensor.Dense
	// Scores are the model's outputs [N, K] on X; Pred is the class with
	// the highest score for each example, Confidence its softmax probability.
	Scores     *tensor.Dense
	Pred       []int
	Confidence []float64
	// Success says, per example, whether the criterion is met.
	Success []bool
}

// Run attacks the batch x (pixels in [0, 1]; normalisation belongs inside
// the model, see surgery.Normalize) at each eps, and classifies the results.
// At eps 0 the outcome is the clean one: the prediction on x itself.
func Run(m Model, a Attack, x *tensor.Dense, c Criterion, eps []float64) ([]Outcome, error) {
	if err := checkInput(x, c, eps); err != nil {
		return nil, err
	}
	var clean *Outcome
	var need []float64
	for _, e := range eps {
		if e != 0 {
			need = append(need, e)
		}
	}
	var advs []*tensor.Dense
	if len(need) > 0 {
		var err error
		if advs, err = a.Perturb(m, x, c, need); err != nil {
			return nil, err
		}
		if len(advs) != len(need) {
			return nil, fmt.Errorf("attacks: %s returned %d batches for %d radii", a.Info().Name, len(advs), len(need))
		}
	}
	out := make([]Outcome, len(eps))
	for k, e := range eps {
		if e == 0 {
			if clean == nil {
				o, err := classify(m, x.Clone().(*tensor.Dense), c)
				if err != nil {
					return nil, err
				}
				clean = &o
			}
			out[k] = *clean
			continue
		}
		o, err := classify(m, advs[0], c)
		if err != nil {
			return nil, err
		}
		advs = advs[1:]
		out[k] = o
		out[k].Eps = e
	}
	return out, nil
}

func classify(m Model, x *tensor.Dense, c Criterion) (Outcome, error) {
	scores, err := m.Forward(x)
	if err != nil {
		return Outcome{}, err
	}
	pred, conf, err := Predict(scores, scoreKind(m))
	if err != nil {
		return Outcome{}, err
	}
	if len(pred) != len(c.Labels) {
		return Outcome{}, fmt.Errorf("attacks: %d predictions for %d labels", len(pred), len(c.Labels))
	}
	return Outcome{X: x, Scores: scores, Pred: pred, Confidence: conf, Success: c.Success(pred)}, nil
}

// Predict returns, for scores [N, K], the class with the highest score in
// each row (the first on ties, as torch.argmax) and its probability, by
// what the scores are (contract.Output.Probabilities).
func Predict(scores *tensor.Dense, out contract.Output) (pred []int, conf []float64, err error) {
	s := scores.Shape()
	if len(s) != 2 || s[1] == 0 {
		return nil, nil, fmt.Errorf("attacks: scores of shape %v, want [batch, classes]", s)
	}
	n, k := s[0], s[1]
	var v []float64
	switch d := scores.Data().(type) {
	case []float32:
		v = make([]float64, len(d))
		for i, x := range d {
			v[i] = float64(x)
		}
	case []float64:
		v = d
	default:
		return nil, nil, fmt.Errorf("attacks: scores are %v", scores.Dtype())
	}
	pred, conf = make([]int, n), make([]float64, n)
	for i := 0; i < n; i++ {
		row := v[i*k : (i+1)*k]
		pred[i] = contract.Argmax(row)
		conf[i] = out.Probabilities(row)[pred[i]]
	}
	return pred, conf, nil
}
