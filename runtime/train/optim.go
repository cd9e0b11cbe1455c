package train

import (
	"fmt"
	"math"
	"sort"

	"github.com/graft-dev/graft/runtime"
	"gorgonia.org/tensor"
)

// An Optimizer updates parameters in place from their gradients, with
// PyTorch's update rules (torch.optim). It keeps per-parameter state
// (momentum and moment buffers, step counts), keyed by parameter name, which
// State and SetState export and restore for resuming.
type Optimizer interface {
	// Update applies one step at learning rate lr to each parameter that
	// has a gradient in grads (by name); parameters without one are left
	// alone, as torch skips parameters whose .grad is None. Gradients must
	// have the parameter's shape and element type.
	Update(params []*runtime.Param, grads map[string]*tensor.Dense, lr float64) error
	// LR is the base learning rate, which a Schedule scales.
	LR() float64
	// State returns a copy of the optimizer's state.
	State() *State
	// SetState replaces the optimizer's state with a copy of s. It fails if
	// s belongs to another kind of optimizer.
	SetState(s *State) error
}

// SGDOptions are torch.optim.SGD's arguments.
type SGDOptions struct {
	LR          float64
	Momentum    float64
	Dampening   float64
	WeightDecay float64 // L2 penalty, added to the gradient
	Nesterov    bool
	Maximize    bool
}

// SGD is stochastic gradient descent as torch.optim.SGD computes it:
//
//	g = grad + weight_decay * p
//	buf = g                                  (first step)
//	buf = momentum * buf + (1 - dampening) * g   (later steps)
//	g = g + momentum * buf   if nesterov, else g = buf     (when momentum != 0)
//	p = p - lr * g
type SGD struct {
	opts  SGDOptions
	state *State
}

// NewSGD returns an SGD optimizer. The options must be finite and not
// negative; Nesterov momentum needs a momentum and no dampening.
func NewSGD(o SGDOptions) (*SGD, error) {
	if err := checkOptions("sgd", option{"learning rate", o.LR}, option{"momentum", o.Momentum},
		option{"dampening", o.Dampening}, option{"weight decay", o.WeightDecay}); err != nil {
		return nil, err
	}
	if o.Nesterov && (o.Momentum <= 0 || o.Dampening != 0) {
		return nil, fmt.Errorf("sgd: Nesterov momentum requires a momentum and zero dampening")
	}
	return &SGD{opts: o, state: newState("sgd")}, nil
}

// LR returns the base learning rate.
func (o *SGD) LR() float64 { return o.opts.LR }

// Update applies one SGD step.
func (o *SGD) Update(params []*runtime.Param, grads map[string]*tensor.Dense, lr float64) error {
	return eachParam(o.state, params, grads, func(ps *ParamState, p, g any) error {
		ps.Step++
		switch p := p.(type) {
		case []float32:
			sgdStep(o.opts, ps, p, g.([]float32), float32(lr))
		case []float64:
			sgdStep(o.opts, ps, p, g.([]float64), lr)
		}
		return nil
	})
}

// sgdMomentumF32, when set (sgd_amd64.go), is sgdStep's loop for float32
// with an existing momentum buffer, not maximizing, not Nesterov, over
// the whole groups of 8 of p.
var sgdMomentumF32 func(p, grad, buf []float32, wd, mom, damp1, lr float32)

func sgdStep[T float32 | float64](o SGDOptions, ps *ParamState, p, grad []T, lr T) {
	wd, mom, damp := T(o.WeightDecay), T(o.Momentum), T(o.Dampening)
	var buf []T
	first := false
	if o.Momentum != 0 {
		if b, ok := ps.Buffers["momentum_buffer"]; ok {
			buf = b.([]T)
		} else {
			buf = make([]T, len(p))
			ps.Buffers["momentum_buffer"] = buf
			first = true
		}
	}
	i0 := 0
	if p32, ok := any(p).([]float32); ok && buf != nil && !first && !o.Maximize && !o.Nesterov && sgdMomentumF32 != nil {
		// The common step, 8 parameters at a time, rounded the same.
		sgdMomentumF32(p32, any(grad).([]float32), any(buf).([]float32), float32(wd), float32(mom), float32(T(1-damp)), float32(lr))
		i0 = len(p) &^ 7
	}
	for i := i0; i < len(p); i++ {
		g := grad[i]
		if o.Maximize {
			g = -g
		}
		if wd != 0 {
			g = T(g + T(wd*p[i]))
		}
		if buf != nil {
			if first {
				buf[i] = g
			} else {
				buf[i] = T(T(buf[i]*mom) + T(T(1-damp)*g))
			}
			if o.Nesterov {
				g = T(g + T(mom*buf[i]))
			} else {
				g = buf[i]
			}
		}
		p[i] = T(p[i] - T(lr*g))
	}
}

// State returns a copy of the momentum buffers and step counts.
func (o *SGD) State() *State { return o.state.clone() }

