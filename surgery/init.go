package surgery

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/onnx"
)

// An Init draws a parameter's initial values. fanIn and fanOut are
// computed from the layer as PyTorch does (for a Conv weight [out, in/g,
// k...]: in/g * prod(k) and out * prod(k)).
type Init interface {
	Draw(rng *rand.Rand, n int, fanIn, fanOut int) []float32
	String() string
}

// Normal draws from N(Mean, Std²).
type Normal struct{ Mean, Std float64 }

// Uniform draws from U(Low, High).
type Uniform struct{ Low, High float64 }

// Constant sets every value to Value.
type Constant struct{ Value float64 }

// XavierUniform is Glorot's U(±gain·sqrt(6/(fanIn+fanOut))); Gain 0 means 1.
type XavierUniform struct{ Gain float64 }

// XavierNormal is Glorot's N(0, gain²·2/(fanIn+fanOut)); Gain 0 means 1.
type XavierNormal struct{ Gain float64 }

// FanMode picks the fan Kaiming initialisation scales by.
type FanMode int

// Fan modes.
const (
	FanIn FanMode = iota
	FanOut
)

// KaimingUniform is He's U(±gain·sqrt(3/fan)) with gain sqrt(2/(1+A²)),
// the leaky-ReLU gain (A = 0 for ReLU).
type KaimingUniform struct {
	A    float64
	Mode FanMode
}

// KaimingNormal is He's N(0, gain²/fan), gain as for KaimingUniform.
type KaimingNormal struct {
	A    float64
	Mode FanMode
}

// LinearDefault is PyTorch's default for nn.Linear and nn.Conv weights and
// biases: U(±1/sqrt(fanIn)).
type LinearDefault struct{}

func fill(n int, f func() float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(f())
	}
	return v
}

func gainOr1(g float64) float64 {
	if g == 0 {
		return 1
	}
	return g
}

func (i Normal) Draw(rng *rand.Rand, n, _, _ int) []float32 {
	return fill(n, func() float64 { return i.Mean + i.Std*rng.NormFloat64() })
}
func (i Uniform) Draw(rng *rand.Rand, n, _, _ int) []float32 {
	return fill(n, func() float64 { return i.Low + (i.High-i.Low)*rng.Float64() })
}
func (i Constant) Draw(_ *rand.Rand, n, _, _ int) []float32 {
	return fill(n, func() float64 { return i.Value })
}
func (i XavierUniform) Draw(rng *rand.Rand, n, fi, fo int) []float32 {
	b := gainOr1(i.Gain) * math.Sqrt(6/float64(fi+fo))
	return Uniform{-b, b}.Draw(rng, n, fi, fo)
}
func (i XavierNormal) Draw(rng *rand.Rand, n, fi, fo int) []float32 {
	return Normal{0, gainOr1(i.Gain) * math.Sqrt(2/float64(fi+fo))}.Draw(rng, n, fi, fo)
}
func kaimingStd(a float64, mode FanMode, fi, fo int) float64 {
	fan := fi
	if mode == FanOut {
		fan = fo
	}
	return math.Sqrt(2/(1+a*a)) / math.Sqrt(float64(fan))
}
func (i KaimingUniform) Draw(rng *rand.Rand, n, fi, fo int) []float32 {
	b := math.Sqrt(3) * kaimingStd(i.A, i.Mode, fi, fo)
	return Uniform{-b, b}.Draw(rng, n, fi, fo)
}
func (i KaimingNormal) Draw(rng *rand.Rand, n, fi, fo int) []float32 {
	return Normal{0, kaimingStd(i.A, i.Mode, fi, fo)}.Draw(rng, n, fi, fo)
}
func (i LinearDefault) Draw(rng *rand.Rand, n, fi, fo int) []float32 {
	b := 1 / math.Sqrt(float64(fi))
	return Uniform{-b, b}.Draw(rng, n, fi, fo)
}

func (i Normal) String() string   { return fmt.Sprintf("normal(%g, %g)", i.Mean, i.Std) }
func (i Uniform) String() string  { return fmt.Sprintf("uniform(%g, %g)", i.Low, i.High) }
func (i Constant) String() string { return fmt.Sprintf("constant(%g)", i.Value) }
func (i XavierUniform) String() string {
	return fmt.Sprintf("xavier_uniform(gain %g)", gainOr1(i.Gain))
}
func (i XavierNormal) String() string { return fmt.Sprintf("xavier_normal(gain %g)", gainOr1(i.Gain)) }
func (i KaimingUniform) String() string {
	return fmt.Sprintf("kaiming_uniform(a %g, mode %d)", i.A, i.Mode)
}
func (i KaimingNormal) String() string {
	return fmt.Sprintf("kaiming_normal(a %g, mode %d)", i.A, i.Mode)
}
func (i LinearDefault) String() string { return "pytorch_default" }

// A Rule initialises the parameters with one role in nodes of one op type.
// An empty Op or Role matches any.
type Rule struct {
	Op   string
	Role Role
	Init Init
}

// DCGAN is the initialisation of the DCGAN paper as PyTorch's tutorial does
// it: Conv and ConvTranspose weights N(0, 0.02), BatchNormalization scale
// N(1, 0.02) and bias 0.
func DCGAN() []Rule {
	return []Rule{
		{Op: "Conv", Role: Weight, Init: Normal{0, 0.02}},
		{Op: "ConvTranspose", Role: Weight, Init: Normal{0, 0.02}},
		{Op: "BatchNormalization", Role: Scale, Init: Normal{1, 0.02}},
		{Op: "BatchNormalization", Role: Bias, Init: Constant{0}},
	}
}

