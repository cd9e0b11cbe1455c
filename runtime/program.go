package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"sort"
	"strings"
	"unsafe"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/onnx"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Options control how a model is compiled.
type Options struct {
	// Float64 computes in float64 instead of float32: slower, for checking
	// gradients against finite differences.
	Float64 bool
	// Seed seeds the random masks of Dropout in training mode.
	Seed int64
	// FixedWeights promises that the parameters will not change: nothing
	// writes into a Param's Value after the program is compiled. Kernels
	// may then transform the weights once and keep the result: 3x3
	// convolutions keep Winograd's transformed weights (which every
	// program uses, with different float32 rounding: see the README's
	// Speed section for how much on ResNet-18), and an inference-form
	// BatchNormalization folds into the convolution before it. Steps that
	// train or ask for parameter gradients are refused. Inference and
	// attacks on a fixed model (graft run, graft robustness) use it;
	// training must not. The parameters then share the model's float32
	// data instead of copying it (on little-endian machines), so the
	// weights are held once.
	FixedWeights bool
}

// A Param is one float initializer of the model: a weight, a bias, or a
// BatchNormalization running statistic. Its Value is live: the graphs read
// it on every run, so an optimizer updates it in place.
type Param struct {
	Name  string
	Shape []int
	Value *tensor.Dense
	// shared marks a Value whose memory is the model tensor's own (see
	// Options.FixedWeights).
	shared bool
}

// A Program is a model compiled for the runtime. It builds one Gorgonia graph
// per input shape and request, on first use, and reuses it. A Program is not
// safe for concurrent use.
type Program struct {
	model  *onnx.Model
	opts   Options
	inputs []*onnx.Value // the graph inputs a caller feeds
	params []*Param
	byName map[string]*Param
	ints   map[*onnx.Value][]int64 // integer and boolean initializers
	rng    *rand.Rand
	cache  map[string]session
	// retained is the estimated memory the cached sessions keep between
	// runs (their activations, gradients and scratch buffers).
	retained int64
	// replica marks a program made by Replica: its training steps leave
	// BatchNormalization's running statistics to the original's.
	replica bool
	// work32 and work64 are the kernels' shared buffers.
	work32 *workspace[float32]
	work64 *workspace[float64]
}

// float32View returns little-endian float32 bytes as []float32 without a
// copy, where the machine is little-endian and the bytes 4-aligned.
func float32View(raw []byte) ([]float32, bool) {
	if len(raw) < 4 || len(raw)%4 != 0 || uintptr(unsafe.Pointer(&raw[0]))%4 != 0 || !littleEndian {
		return nil, false
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&raw[0])), len(raw)/4), true
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Replica returns a program over the same model that shares p's
// parameters: the same tensors, so an update through either is seen by
// both, and no copy of the weights is made. Its training steps use
// BatchNormalization's batch statistics but leave the shared running
// statistics alone: as in PyTorch's nn.DataParallel, only the original's
// (the first replica's) update them. Several goroutines may step p and its
// replicas at once, each on its own program, as long as nothing updates
// the shared parameters meanwhile; Dropout in replica i draws from
// Options.Seed+i. Each replica keeps its own compiled graphs.
func (p *Program) Replica(i int) *Program {
	r := *p
	r.replica = true
	r.rng = rand.New(rand.NewSource(p.opts.Seed + int64(i)))
	r.cache = map[string]session{}
	r.retained = 0
	r.work32, r.work64 = nil, nil // replicas run at once: each its own
	return &r
}

// A session is one compiled graph with its schedule.
type session interface {
	run(req *Request) (*Result, error)
}

