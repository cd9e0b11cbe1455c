package attacks

import (
	"bytes"
	"encoding/json"
	"errors"
	"image/png"
	"iter"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

// linear is a toy Model in float64: logits = x W + b on flattened inputs,
// with the exact gradient of the batch-mean cross-entropy. It counts calls.
type linear struct {
	w     [][]float64 // [D][K]
	b     []float64
	grads int
}

func newLinear(d, k int) *linear {
	m := &linear{w: make([][]float64, d), b: make([]float64, k)}
	for i := range m.w {
		m.w[i] = make([]float64, k)
		for j := range m.w[i] {
			m.w[i][j] = math.Sin(float64(3*i+7*j+1)) * 2
		}
	}
	for j := range m.b {
		m.b[j] = 0.1 * float64(j)
	}
	return m
}

func (m *linear) logits(x *tensor.Dense) (n int, z []float64) {
	n = x.Shape()[0]
	v := x.Data().([]float64)
	d, k := len(m.w), len(m.b)
	z = make([]float64, n*k)
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			s := m.b[j]
			for a := 0; a < d; a++ {
				s += v[i*d+a] * m.w[a][j]
			}
			z[i*k+j] = s
		}
	}
	return n, z
}

func (m *linear) Forward(x *tensor.Dense) (*tensor.Dense, error) {
	n, z := m.logits(x)
	return tensor.New(tensor.WithShape(n, len(m.b)), tensor.WithBacking(z)), nil
}

func (m *linear) Gradient(x *tensor.Dense, classes []int) (*tensor.Dense, *tensor.Dense, error) {
	m.grads++
	n, z := m.logits(x)
	d, k := len(m.w), len(m.b)
	g := make([]float64, n*d)
	for i := 0; i < n; i++ {
		row := z[i*k : (i+1)*k]
		mx := row[0]
		for _, v := range row {
			mx = math.Max(mx, v)
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(v - mx)
		}
		for j := 0; j < k; j++ {
			p := math.Exp(row[j]-mx) / sum
			if j == classes[i] {
				p--
			}
			for a := 0; a < d; a++ {
				g[i*d+a] += p * m.w[a][j] / float64(n)
			}
		}
	}
	scores := tensor.New(tensor.WithShape(n, k), tensor.WithBacking(z))
	return scores, tensor.New(tensor.WithShape(x.Shape().Clone()...), tensor.WithBacking(g)), nil
}

// toyBatch is n examples [n, 1, 2, 3] with values in [0, 1], some at the
// bounds, and labels cycling through k classes.
func toyBatch(n, k int) (*tensor.Dense, []int) {
	v := make([]float64, n*6)
	for i := range v {
		v[i] = math.Mod(float64(i)*0.377, 1)
		if i%7 == 0 {
			v[i] = 0
		}
		if i%11 == 0 {
			v[i] = 1
		}
	}
	labels := make([]int, n)
	for i := range labels {
		labels[i] = i % k
	}
	return tensor.New(tensor.WithShape(n, 1, 2, 3), tensor.WithBacking(v)), labels
}

func lossOf(m *linear, x *tensor.Dense, classes []int) float64 {
	s, _ := m.Forward(x)
	n, k := len(classes), len(m.b)
	z := s.Data().([]float64)
	var l float64
	for i := 0; i < n; i++ {
		row := z[i*k : (i+1)*k]
		var sum float64
		for _, v := range row {
			sum += math.Exp(v)
		}
		l += math.Log(sum) - row[classes[i]]
	}
	return l / float64(n)
}

func TestFGSMFormula(t *testing.T) {
	m := newLinear(6, 4)
	x, labels := toyBatch(5, 4)
	eps := []float64{0, 0.1, 0.25}
	advs, err := FGSM{}.Perturb(m, x, Misclassification(labels), eps)
	if err != nil {
		t.Fatal(err)
	}
	if m.grads != 1 {
		t.Errorf("FGSM took %d gradients for %d radii, want 1", m.grads, len(eps))
	}
	_, g, _ := m.Gradient(x, labels)
	xv, gv := x.Data().([]float64), g.Data().([]float64)
	for k, e := range eps {
		a := advs[k].Data().([]float64)
		for i := range a {
			want := math.Min(1, math.Max(0, xv[i]+e*sign(gv[i])))
			if a[i] != want {
				t.Fatalf("eps %g element %d: %g, want clamp(x + eps*sign(g)) = %g", e, i, a[i], want)
			}
		}
		if e == 0 && &a[0] == &xv[0] {
			t.Error("eps 0 returns x itself, want a copy")
		}
	}
	if l0, l1 := lossOf(m, x, labels), lossOf(m, advs[2], labels); l1 <= l0 {
		t.Errorf("untargeted FGSM: loss %g -> %g, want it to rise", l0, l1)
	}
	// Targeted: the step goes down the target's loss.
	targets := []int{3, 3, 3, 3, 3}
	advs, err = FGSM{}.Perturb(m, x, TargetedMisclassification(labels, targets), []float64{0.25})
	if err != nil {
		t.Fatal(err)
	}
	_, g, _ = m.Gradient(x, targets)
	gv = g.Data().([]float64)
	for i, a := range advs[0].Data().([]float64) {
		if want := math.Min(1, math.Max(0, xv[i]-0.25*sign(gv[i]))); a != want {
			t.Fatalf("targeted element %d: %g, want %g", i, a, want)
		}
	}
	if l0, l1 := lossOf(m, x, targets), lossOf(m, advs[0], targets); l1 >= l0 {
		t.Errorf("targeted FGSM: target loss %g -> %g, want it to fall", l0, l1)
	}
}