// Initialize returns an edit that redraws the selected parameters by the
// first rule matching each, in model order from one generator seeded with
// seed, so the result is reproducible. It fails if no parameter matches,
// or if a rule draws a NaN or infinite value.
func Initialize(rules []Rule, sel Selector, seed int64) Edit {
	return func(m *onnx.Model) error {
		rng := rand.New(rand.NewSource(seed))
		done := 0
		for _, p := range Params(m) {
			if p.IsBuffer() || sel != nil && !sel(p) {
				continue
			}
			for _, r := range rules {
				if (r.Op == "" || r.Op == p.Op) && (r.Role == "" || r.Role == p.Role) {
					t := p.Value.Const
					if t.DType != onnx.Float {
						return fmt.Errorf("initialise %q: only float32 parameters can be initialised, it is %s", p.Name, t.DType)
					}
					fi, fo := fans(p)
					v := r.Init.Draw(rng, int(t.NumElements()), fi, fo)
					for i, x := range v {
						if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
							return fmt.Errorf("initialise %q: %v draws %v (element %d)", p.Name, r.Init, x, i)
						}
					}
					nt, err := onnx.FromFloat32(t.Name, t.Dims, v)
					if err == nil {
						// The tensor keeps its doc string, storage and unknown fields.
						err = t.SetRaw(nt.Raw())
					}
					if err != nil {
						return fmt.Errorf("initialise %q: %w", p.Name, err)
					}
					done++
					break
				}
			}
		}
		if done == 0 {
			return fmt.Errorf("initialise: no parameter matches the rules and selection")
		}
		return nil
	}
}

// fans computes PyTorch's fan_in and fan_out for a parameter. A bias takes
// the fans of its layer's weight.
func fans(p Param) (fanIn, fanOut int) {
	dims := p.Value.Const.Dims
	if p.Role == Bias && p.Node != nil && p.Node.Input(1) != nil && p.Node.Input(1).Const != nil {
		dims = p.Node.Input(1).Const.Dims
		if p.Node.OpType == "Add" { // MatMul + Add head: the MatMul's weight
			for _, x := range p.Node.Inputs {
				if x != nil && x.Producer() != nil && x.Producer().OpType == "MatMul" && x.Producer().Input(1).Const != nil {
					w := x.Producer().Input(1).Const.Dims
					return int(w[0]), int(w[1])
				}
			}
		}
	}
	switch {
	case len(dims) == 0:
		return 1, 1
	case len(dims) == 1:
		return int(dims[0]), int(dims[0])
	}
	recept := 1
	for _, d := range dims[2:] {
		recept *= int(d)
	}
	in, out := int(dims[1])*recept, int(dims[0])*recept
	switch {
	case p.Op == "MatMul" && p.Role == Weight: // [in, out]
		in, out = int(dims[0]), int(dims[1])
	case p.Op == "Gemm" && p.Role == Weight && p.Node.AttrInt("transB", 0) == 0: // [in, out]
		in, out = int(dims[0]), int(dims[1])
	}
	return in, out
}

// ParseInit reads the command line's --init syntax: "dcgan", "pytorch",
// "xavier", "kaiming", "normal:MEAN,STD", "uniform:LO,HI", "constant:V".
// Numbers must be finite, a standard deviation not negative, and LO not
// above HI.
func ParseInit(s string) ([]Rule, error) {
	name, args, _ := strings.Cut(s, ":")
	params := map[string][]string{"normal": {"mean", "std"}, "uniform": {"low", "high"}, "constant": {"value"}}[name]
	var nums []float64
	if args != "" {
		for i, a := range strings.Split(args, ",") {
			f, err := strconv.ParseFloat(strings.TrimSpace(a), 64)
			if errors.Is(err, strconv.ErrRange) {
				return nil, fmt.Errorf("--init %q: %q is out of range", s, a)
			}
			if err != nil {
				return nil, fmt.Errorf("--init %q: %q is not a number", s, a)
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				what := "a number"
				if i < len(params) {
					what = "the " + params[i]
				}
				return nil, fmt.Errorf("--init %q: %s is %v, want a finite number", s, what, f)
			}
			nums = append(nums, f)
		}
	}
	need := func(n int) error {
		if len(nums) != n {
			return fmt.Errorf("--init %q: %s takes %d numbers", s, name, n)
		}
		return nil
	}
	switch name {
	case "dcgan":
		return DCGAN(), need(0)
	case "pytorch":
		return []Rule{{Init: LinearDefault{}}}, need(0)
	case "xavier":
		return []Rule{{Role: Weight, Init: XavierUniform{}}, {Role: Bias, Init: Constant{0}}}, need(0)
	case "kaiming":
		return []Rule{{Role: Weight, Init: KaimingNormal{Mode: FanOut}}, {Role: Bias, Init: Constant{0}}}, need(0)
	case "normal":
		if err := need(2); err != nil {
			return nil, err
		}
		if nums[1] < 0 {
			return nil, fmt.Errorf("--init %q: the std is %v, want one of at least 0", s, nums[1])
		}
		return []Rule{{Init: Normal{nums[0], nums[1]}}}, nil
	case "uniform":
		if err := need(2); err != nil {
			return nil, err
		}
		if nums[0] > nums[1] {
			return nil, fmt.Errorf("--init %q: the low end %v is above the high end %v", s, nums[0], nums[1])
		}
		return []Rule{{Init: Uniform{nums[0], nums[1]}}}, nil
	case "constant":
		if err := need(1); err != nil {
			return nil, err
		}
		return []Rule{{Init: Constant{nums[0]}}}, nil
	}
	return nil, fmt.Errorf("--init %q: unknown rule (dcgan, pytorch, xavier, kaiming, normal:M,S, uniform:L,H, constant:V)", s)
}