// Compile prepares m for running. It fails, naming every node, if the model
// uses operators the runtime lacks.
func Compile(m *onnx.Model, opts Options) (p *Program, err error) {
	defer recoverTo(&err, "compile")
	if m == nil || m.Graph == nil {
		return nil, fmt.Errorf("compile: no model")
	}
	if err := checkSupported(m.Graph); err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	if err := checkParams(m, opts); err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	p = &Program{
		model:  m,
		opts:   opts,
		byName: map[string]*Param{},
		ints:   map[*onnx.Value][]int64{},
		rng:    rand.New(rand.NewSource(opts.Seed)),
		cache:  map[string]session{},
	}
	for _, v := range m.Graph.Initializers {
		t := v.Const
		switch t.DType {
		case onnx.Float, onnx.Double:
			// Decoded straight to the element type: a float64 copy of
			// every weight on the way to float32 would double the peak
			// memory of compiling.
			var data any
			var err error
			shared := false
			switch {
			case opts.Float64:
				data, err = t.Float64s()
			case t.DType == onnx.Float && opts.FixedWeights:
				if data, shared = float32View(t.Raw()); !shared {
					data, err = t.Float32s()
				}
			case t.DType == onnx.Float:
				data, err = t.Float32s()
			default:
				var d64 []float64
				if d64, err = t.Float64s(); err == nil {
					d32 := make([]float32, len(d64))
					for i, x := range d64 {
						d32[i] = float32(x)
					}
					data = d32
				}
			}
			if err != nil {
				return nil, fmt.Errorf("compile: initializer %q: %w", v.Name, err)
			}
			prm := &Param{Name: v.Name, Shape: ints(t.Dims), shared: shared}
			prm.Value = tensor.New(tensor.WithShape(shapeOrScalar(prm.Shape)...), tensor.WithBacking(data))
			p.params = append(p.params, prm)
			p.byName[v.Name] = prm
		default:
			vals, err := t.Int64s()
			if err != nil {
				return nil, fmt.Errorf("compile: initializer %q: %s tensors are not supported", v.Name, t.DType)
			}
			p.ints[v] = vals
		}
	}
	for _, v := range m.Graph.Inputs {
		if v.Const == nil {
			p.inputs = append(p.inputs, v)
		}
	}
	return p, nil
}

func shapeOrScalar(s []int) []int {
	if len(s) == 0 {
		return []int{1}
	}
	return s
}

// Params returns the model's float initializers, in model order.
func (p *Program) Params() []*Param { return p.params }

// Param returns the named parameter, or nil.
func (p *Program) Param(name string) *Param { return p.byName[name] }

// Inputs returns the names of the graph inputs Run expects, in order.
func (p *Program) Inputs() []string {
	var names []string
	for _, v := range p.inputs {
		names = append(names, v.Name)
	}
	return names
}

// Loss selects the loss Step differentiates.
type Loss int

const (
	// NoLoss runs forward only.
	NoLoss Loss = iota
	// CrossEntropy treats the first output as logits: the mean over the
	// batch of -sum(target * log_softmax(logits)).
	CrossEntropy
	// NLL treats the first output as log-probabilities (a model ending in
	// LogSoftmax): the mean of -sum(target * output).
	NLL
	// ProbabilityNLL treats the first output as probabilities: the mean of
	// -sum(target * log(output)), the log of probabilities below 1e-30
	// taken at 1e-30. LossFor uses it only for probabilities whose logits
	// it cannot reach (no final Softmax or Sigmoid to read before).
	ProbabilityNLL
)

// String names the loss.
func (l Loss) String() string {
	switch l {
	case NoLoss:
		return "none"
	case CrossEntropy:
		return "cross-entropy on logits"
	case NLL:
		return "negative log-likelihood of log-probabilities"
	case ProbabilityNLL:
		return "negative log-likelihood of probabilities"
	}
	return fmt.Sprintf("Loss(%d)", int(l))
}

// A Request asks Step for one forward and backward pass.
type Request struct {
	// Inputs feed the graph inputs in order (see Program.Inputs).
	Inputs []*tensor.Dense
	// Targets are class probabilities, shape [batch, classes]: one-hot rows
	// for hard labels (see OneHot).
	Targets *tensor.Dense
	Loss    Loss
	// LossOn names the value the loss reads, [batch, classes]: logits
	// before a final Softmax (see LossFor). Empty means the first output.
	LossOn string
	// Train runs Dropout with random masks and BatchNormalization on batch
	// statistics, updating its running statistics; otherwise both are in
	// inference form. When Params names parameters, only the
	// BatchNormalization layers whose scale or bias is among them train:
	// frozen layers keep their statistics, as fine-tuning wants.
	Train bool
	// Params names the parameters whose gradients are wanted.
	Params []string
	// InputGrads asks for the gradient with respect to the inputs.
	InputGrads bool
}

// A Result is what Step computed.
type Result struct {
	Outputs    []*tensor.Dense
	Loss       float64
	ParamGrads map[string]*tensor.Dense
	InputGrads []*tensor.Dense
}