// SetState restores state saved from an SGD optimizer.
func (o *SGD) SetState(s *State) error { return setState(&o.state, s, "sgd") }

// AdamOptions are torch.optim.Adam's and AdamW's arguments. Zero Beta1,
// Beta2 and Eps mean torch's defaults (0.9, 0.999, 1e-8).
type AdamOptions struct {
	LR           float64
	Beta1, Beta2 float64
	Eps          float64
	WeightDecay  float64
	AMSGrad      bool
	Maximize     bool
}

// Adam is torch.optim.Adam, or with decoupled weight decay
// torch.optim.AdamW:
//
//	g = grad + weight_decay * p        (Adam: L2 penalty)
//	p = p * (1 - lr * weight_decay)    (AdamW, instead)
//	m = beta1 * m + (1 - beta1) * g
//	v = beta2 * v + (1 - beta2) * g²
//	v̂ = max(v̂, v) if amsgrad, else v
//	p = p - lr / (1 - beta1^t) * m / (sqrt(v̂) / sqrt(1 - beta2^t) + eps)
type Adam struct {
	opts      AdamOptions
	decoupled bool
	state     *State
}

// NewAdam returns torch.optim.Adam's rule. The learning rate, eps and
// weight decay must be finite and not negative, the betas in [0, 1).
func NewAdam(o AdamOptions) (*Adam, error) { return newAdam(o, false) }

// NewAdamW returns torch.optim.AdamW's rule: weight decay shrinks the
// parameters directly instead of joining the gradient. (torch's default
// weight decay for AdamW is 0.01; here it is whatever o says.)
func NewAdamW(o AdamOptions) (*Adam, error) { return newAdam(o, true) }

func newAdam(o AdamOptions, decoupled bool) (*Adam, error) {
	if o.Beta1 == 0 && o.Beta2 == 0 {
		o.Beta1, o.Beta2 = 0.9, 0.999
	}
	if o.Eps == 0 {
		o.Eps = 1e-8
	}
	name := adamKind(decoupled)
	if err := checkOptions(name, option{"learning rate", o.LR}, option{"eps", o.Eps}, option{"weight decay", o.WeightDecay}); err != nil {
		return nil, err
	}
	for _, b := range []option{{"beta1", o.Beta1}, {"beta2", o.Beta2}} {
		if !(b.value >= 0 && b.value < 1) {
			return nil, fmt.Errorf("%s: %s is %v, want a number in [0, 1)", name, b.name, b.value)
		}
	}
	return &Adam{opts: o, decoupled: decoupled, state: newState(name)}, nil
}

// An option is a named optimizer setting, for checkOptions.
type option struct {
	name  string
	value float64
}

// checkOptions refuses NaN, infinite and negative settings, naming the
// first: a NaN momentum would otherwise surface epochs later as a NaN loss.
func checkOptions(optimizer string, opts ...option) error {
	for _, o := range opts {
		if !(o.value >= 0 && !math.IsInf(o.value, 1)) {
			return fmt.Errorf("%s: the %s is %v, want a finite number of at least 0", optimizer, o.name, o.value)
		}
	}
	return nil
}

func adamKind(decoupled bool) string {
	if decoupled {
		return "adamw"
	}
	return "adam"
}

// LR returns the base learning rate.
func (o *Adam) LR() float64 { return o.opts.LR }

// Update applies one Adam (or AdamW) step.
func (o *Adam) Update(params []*runtime.Param, grads map[string]*tensor.Dense, lr float64) error {
	return eachParam(o.state, params, grads, func(ps *ParamState, p, g any) error {
		ps.Step++
		switch p := p.(type) {
		case []float32:
			adamStep(o.opts, o.decoupled, ps, p, g.([]float32), lr)
		case []float64:
			adamStep(o.opts, o.decoupled, ps, p, g.([]float64), lr)
		}
		return nil
	})
}

func adamStep[T float32 | float64](o AdamOptions, decoupled bool, ps *ParamState, p, grad []T, lr float64) {
	buffer := func(name string) []T {
		if b, ok := ps.Buffers[name]; ok {
			return b.([]T)
		}
		b := make([]T, len(p))
		ps.Buffers[name] = b
		return b
	}
	m, v := buffer("exp_avg"), buffer("exp_avg_sq")
	var vmax []T
	if o.AMSGrad {
		vmax = buffer("max_exp_avg_sq")
	}
	t := float64(ps.Step)
	// torch computes these scalars in Python floats (float64).
	bc1 := 1 - math.Pow(o.Beta1, t)
	bc2sqrt := T(math.Sqrt(1 - math.Pow(o.Beta2, t)))
	stepSize := T(lr / bc1)
	b1, b2, eps := T(o.Beta1), T(o.Beta2), T(o.Eps)
	wd := T(o.WeightDecay)
	shrink := T(1 - lr*o.WeightDecay)
	for i := range p {
		g := grad[i]
		if o.Maximize {
			g = -g
		}
		if decoupled {
			p[i] = T(p[i] * shrink)
		} else if wd != 0 {
			g = T(g + T(wd*p[i]))
		}
		m[i] = T(T(m[i]*b1) + T(T(1-b1)*g))
		v[i] = T(T(v[i]*b2) + T(T(T(1-b2)*g)*g))
		vv := v[i]
		if vmax != nil {
			vmax[i] = max(vmax[i], v[i])
			vv = vmax[i]
		}
		denom := T(T(sqrt(vv)/bc2sqrt) + eps)
		p[i] = T(p[i] - T(stepSize*T(m[i]/denom)))
	}
}