func TestIterativeAttacksStayInBall(t *testing.T) {
	x, labels := toyBatch(6, 4)
	xv := x.Data().([]float64)
	for _, a := range []Attack{BIM{}, BIM{Steps: 5, Alpha: 0.1}, &PGD{Steps: 7, Seed: 3}} {
		m := newLinear(6, 4)
		eps := []float64{0, 0.05, 0.2}
		advs, err := a.Perturb(m, x, Misclassification(labels), eps)
		if err != nil {
			t.Fatal(err)
		}
		info := a.Info()
		if want := 2 * info.Steps; m.grads != want {
			t.Errorf("%s: %d gradients, want %d (steps for each non-zero eps)", info, m.grads, want)
		}
		for k, e := range eps {
			for i, v := range advs[k].Data().([]float64) {
				if v < 0 || v > 1 || math.Abs(v-xv[i]) > e+1e-12 {
					t.Fatalf("%s eps %g element %d: %g from %g", info, e, i, v, xv[i])
				}
			}
		}
		if l0, l1 := lossOf(m, x, labels), lossOf(m, advs[2], labels); l1 <= l0 {
			t.Errorf("%s: loss %g -> %g, want it to rise", info, l0, l1)
		}
	}
	// BIM with one step of size eps is FGSM.
	m := newLinear(6, 4)
	bim, _ := BIM{Steps: 1, Alpha: 0.1}.Perturb(m, x, Misclassification(labels), []float64{0.1})
	fgsm, _ := FGSM{}.Perturb(m, x, Misclassification(labels), []float64{0.1})
	for i, v := range bim[0].Data().([]float64) {
		if w := fgsm[0].Data().([]float64)[i]; math.Abs(v-w) > 1e-15 {
			t.Fatalf("BIM(1 step, alpha=eps) element %d = %g, FGSM %g", i, v, w)
		}
	}
	// PGD: the same seed gives the same batch, another seed another one.
	run := func(seed int64) []float64 {
		a, err := (&PGD{Steps: 2, Seed: seed}).Perturb(newLinear(6, 4), x, Misclassification(labels), []float64{0.3})
		if err != nil {
			t.Fatal(err)
		}
		return a[0].Data().([]float64)
	}
	a, b, c := run(1), run(1), run(2)
	same := func(p, q []float64) bool {
		for i := range p {
			if p[i] != q[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) || same(a, c) {
		t.Errorf("PGD seeding: same seed equal %v, other seed equal %v", same(a, b), same(a, c))
	}
}

func TestAttackErrors(t *testing.T) {
	m := newLinear(6, 4)
	x, labels := toyBatch(3, 4)
	for _, c := range []struct {
		eps  []float64
		crit Criterion
		want string
	}{
		{[]float64{-0.1}, Misclassification(labels), "eps -0.1 is outside"},
		{[]float64{math.NaN()}, Misclassification(labels), "outside"},
		{[]float64{0.1}, Misclassification(labels[:2]), "2 labels for a batch of 3"},
		{[]float64{0.1}, TargetedMisclassification(labels, []int{1}), "1 targets for a batch of 3"},
	} {
		for _, a := range []Attack{FGSM{}, BIM{}, &PGD{}} {
			if _, err := a.Perturb(m, x, c.crit, c.eps); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v, want %q", a.Info().Name, err, c.want)
			}
		}
	}
	if _, err := (BIM{Alpha: -1}).Perturb(m, x, Misclassification(labels), []float64{0.1}); err == nil {
		t.Error("negative step size accepted")
	}
}

func TestPredict(t *testing.T) {
	s := tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float32{1, 3, 3, float32(math.Log(0.7)), float32(math.Log(0.2)), float32(math.Log(0.1))}))
	pred, conf, err := Predict(s, contract.Output{Kind: contract.Logits})
	if err != nil {
		t.Fatal(err)
	}
	if pred[0] != 1 || pred[1] != 0 {
		t.Errorf("pred %v, want [1 0] (first of equal maxima)", pred)
	}
	if want := math.Exp(3) / (math.Exp(1) + 2*math.Exp(3)); math.Abs(conf[0]-want) > 1e-6 || math.Abs(conf[1]-0.7) > 1e-6 {
		t.Errorf("confidence %v, want [%g 0.7] (softmax; log-probabilities give the probabilities)", conf, want)
	}
}