// Run computes the model's outputs in inference mode.
func (p *Program) Run(inputs ...*tensor.Dense) ([]*tensor.Dense, error) {
	res, err := p.Step(&Request{Inputs: inputs})
	if err != nil {
		return nil, err
	}
	return res.Outputs, nil
}

// Step runs the request: forward, and when a loss is given, the loss and the
// gradients asked for.
func (p *Program) Step(req *Request) (res *Result, err error) {
	defer recoverTo(&err, "run")
	if err := p.checkRequest(req); err != nil {
		return nil, err
	}
	plan := planOf(req)
	key := plan.key()
	s, ok := p.cache[key]
	if !ok {
		if s, err = p.newSession(plan); err != nil {
			return nil, err
		}
		p.cache[key] = s
	}
	return s.run(req)
}

// newSession builds the graph for plan, checks its memory estimate against
// graft's memory limit, and only then makes the machine that allocates.
// Sessions cached for other shapes keep their tensors between runs; when
// the new one does not fit beside them, they are dropped.
func (p *Program) newSession(plan Plan) (session, error) {
	var s session
	var est *MemoryEstimate
	var err error
	if p.opts.Float64 {
		s, est, err = buildSession[float64](p, plan)
	} else {
		s, est, err = buildSession[float32](p, plan)
	}
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	if err := est.Check(); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	retained := est.retained()
	if memlimit.Check("", memlimit.Add(est.Total, p.retained)) != nil {
		clear(p.cache)
		p.retained = 0
	}
	p.retained = memlimit.Add(p.retained, retained)
	return s, nil
}

func (plan Plan) key() string {
	var b strings.Builder
	for _, in := range plan.Inputs {
		fmt.Fprint(&b, in, ";")
	}
	params := append([]string(nil), plan.Params...)
	sort.Strings(params)
	fmt.Fprint(&b, plan.Loss, ";", plan.LossOn, ";", plan.Train, plan.InputGrads, params, plan.Targets)
	return b.String()
}

func (p *Program) checkRequest(req *Request) error {
	if len(req.Inputs) != len(p.inputs) {
		return fmt.Errorf("the model has %d inputs (%s), got %d", len(p.inputs), strings.Join(p.Inputs(), ", "), len(req.Inputs))
	}
	want := tensor.Float32
	if p.opts.Float64 {
		want = tensor.Float64
	}
	for i, v := range p.inputs {
		x := req.Inputs[i]
		if x == nil {
			return fmt.Errorf("input %q is nil", v.Name)
		}
		if dt := inputType(v); dt != onnx.Float {
			if x.Dtype() != denseType(dt) {
				return fmt.Errorf("input %q is %v, the model declares %s (feed integers as int64, booleans as bool)", v.Name, x.Dtype(), dt)
			}
			continue
		}
		if x.Dtype() != want {
			return fmt.Errorf("input %q is %v, the program computes in %v", v.Name, x.Dtype(), want)
		}
	}
	if p.opts.FixedWeights && (req.Train || len(req.Params) > 0) {
		return errors.New("the program was compiled with fixed weights (Options.FixedWeights): it does not train or compute parameter gradients")
	}
	if req.Loss != NoLoss && (req.Targets == nil || req.Targets.Dtype() != want || len(req.Targets.Shape()) != 2) {
		return fmt.Errorf("a loss needs targets of shape [batch, classes] in %v", want)
	}
	return p.checkPlan(planOf(req))
}

