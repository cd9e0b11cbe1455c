package train

import (
	"context"
	"math"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/runtime"
	"gorgonia.org/tensor"
)

// The optimizer tests start from p = (0.5, -1.25, 2) and apply three steps
// with these gradients.
var (
	optStart = []float64{0.5, -1.25, 2.0}
	optGrads = [][]float64{{0.1, -0.2, 0.3}, {-0.4, 0.5, 0.05}, {0.25, 0, -0.6}}
)

// optCases hold the parameters after each step as torch.optim (1.13, in
// float64) computes them. The first elements, by hand:
//
//	sgd_momentum_dampening_wd (lr .1, momentum .9, dampening .3, wd .05):
//	  step 1: g = .1 + .05*.5 = .125, buf = g = .125 (first step: no dampening),
//	          p = .5 - .1*.125 = .4875
//	  step 2: g = -.4 + .05*.4875 = -.375625, buf = .9*.125 + .7*(-.375625) = -.1504375,
//	          p = .4875 + .01504375 = .50254375
//	sgd_nesterov_wd (lr .1, momentum .8, wd .1):
//	  step 1: g = .1 + .05 = .15, buf = .15, g = .15 + .8*.15 = .27, p = .5 - .027 = .473
//	adam (lr .01): step 1: m = .1*.1 = .01, v = .001*.01 = 1e-5, m̂ = .1, sqrt(v̂) = .1,
//	          p = .5 - .01 * .1/(.1 + 1e-8) = .490000001
//	adamw (lr .05, wd .1): step 1: p = .5*(1 - .005) = .4975, then the Adam step
//	          of .05 * .1/(.1 + 1e-8): p = .44750000499...
var optCases = []struct {
	name string
	make func() (Optimizer, error)
	want [][]float64
}{
	{"sgd", func() (Optimizer, error) { return NewSGD(SGDOptions{LR: 0.1}) }, [][]float64{
		{0.49, -1.23, 1.97},
		{0.53, -1.28, 1.965},
		{0.505, -1.28, 2.025},
	}},
	{"sgd_momentum_dampening_wd", func() (Optimizer, error) {
		return NewSGD(SGDOptions{LR: 0.1, Momentum: 0.9, Dampening: 0.3, WeightDecay: 0.05})
	}, [][]float64{
		{0.4875, -1.22375, 1.96},
		{0.50254375, -1.2308418749999999, 1.91364},
		{0.49682422187499997, -1.2329166159374998, 1.90721826},
	}},
	{"sgd_nesterov_wd", func() (Optimizer, error) {
		return NewSGD(SGDOptions{LR: 0.1, Momentum: 0.8, Nesterov: true, WeightDecay: 0.1})
	}, [][]float64{
		{0.473, -1.1915, 1.91},
		{0.526886, -1.239253, 1.83462},
		{0.48729485199999995, -1.2246808459999998, 1.86857284},
	}},
	{"sgd_maximize", func() (Optimizer, error) { return NewSGD(SGDOptions{LR: 0.1, Momentum: 0.5, Maximize: true}) }, [][]float64{
		{0.51, -1.27, 2.03},
		{0.475, -1.23, 2.05},
		{0.4825, -1.21, 1.9999999999999998},
	}},
	{"adam", func() (Optimizer, error) { return NewAdam(AdamOptions{LR: 0.01}) }, [][]float64{
		{0.4900000009999999, -1.2400000005, 1.9900000003333334},
		{0.4955950357485128, -1.2444221530217234, 1.9821667272150607},
		{0.4959793874663799, -1.2478404897175932, 1.9851302413110195},
	}},
	{"adam_wd_betas", func() (Optimizer, error) {
		return NewAdam(AdamOptions{LR: 0.05, Beta1: 0.8, Beta2: 0.9, Eps: 1e-3, WeightDecay: 0.1})
	}, [][]float64{
		{0.45033112582781454, -1.2001533742331287, 1.9500998003992016},
		{0.47377170177078487, -1.2095154081882282, 1.903960002114173},
		{0.4659318976720293, -1.2077659781721937, 1.8984634693850913},
	}},
	{"adam_amsgrad", func() (Optimizer, error) { return NewAdam(AdamOptions{LR: 0.05, AMSGrad: true}) }, [][]float64{
		{0.4500000049999995, -1.2000000025, 1.9500000016666665},
		{0.4779751787425642, -1.2221107651086165, 1.9108336360753029},
		{0.4798969373318994, -1.239193900608971, 1.9256512065550968},
	}},
	{"adamw", func() (Optimizer, error) { return NewAdamW(AdamOptions{LR: 0.05, WeightDecay: 0.1}) }, [][]float64{
		{0.44750000499999953, -1.1937500024999999, 1.9400000016666665},
		{0.4732376787175642, -1.2098920150961163, 1.8911336360669695},
		{0.47279324891331165, -1.2209342384999844, 1.8964955383664286},
	}},
}