func sqrt[T float32 | float64](x T) T { return T(math.Sqrt(float64(x))) }

// State returns a copy of the moment buffers and step counts.
func (o *Adam) State() *State { return o.state.clone() }

// SetState restores state saved from the same kind of optimizer (Adam or
// AdamW).
func (o *Adam) SetState(s *State) error { return setState(&o.state, s, adamKind(o.decoupled)) }

// eachParam calls f, in parameter order, with each parameter that has a
// gradient, its state, and the two backing slices, checked to agree.
func eachParam(st *State, params []*runtime.Param, grads map[string]*tensor.Dense, f func(ps *ParamState, p, g any) error) error {
	for _, prm := range params {
		g, ok := grads[prm.Name]
		if !ok || g == nil {
			continue
		}
		pd, gd := prm.Value.Data(), g.Data()
		switch pd.(type) {
		case []float32, []float64:
		default:
			return fmt.Errorf("parameter %q holds %T, not float32 or float64", prm.Name, pd)
		}
		if fmt.Sprintf("%T", pd) != fmt.Sprintf("%T", gd) || prm.Value.Shape().TotalSize() != g.Shape().TotalSize() {
			return fmt.Errorf("parameter %q is %v %v but its gradient is %v %v", prm.Name, prm.Value.Dtype(), prm.Value.Shape(), g.Dtype(), g.Shape())
		}
		ps := st.Params[prm.Name]
		if ps == nil {
			ps = &ParamState{Buffers: map[string]any{}}
			st.Params[prm.Name] = ps
		} else if err := ps.check(prm.Name, pd); err != nil {
			return err
		}
		if err := f(ps, pd, gd); err != nil {
			return err
		}
	}
	return nil
}

// State is an optimizer's state: for each parameter, its step count and
// buffers named as in torch's state_dict ("momentum_buffer", "exp_avg",
// "exp_avg_sq", "max_exp_avg_sq"). A buffer is a []float32 or []float64
// with the parameter's element type and size.
type State struct {
	Optimizer string // "sgd", "adam" or "adamw"
	Params    map[string]*ParamState
}

// ParamState is one parameter's optimizer state.
type ParamState struct {
	Step    int64
	Buffers map[string]any
}

func newState(kind string) *State { return &State{Optimizer: kind, Params: map[string]*ParamState{}} }

func (s *State) clone() *State {
	c := newState(s.Optimizer)
	for name, ps := range s.Params {
		cp := &ParamState{Step: ps.Step, Buffers: map[string]any{}}
		for k, b := range ps.Buffers {
			switch b := b.(type) {
			case []float32:
				cp.Buffers[k] = append([]float32(nil), b...)
			case []float64:
				cp.Buffers[k] = append([]float64(nil), b...)
			}
		}
		c.Params[name] = cp
	}
	return c
}

// Names returns the parameters the state covers, sorted.
func (s *State) Names() []string {
	var names []string
	for n := range s.Params {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// check verifies that the buffers fit a parameter with backing slice pd.
func (ps *ParamState) check(name string, pd any) error {
	for k, b := range ps.Buffers {
		ok := false
		switch p := pd.(type) {
		case []float32:
			bb, is := b.([]float32)
			ok = is && len(bb) == len(p)
		case []float64:
			bb, is := b.([]float64)
			ok = is && len(bb) == len(p)
		}
		if !ok {
			return fmt.Errorf("optimizer state: buffer %s of parameter %q does not match the parameter's type and size", k, name)
		}
	}
	return nil
}

func setState(dst **State, s *State, kind string) error {
	if s == nil {
		*dst = newState(kind)
		return nil
	}
	if s.Optimizer != kind {
		return fmt.Errorf("optimizer state is for %s, not %s", s.Optimizer, kind)
	}
	for name, ps := range s.Params {
		for k, b := range ps.Buffers {
			switch b.(type) {
			case []float32, []float64:
			default:
				return fmt.Errorf("optimizer state: buffer %s of parameter %q holds %T", k, name, b)
			}
		}
	}
	c := s.clone()
	if c.Params == nil {
		c.Params = map[string]*ParamState{}
	}
	*dst = c
	return nil
}