// checkPlan checks what a plan asks for against the model.
func (p *Program) checkPlan(plan Plan) error {
	if len(plan.Inputs) != len(p.inputs) {
		return fmt.Errorf("the model has %d inputs (%s), got %d shapes", len(p.inputs), strings.Join(p.Inputs(), ", "), len(plan.Inputs))
	}
	for i, v := range p.inputs {
		s := tensor.Shape(plan.Inputs[i])
		if size(s) == 0 {
			return fmt.Errorf("input %q has shape %v: empty tensors are not supported (Gorgonia's tensors cannot be empty)", v.Name, s)
		}
		for _, d := range s {
			if d < 0 {
				return fmt.Errorf("input %q has shape %v", v.Name, s)
			}
		}
		if v.Type != nil && v.Type.Shape != nil {
			ok := len(s) == len(v.Type.Shape)
			for j := 0; ok && j < len(s); j++ {
				d := v.Type.Shape[j]
				ok = !d.Known() || d.Value == int64(s[j])
			}
			if !ok {
				return fmt.Errorf("input %q has shape %v, the model expects %v", v.Name, s, v.Type.Shape)
			}
		}
	}
	for _, name := range plan.Params {
		if p.byName[name] == nil {
			return fmt.Errorf("no parameter named %q", name)
		}
	}
	if plan.Loss == NoLoss && (len(plan.Params) > 0 || plan.InputGrads) {
		return fmt.Errorf("gradients need a loss")
	}
	if plan.InputGrads {
		for _, v := range p.inputs {
			if dt := inputType(v); dt != onnx.Float {
				return fmt.Errorf("input %q is a %s tensor: it has no gradient", v.Name, dt)
			}
		}
	}
	return nil
}

// graphSession is a session for element type T.
type graphSession[T Float] struct {
	g            *G.ExprGraph
	inputs       []*G.Node
	inputTypes   []onnx.DType // Float, or the integer type an input is fed as
	outputs      []*G.Node    // nil for outputs known at compile time, in constOutputs
	outputTypes  []onnx.DType // Float, or the integer type an output is read as
	constOutputs map[int]*tensor.Dense
	target       *G.Node
	loss         *G.Node
	paramNames   []string
	paramGrads   []*G.Node
	inputGrads   []*G.Node
	// lean is the schedule of the session's nodes, forward and backward,
	// run by leanRun, with its pool of buffers.
	lean []leanStep
	pool *leanPool[T]
	// want lists the nodes a run reads (see wanted), in schedule order.
	want []*G.Node
	// owned marks the wanted nodes whose values a run computes into
	// buffers of their own, never recycled.
	owned map[*G.Node]bool
}