func dense[T float32 | float64](v []float64) *tensor.Dense {
	d := make([]T, len(v))
	for i, x := range v {
		d[i] = T(x)
	}
	return tensor.New(tensor.WithShape(len(v)), tensor.WithBacking(d))
}

func values(d *tensor.Dense) []float64 {
	switch x := d.Data().(type) {
	case []float32:
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = float64(v)
		}
		return out
	case []float64:
		return append([]float64(nil), x...)
	}
	return nil
}

// runOpt applies the test gradients from step `from` to `to` (exclusive)
// to prm, in the parameter's element type.
func runOpt(t *testing.T, o Optimizer, prm *runtime.Param, from, to int) {
	t.Helper()
	for s := from; s < to; s++ {
		var g *tensor.Dense
		if prm.Value.Dtype() == tensor.Float32 {
			g = dense[float32](optGrads[s])
		} else {
			g = dense[float64](optGrads[s])
		}
		if err := o.Update([]*runtime.Param{prm}, map[string]*tensor.Dense{"w": g}, o.LR()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOptimizersMatchPyTorch(t *testing.T) {
	for _, c := range optCases {
		for _, f64 := range []bool{true, false} {
			o, err := c.make()
			if err != nil {
				t.Fatal(err)
			}
			prm := &runtime.Param{Name: "w", Shape: []int{3}, Value: dense[float32](optStart)}
			tol := 1e-6 // float32: relative
			if f64 {
				prm.Value = dense[float64](optStart)
				tol = 1e-14
			}
			for s := range optGrads {
				runOpt(t, o, prm, s, s+1)
				for i, got := range values(prm.Value) {
					want := c.want[s][i]
					if math.Abs(got-want) > tol*math.Max(1, math.Abs(want)) {
						t.Errorf("%s (float64 %v), step %d, element %d: %.17g, torch %.17g", c.name, f64, s+1, i, got, want)
					}
				}
			}
			if st := o.State().Params["w"]; st == nil || st.Step != 3 {
				t.Errorf("%s: state %+v, want 3 steps", c.name, st)
			}
		}
	}
}

// Saving the state after a step and loading it into a fresh optimizer
// continues exactly as the original does.
func TestOptimizerStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, c := range optCases {
		for _, f64 := range []bool{true, false} {
			mk := func() *runtime.Param {
				if f64 {
					return &runtime.Param{Name: "w", Shape: []int{3}, Value: dense[float64](optStart)}
				}
				return &runtime.Param{Name: "w", Shape: []int{3}, Value: dense[float32](optStart)}
			}
			a, _ := c.make()
			pa := mk()
			runOpt(t, a, pa, 0, 3)

			b, _ := c.make()
			pb := mk()
			runOpt(t, b, pb, 0, 1)
			path := filepath.Join(dir, c.name+".state")
			if err := SaveState(path, b); err != nil {
				t.Fatal(err)
			}
			b2, _ := c.make()
			if err := LoadState(path, b2); err != nil {
				t.Fatal(err)
			}
			runOpt(t, b2, pb, 1, 3)
			if got, want := values(pb.Value), values(pa.Value); !equalFloats(got, want) {
				t.Errorf("%s (float64 %v): resumed %v, uninterrupted %v", c.name, f64, got, want)
			}
		}
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOptimizerErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		msg  string
	}{
		{"nesterov without momentum", second(NewSGD(SGDOptions{LR: 1, Nesterov: true})), "sgd: Nesterov momentum requires a momentum and zero dampening"},
		{"negative lr", second(NewSGD(SGDOptions{LR: -1})), "sgd: the learning rate is -1, want a finite number of at least 0"},
		{"NaN lr", second(NewSGD(SGDOptions{LR: nan})), "sgd: the learning rate is NaN, want a finite number of at least 0"},
		{"infinite lr", second(NewAdam(AdamOptions{LR: inf})), "adam: the learning rate is +Inf, want a finite number of at least 0"},
		{"NaN momentum", second(NewSGD(SGDOptions{LR: 1, Momentum: nan})), "sgd: the momentum is NaN, want a finite number of at least 0"},
		{"negative momentum", second(NewSGD(SGDOptions{LR: 1, Momentum: -0.9})), "sgd: the momentum is -0.9, want a finite number of at least 0"},
		{"NaN dampening", second(NewSGD(SGDOptions{LR: 1, Dampening: nan})), "sgd: the dampening is NaN, want a finite number of at least 0"},
		{"NaN weight decay", second(NewSGD(SGDOptions{LR: 1, WeightDecay: nan})), "sgd: the weight decay is NaN, want a finite number of at least 0"},
		{"infinite weight decay", second(NewAdam(AdamOptions{LR: 1, WeightDecay: inf})), "adam: the weight decay is +Inf, want a finite number of at least 0"},
		{"adamw wd", second(NewAdamW(AdamOptions{LR: 1, WeightDecay: -1})), "adamw: the weight decay is -1, want a finite number of at least 0"},
		{"NaN eps", second(NewAdamW(AdamOptions{LR: 1, Eps: nan})), "adamw: the eps is NaN, want a finite number of at least 0"},
		{"beta", second(NewAdam(AdamOptions{LR: 1, Beta1: 1, Beta2: 0.9})), "adam: beta1 is 1, want a number in [0, 1)"},
		{"NaN beta2", second(NewAdam(AdamOptions{LR: 1, Beta1: 0.9, Beta2: nan})), "adam: beta2 is NaN, want a number in [0, 1)"},
	} {
		if c.err == nil || c.err.Error() != c.msg {
			t.Errorf("%s: error %v, want %s", c.name, c.err, c.msg)
		}
	}

	sgd, _ := NewSGD(SGDOptions{LR: 0.1, Momentum: 0.9})
	prm := &runtime.Param{Name: "w", Shape: []int{3}, Value: dense[float32](optStart)}
	err := sgd.Update([]*runtime.Param{prm}, map[string]*tensor.Dense{"w": dense[float64](optStart)}, 0.1)
	if err == nil || !strings.Contains(err.Error(), `parameter "w"`) {
		t.Errorf("a float64 gradient for a float32 parameter: %v", err)
	}
	// No gradient: the parameter is skipped.
	if err := sgd.Update([]*runtime.Param{prm}, nil, 0.1); err != nil || !equalFloats(values(prm.Value), []float64{0.5, -1.25, 2}) {
		t.Errorf("a parameter without gradient changed (%v)", err)
	}

	path := filepath.Join(t.TempDir(), "sgd.state")
	runOpt(t, sgd, prm, 0, 1)
	if err := SaveState(path, sgd); err != nil {
		t.Fatal(err)
	}
	adam, _ := NewAdam(AdamOptions{LR: 0.1})
	if err := LoadState(path, adam); err == nil || !strings.Contains(err.Error(), "for sgd, not adam") {
		t.Errorf("loading SGD state into Adam: %v", err)
	}
	if err := LoadState(filepath.Join(t.TempDir(), "none"), adam); err == nil {
		t.Error("loading a missing file succeeded")
	}
	// State for a parameter of another size is reported by the next update.
	sgd2, _ := NewSGD(SGDOptions{LR: 0.1, Momentum: 0.9})
	if err := LoadState(path, sgd2); err != nil {
		t.Fatal(err)
	}
	big := &runtime.Param{Name: "w", Shape: []int{4}, Value: dense[float32](make([]float64, 4))}
	err = sgd2.Update([]*runtime.Param{big}, map[string]*tensor.Dense{"w": dense[float32](make([]float64, 4))}, 0.1)
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("state of the wrong size: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

var nan, inf = math.NaN(), math.Inf(1)

// Schedules that would give NaN, infinite or negative rates are refused
// before training, naming the setting.
func TestScheduleChecks(t *testing.T) {
	for _, c := range []struct {
		s   Schedule
		err string
	}{
		{StepLR{StepSize: 3, Gamma: nan}, "step schedule: gamma is NaN, want a finite number of at least 0"},
		{StepLR{StepSize: 3, Gamma: -0.5}, "step schedule: gamma is -0.5, want a finite number of at least 0"},
		{StepLR{StepSize: 0, Gamma: 0.5}, "step schedule: the step size is 0, want at least 1 epoch"},
		{CosineAnnealingLR{TMax: 5, EtaMin: inf}, "cosine schedule: the minimum rate is +Inf, want a finite number of at least 0"},
		{CosineAnnealingLR{TMax: 0}, "cosine schedule: TMax is 0, want at least 1 epoch"},
		{negative{}, "schedule train.negative{} gives epoch 3 the learning rate -0.1"},
	} {
		if err := checkSchedule(c.s, 0.1, 0, 5); err == nil || err.Error() != c.err {
			t.Errorf("%+v: %v, want %s", c.s, err, c.err)
		}
	}
	if err := checkSchedule(StepLR{StepSize: 2, Gamma: 0.1}, 0.1, 0, 5); err != nil {
		t.Error(err)
	}
	// Fit refuses before the first step.
	x, labels := clusters(12, 1)
	opt, _ := NewSGD(SGDOptions{LR: 0.1})
	steps := 0
	_, err := Fit(context.Background(), compile(t, mlp(t, 1, false)), memory(t, x, labels, 4, false, 0), nil, Config{
		Epochs: 4, Optimizer: opt, Params: mlpParams, Schedule: StepLR{StepSize: 2, Gamma: nan},
		OnBatch: func(BatchStats) { steps++ }})
	if want := "fit: step schedule: gamma is NaN, want a finite number of at least 0"; err == nil || err.Error() != want || steps != 0 {
		t.Errorf("Fit with a NaN gamma: %v after %d steps, want %s before any", err, steps, want)
	}
}

// negative turns the rate negative from epoch 3.
type negative struct{}

func (negative) LR(base float64, epoch int) float64 {
	if epoch >= 2 {
		return -base
	}
	return base
}

func TestSchedules(t *testing.T) {
	// torch.optim.lr_scheduler with lr 0.1, stepped after each epoch.
	for _, c := range []struct {
		s    Schedule
		want []float64
	}{
		{Constant{}, []float64{0.1, 0.1, 0.1, 0.1}},
		{StepLR{StepSize: 3, Gamma: 0.5}, []float64{0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125}},
		{CosineAnnealingLR{TMax: 4, EtaMin: 0.001}, []float64{0.1, 0.0855017856687341, 0.0505, 0.0154982143312659,
			0.001, 0.015498214331265896, 0.05050000000000001, 0.08550178566873413, 0.10000000000000003, 0.08550178566873413}},
	} {
		for e, want := range c.want {
			if got := c.s.LR(0.1, e); math.Abs(got-want) > 1e-15 {
				t.Errorf("%T%+v epoch %d: lr %.17g, torch %.17g", c.s, c.s, e, got, want)
			}
		}
	}
}

// The vectorised SGD step with momentum (sgdMomentumF32) rounds as the
// loop does: parameters and momentum buffers equal to the bit after
// several steps, with and without weight decay, on odd lengths.
func TestSGDVectorMatchesLoop(t *testing.T) {
	if sgdMomentumF32 == nil {
		t.Skip("no vector loop on this machine")
	}
	r := rand.New(rand.NewSource(15))
	for _, wd := range []float64{0, 1e-4} {
		for _, n := range []int{1, 7, 8, 9, 63, 100} {
			o := SGDOptions{LR: 0.1, Momentum: 0.9, Dampening: 0.1, WeightDecay: wd}
			p0 := make([]float32, n)
			for i := range p0 {
				p0[i] = float32(r.NormFloat64())
			}
			var ps [2][]float32
			var bufs [2][]float32
			for k, vec := range []bool{true, false} {
				saved := sgdMomentumF32
				if !vec {
					sgdMomentumF32 = nil
				}
				st := &ParamState{Buffers: map[string]any{}}
				p := slices.Clone(p0)
				rr := rand.New(rand.NewSource(16))
				for step := 0; step < 4; step++ {
					g := make([]float32, n)
					for i := range g {
						g[i] = float32(rr.NormFloat64())
					}
					sgdStep(o, st, p, g, float32(0.05))
				}
				sgdMomentumF32 = saved
				ps[k], bufs[k] = p, st.Buffers["momentum_buffer"].([]float32)
			}
			for i := range ps[0] {
				if math.Float32bits(ps[0][i]) != math.Float32bits(ps[1][i]) || math.Float32bits(bufs[0][i]) != math.Float32bits(bufs[1][i]) {
					t.Fatalf("wd %v n %d: element %d: vector %v/%v, loop %v/%v", wd, n, i, ps[0][i], bufs[0][i], ps[1][i], bufs[1][i])
				}
			}
		}
	}
}