func TestSweep(t *testing.T) {
	m := newLinear(6, 4)
	x, labels := toyBatch(23, 4)
	labels[5] = 2 // class 3 keeps examples; all classes seen
	var done []int
	cfg := Config{Attack: FGSM{}, Eps: []float64{0, 0.1, 0.3}, Limit: 20, Samples: 3, Progress: func(n int) { done = append(done, n) }}
	r, err := Sweep(m, mustMemory(x, labels, 8), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Examples != 20 || len(done) != 3 || done[2] != 20 || r.Settings.BatchSize != 8 {
		t.Fatalf("examples %d, progress %v, batch size %d", r.Examples, done, r.Settings.BatchSize)
	}
	// Recount by hand from the outcomes of Run on the same examples.
	first := rows(x, 0, 20)
	clean, _ := m.Forward(first)
	pred, conf, _ := Predict(clean, contract.Output{Kind: contract.Logits})
	correct, confSum := 0, 0.0
	for i := range pred {
		if pred[i] == labels[i] {
			correct++
		}
		confSum += conf[i]
	}
	if r.CleanCorrect != correct || r.Points[0].Correct != correct || r.Points[0].Accuracy != r.CleanAccuracy {
		t.Errorf("clean: %d correct, eps 0: %d (accuracy %v vs %v); by hand %d", r.CleanCorrect, r.Points[0].Correct, r.Points[0].Accuracy, r.CleanAccuracy, correct)
	}
	if math.Abs(r.Points[0].MeanConfidence-confSum/20) > 1e-12 || r.Points[0].SuccessRate != 0 {
		t.Errorf("eps 0: confidence %v (want %v), success %v", r.Points[0].MeanConfidence, confSum/20, r.Points[0].SuccessRate)
	}
	for i, p := range r.Points[1:] {
		if p.Accuracy > r.Points[i].Accuracy {
			t.Errorf("accuracy rises from eps %g to %g", r.Points[i].Eps, p.Eps)
		}
	}
	var n int
	for _, c := range r.ClassExamples {
		n += c
	}
	if r.Classes != 4 || n != 20 {
		t.Errorf("classes %d, class examples %v", r.Classes, r.ClassExamples)
	}
	if g := r.Grid; g == nil || len(g.Labels) != 3 || len(g.Adv) != 3 || len(g.Adv[2]) != 3 || len(g.Clean[0]) != 6 {
		t.Errorf("grid %+v", r.Grid)
	}

	// A class without examples is null in JSON.
	for i := range labels {
		labels[i] %= 3
	}
	r, err = Sweep(m, mustMemory(x, labels, 0), Config{Attack: BIM{Steps: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Points) != len(DefaultEps) || !math.IsNaN(float64(r.Points[1].ClassAccuracy[3])) {
		t.Fatalf("points %d, class 3 accuracy %v", len(r.Points), r.Points[1].ClassAccuracy)
	}
	js, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil || !math.IsNaN(float64(back.Points[1].ClassAccuracy[3])) || back.Settings.Attack.Name != "bim" {
		t.Errorf("JSON round trip: %v, %+v", err, back.Points[1])
	}
	if !bytes.Contains(js, []byte(`"alpha_rule": "2.5*eps/steps"`)) {
		t.Errorf("JSON lacks the step-size rule:\n%s", js)
	}
}

func TestSweepErrors(t *testing.T) {
	m := newLinear(6, 4)
	x, labels := toyBatch(4, 4)
	fail := errors.New("disk on fire")
	broken := batchList{batches: []dataset.Batch{{X: x, Labels: labels}}, err: fail}
	if _, err := Sweep(m, broken, Config{Attack: FGSM{}}); !errors.Is(err, fail) {
		t.Errorf("data error: %v", err)
	}
	// A NaN radius is refused before the data is read.
	if _, err := Sweep(m, broken, Config{Attack: FGSM{}, Eps: []float64{0.1, math.NaN()}}); err == nil || err.Error() != "attacks: eps NaN is outside [0, 1]" {
		t.Errorf("NaN eps: %v", err)
	}
	bad := append([]int(nil), labels...)
	bad[2] = 9
	for _, c := range []struct {
		data dataset.Source
		cfg  Config
		want string
	}{
		{mustMemory(x, labels, 2), Config{}, "no attack"},
		{mustMemory(x, labels, 2), Config{Attack: FGSM{}, Eps: []float64{}}, "no eps"},
		{batchList{batches: []dataset.Batch{{X: x, Labels: labels[:3]}}}, Config{Attack: FGSM{}}, "a batch of 4 examples with 3 labels"},
		{mustMemory(x, bad, 2), Config{Attack: FGSM{}}, "label 9 of example 2"},
		{batchList{}, Config{Attack: FGSM{}}, "no examples"},
		{mustMemory(x, labels, 2), Config{Attack: FGSM{}, Targets: func(l []int) []int { return l[:1] }}, "1 targets for 2 labels"},
	} {
		if _, err := Sweep(m, c.data, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want %q", err, c.want)
		}
	}
}

func TestWriteDir(t *testing.T) {
	m := newLinear(6, 4)
	x, labels := toyBatch(10, 4)
	next := func(l []int) []int {
		out := make([]int, len(l))
		for i, v := range l {
			out[i] = (v + 1) % 4
		}
		return out
	}
	r, err := Sweep(m, mustMemory(x, labels, 4), Config{Attack: &PGD{Steps: 3, Seed: 9}, Eps: []float64{0.1, 0.2}, Targets: next})
	if err != nil {
		t.Fatal(err)
	}
	r.Settings.Model, r.Settings.ModelSHA256, r.Settings.Data = "toy.onnx", "abc123", "10 toy examples"
	r.Settings.ClassNames = []string{"cat", "dog", "car", "a|b"}
	dir := filepath.Join(t.TempDir(), "out")
	if err := r.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "accuracy_vs_eps.png examples.png report.json report.md" {
		t.Errorf("files %v (no temporary files may remain)", names)
	}
	// Every picture decodes at the size report.json states.
	var stated struct {
		Images []ImageFile `json:"images"`
	}
	js, _ := os.ReadFile(filepath.Join(dir, ReportJSON))
	if err := json.Unmarshal(js, &stated); err != nil || len(stated.Images) != 2 {
		t.Fatalf("report.json images: %+v (%v)", stated.Images, err)
	}
	for _, im := range stated.Images {
		b, _ := os.ReadFile(filepath.Join(dir, im.File))
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil || img.Bounds().Dx() != im.Width || img.Bounds().Dy() != im.Height || im.Width < 200 {
			t.Errorf("%s decodes to %v (%v), report.json says %dx%d", im.File, img.Bounds(), err, im.Width, im.Height)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, ReportMarkdown))
	for _, want := range []string{"PGD (targeted)", "`abc123`", "10 toy examples", "pgd, 3 steps, step 2.5*eps/steps, random start, seed 9, targeted",
		"| 0.1 |", "| a\\|b | ", "clean accuracy"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	var back Report
	b, _ := os.ReadFile(filepath.Join(dir, ReportJSON))
	if err := json.Unmarshal(b, &back); err != nil || !back.Settings.Targeted || back.Settings.Attack.Seed == nil || *back.Settings.Attack.Seed != 9 {
		t.Errorf("report.json: %v %+v", err, back.Settings)
	}
	// The clean row is added when eps 0 is not swept.
	if len(r.Points) != 2 || r.Grid == nil || len(r.Grid.Pred) != 2 {
		t.Errorf("points %d", len(r.Points))
	}
}

// mustMemory serves x and labels in batches of n (all at once for 0).
func mustMemory(x *tensor.Dense, labels []int, n int) dataset.Source {
	if n == 0 {
		n = len(labels)
	}
	m, err := dataset.NewMemory(x, labels, n, false, 0)
	if err != nil {
		panic(err)
	}
	return m
}

// batchList serves the given batches, which need not agree with each other,
// then err if it is not nil.
type batchList struct {
	batches []dataset.Batch
	err     error
}

func (l batchList) Len() int { return len(l.batches) }

func (l batchList) Batches(int) iter.Seq2[dataset.Batch, error] {
	return func(yield func(dataset.Batch, error) bool) {
		for _, b := range l.batches {
			if !yield(b, nil) {
				return
			}
		}
		if l.err != nil {
			yield(dataset.Batch{}, l.err)
		}
	}
}