// buildSession builds the graph for plan and estimates the memory running
// it takes, allocating nothing in proportion to the activations: the
// machine that allocates them is made by start.
func buildSession[T Float](p *Program, plan Plan) (*graphSession[T], *MemoryEstimate, error) {
	b := &builder[T]{
		p:     p,
		g:     G.NewGraph(),
		opset: p.model.OpsetVersion(""),
		mode:  buildMode{train: plan.Train},
		vals:  map[*onnx.Value]*val[T]{},
	}
	if len(plan.Params) > 0 {
		b.mode.trained = map[string]bool{}
		for _, name := range plan.Params {
			b.mode.trained[name] = true
		}
	}
	s := &graphSession[T]{g: b.g}
	wantParam := map[string]bool{}
	for _, name := range plan.Params {
		wantParam[name] = true
	}
	feeds := map[*onnx.Value]*val[T]{}
	for i, v := range p.inputs {
		shape := tensor.Shape(append([]int(nil), plan.Inputs[i]...))
		n := G.NewTensor(b.g, b.dtype(), len(shape), G.WithShape(shape...), G.WithName("input:"+v.Name))
		s.inputs = append(s.inputs, n)
		dt := inputType(v)
		s.inputTypes = append(s.inputTypes, dt)
		if dt != onnx.Float {
			feeds[v] = &val[T]{node: n, shape: shape, elem: dt}
			continue
		}
		feeds[v] = &val[T]{node: n, shape: shape, need: plan.InputGrads}
	}
	paramNodes := map[string]*G.Node{}
	for _, v := range p.model.Graph.Initializers {
		if iv, ok := p.ints[v]; ok {
			feeds[v] = &val[T]{ints: iv, shape: ints(v.Const.Dims), elem: v.Const.DType}
			continue
		}
		prm := p.byName[v.Name]
		n := G.NewTensor(b.g, b.dtype(), len(prm.Value.Shape()), G.WithShape(prm.Value.Shape()...),
			G.WithName("param:"+v.Name), G.WithValue(prm.Value))
		paramNodes[v.Name] = n
		feeds[v] = &val[T]{node: n, shape: prm.Value.Shape().Clone(), consts: prm.Value.Data().([]T), need: wantParam[v.Name]}
	}
	if err := b.build(p.model.Graph, feeds); err != nil {
		return nil, nil, err
	}
	for i, v := range p.model.Graph.Outputs {
		x := b.vals[v]
		switch {
		case x == nil:
			return nil, nil, fmt.Errorf("output %q is not computed by the graph", v.Name)
		case x.node == nil:
			// Integer results (Shape and the like) are known at compile time.
			if s.constOutputs == nil {
				s.constOutputs = map[int]*tensor.Dense{}
			}
			s.constOutputs[i] = intDense(x.ints, x.shape, x.dtype())
		}
		s.outputs = append(s.outputs, x.node)
		s.outputTypes = append(s.outputTypes, x.dtype())
	}
	forward := len(b.g.AllNodes())
	if plan.Loss != NoLoss {
		scores := p.model.Graph.Outputs[0]
		if plan.LossOn != "" {
			if scores = p.model.Graph.Value(plan.LossOn); scores == nil {
				return nil, nil, fmt.Errorf("the loss reads %q, which the graph does not have", plan.LossOn)
			}
		}
		out := b.vals[scores]
		if out == nil || out.node == nil {
			return nil, nil, fmt.Errorf("the loss reads %q, which is not computed as floats", scores.Name)
		}
		tshape := tensor.Shape(plan.Targets).Clone()
		if plan.Targets == nil { // an estimate: the targets the scores need
			tshape = tensor.Shape(out.shape).Clone()
		}
		if len(out.shape) != 2 || len(tshape) != 2 || out.shape[0] != tshape[0] || out.shape[1] != tshape[1] {
			what := fmt.Sprintf("output %q", scores.Name)
			if plan.LossOn != "" {
				what = fmt.Sprintf("%q, which the loss reads,", scores.Name)
			}
			return nil, nil, fmt.Errorf("targets have shape %v but %s has shape %v", tshape, what, out.shape)
		}
		s.target = G.NewTensor(b.g, b.dtype(), 2, G.WithShape(tshape...), G.WithName("targets"))
		b.node = nil // the loss is no node of the model
		lossVal, err := b.apply(&crossEntropy[T]{n: tshape[0], k: tshape[1], scores: plan.Loss},
			out, &val[T]{node: s.target, shape: tshape})
		if err != nil {
			return nil, nil, err
		}
		s.loss = lossVal.node
		forward = len(b.g.AllNodes())
		var wrt G.Nodes
		for _, name := range plan.Params {
			s.paramNames = append(s.paramNames, name)
			wrt = append(wrt, paramNodes[name])
		}
		if plan.InputGrads {
			wrt = append(wrt, s.inputs...)
		}
		if len(wrt) > 0 {
			grads, err := G.Grad(s.loss, wrt...)
			if err != nil {
				if strings.Contains(err.Error(), "Non Differentiable WRTs") {
					return nil, nil, fmt.Errorf("differentiate: some requested parameters have no gradient (BatchNormalization running statistics, or values the loss does not depend on): %v", plan.Params)
				}
				return nil, nil, fmt.Errorf("differentiate: %w", err)
			}
			s.paramGrads = grads[:len(plan.Params)]
			s.inputGrads = grads[len(plan.Params):]
		}
	}
	s.want = s.wanted()
	s.lean, s.pool = leanSchedule[T](b.g, s.want), &leanPool[T]{}
	s.owned = map[*G.Node]bool{}
	for _, st := range s.lean {
		if st.op != nil && !st.pooled {
			s.owned[st.node] = true
		}
	}
	return s, estimate(b, s, plan, forward), nil
}

// wanted lists the nodes a run reads: the outputs, the loss and the
// gradients. The schedule visits the gradients latest-made first: Gorgonia
// makes them from the loss backwards, so each parameter's gradient is
// computed as soon as the gradient of its layer's output is, and the
// values it reads are dropped early.
func (s *graphSession[T]) wanted() []*G.Node {
	grads := append(append([]*G.Node(nil), s.paramGrads...), s.inputGrads...)
	sort.SliceStable(grads, func(i, j int) bool { return grads[i].ID() < grads[j].ID() })
	want := append([]*G.Node(nil), s.outputs...)
	if s.loss != nil {
		want = append(want, s.loss)
	}
	return append(want, grads...)
}

// feeds returns the request's inputs as the session computes them: integer
// inputs become exact floats.
func (s *graphSession[T]) feeds(req *Request) ([]*tensor.Dense, error) {
	xs := make([]*tensor.Dense, len(s.inputs))
	for i, n := range s.inputs {
		xs[i] = req.Inputs[i]
		if s.inputTypes[i] != onnx.Float {
			var err error
			if xs[i], err = intsToFloat[T](xs[i]); err != nil {
				return nil, fmt.Errorf("input %q: %w", n.Name()[len("input:"):], err)
			}
		}
	}
	return xs, nil
}

func (s *graphSession[T]) run(req *Request) (*Result, error) {
	xs, err := s.feeds(req)
	if err != nil {
		return nil, err
	}
	fed := map[*G.Node]G.Value{}
	for i, n := range s.inputs {
		fed[n] = xs[i]
	}
	if s.target != nil {
		fed[s.target] = req.Targets
	}
	vals, err := leanRun(s.lean, s.pool, fed, s.want)
	if err != nil {
		return nil, err
	}
	value := func(n *G.Node) G.Value { return vals[n] }
	// A value the run computed into a buffer of its own (see leanStep.op)
	// is handed over as it is; others (a graph input passed through, a
	// view) are copied, as is a value wanted twice.
	given := map[*G.Node]bool{}
	result := func(n *G.Node) *tensor.Dense {
		if d, ok := value(n).(*tensor.Dense); ok && s.owned[n] && !given[n] {
			given[n] = true
			return d
		}
		return copyDense[T](value(n))
	}
	res := &Result{}
	for i, n := range s.outputs {
		if c, ok := s.constOutputs[i]; ok {
			res.Outputs = append(res.Outputs, c.Clone().(*tensor.Dense))
			continue
		}
		if dt := s.outputTypes[i]; dt != onnx.Float {
			res.Outputs = append(res.Outputs, floatToInts[T](value(n), dt))
			continue
		}
		res.Outputs = append(res.Outputs, result(n))
	}
	if s.loss != nil {
		res.Loss = scalarOf(value(s.loss))
	}
	if len(s.paramGrads) > 0 {
		res.ParamGrads = map[string]*tensor.Dense{}
		for i, n := range s.paramGrads {
			res.ParamGrads[s.paramNames[i]] = result(n)
		}
	}
	for _, n := range s.inputGrads {
		res.InputGrads = append(res.InputGrads, result(n))
	}
	return res, nil
}

// inputType is the element type a graph input is fed as: Float for float
// tensors (and undeclared ones), else its integer or boolean type.
func inputType(v *onnx.Value) onnx.DType {
	if v.Type == nil || !v.Type.IsTensor() {
		return onnx.Float
	}
	if isFloat, err := floatType(v.Type.Elem); err != nil || isFloat {
		return onnx.Float
	}
	return v.Type.Elem
}

// denseType is the tensor type an integer or boolean ONNX type is fed and
// returned as: bool for booleans, int64 for every integer type.
func denseType(dt onnx.DType) tensor.Dtype {
	if dt == onnx.Bool {
		return tensor.Bool
	}
	return tensor.Int64
}

// intDense returns integers as the tensor of their type's denseType.
func intDense(data []int64, shape []int, dt onnx.DType) *tensor.Dense {
	shape = shapeOrScalar(shape)
	if dt == onnx.Bool {
		b := make([]bool, len(data))
		for i, x := range data {
			b[i] = x != 0
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(b))
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]int64(nil), data...)))
}

// intsToFloat converts a fed int64 or bool tensor to the float type the
// graph carries it in, refusing integers that type cannot hold exactly.
func intsToFloat[T Float](x *tensor.Dense) (*tensor.Dense, error) {
	out := make([]T, x.Shape().TotalSize())
	switch d := x.Data().(type) {
	case []bool:
		for i, b := range d {
			if b {
				out[i] = 1
			}
		}
	case []int64:
		for i, v := range d {
			f, ok := exactly[T](v)
			if !ok {
				return nil, fmt.Errorf("element %d is %d, which %T cannot hold exactly", i, v, f)
			}
			out[i] = f
		}
	default:
		return nil, fmt.Errorf("holds %v, not int64 or bool", x.Dtype())
	}
	return tensor.New(tensor.WithShape(x.Shape().Clone()...), tensor.WithBacking(out)), nil
}

// floatToInts reads an integer or boolean value computed at run time.
func floatToInts[T Float](v G.Value, dt onnx.DType) *tensor.Dense {
	d := v.(*tensor.Dense)
	var data []T
	if s, ok := d.Data().(T); ok { // a 0-d tensor
		data = []T{s}
	} else {
		data = d.Data().([]T)
	}
	ints := make([]int64, len(data))
	for i, x := range data {
		ints[i] = int64(x)
	}
	return intDense(ints, d.Shape(), dt)
}

func copyDense[T Float](v G.Value) *tensor.Dense {
	d, ok := v.(*tensor.Dense)
	if !ok { // a scalar (an Einsum's inner product, say): shape [1], as shapeOrScalar gives
		x, err := dataOf[T]([]G.Value{v})
		if err != nil {
			panic(err)
		}
		return tensor.New(tensor.WithShape(1), tensor.WithBacking(x[0]))
	}
	data := append([]T(nil), d.Data().([]T)...)
	return tensor.New(tensor.WithShape(d.Shape().Clone()...), tensor.WithBacking(data))
}

func scalarOf(v G.Value) float64 {
	switch x := v.(type) {
	case *G.F32:
		return float64(*x)
	case *G.F64:
		return float64(*x)
	}
	return 0
}

// OneHot returns [len(labels), classes] targets with a 1 at each label, in
// the program's element type.
func (p *Program) OneHot(labels []int, classes int) (*tensor.Dense, error) {
	if p.opts.Float64 {
		return oneHot[float64](labels, classes)
	}
	return oneHot[float32](labels, classes)
}

func oneHot[T Float](labels []int, classes int) (*tensor.Dense, error) {
	data := make([]T, len(labels)*classes)
	for i, l := range labels {
		if l < 0 || l >= classes {
			return nil, fmt.Errorf("label %d of example %d is outside 0..%d", l, i, classes-1)
		}
		data[i*classes+l] = 1
	}
	return tensor.New(tensor.WithShape(len(labels), classes), tensor.WithBacking(data)), nil
}

// recoverTo turns a panic inside Gorgonia or a kernel into an error.
func recoverTo(err *error, what string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s: internal error: %v", what, r)
	}
}

func ints(d []int64) []int {
	out := make([]int, len(d))
	for i, x := range d {
		out[i] = int(x)
	}
	return out
}

// Model returns the model the program was compiled from.
func (p *Program) Model() *onnx.Model { return p.model }

// WriteBack copies the current parameter values (trained weights, updated
// running statistics) into the model's initializers, in each initializer's
// own element type, so the model can be saved with onnx.Save. An
// initializer whose bytes already hold its parameter's value (a frozen
// backbone's, every epoch) is left as it is: no copy of it is made.
func (p *Program) WriteBack() error {
	le := binary.LittleEndian
	for _, v := range p.model.Graph.Initializers {
		prm := p.byName[v.Name]
		if prm == nil {
			continue
		}
		dt := v.Const.DType
		if dt != onnx.Float && dt != onnx.Double {
			continue
		}
		size := 4
		if dt == onnx.Double {
			size = 8
		}
		var at func(i int) float64
		var n int
		switch d := prm.Value.Data().(type) {
		case []float32:
			at, n = func(i int) float64 { return float64(d[i]) }, len(d)
		case []float64:
			at, n = func(i int) float64 { return d[i] }, len(d)
		default:
			continue
		}
		// bits is element i as stored: float32 or float64 bits.
		bits := func(i int) uint64 {
			if dt == onnx.Float {
				return uint64(math.Float32bits(float32(at(i))))
			}
			return math.Float64bits(at(i))
		}
		load, store := func(b []byte) uint64 { return uint64(le.Uint32(b)) }, func(b []byte, x uint64) { le.PutUint32(b, uint32(x)) }
		if dt == onnx.Double {
			load, store = le.Uint64, le.PutUint64
		}
		old := v.Const.Raw()
		same := len(old) == size*n
		for i := 0; same && i < n; i++ {
			same = load(old[size*i:]) == bits(i)
		}
		if same {
			continue
		}
		raw := make([]byte, size*n)
		for i := 0; i < n; i++ {
			store(raw[size*i:], bits(i))
		}
		// The tensor keeps its doc string, storage and unknown fields.
		if err := v.Const.SetRaw(raw); err != nil {
			return fmt.Errorf("write back %q: %w", v.Name, err)
		}
	}
	return nil
}
