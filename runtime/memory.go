package runtime

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/onnx"
	G "gorgonia.org/gorgonia"
)

// SetMemoryLimit sets graft's memory limit to n bytes: the most that one
// piece of work may need (compiling a model's parameters, a session for one
// input shape, a decoded file, a new classifier head). Work estimated to
// need more is refused before it allocates, with an error naming the tensor
// and its size. n <= 0 restores the default: the environment variable
// GRAFT_MEMORY_LIMIT (512MiB, 8GB, 0.5TiB or plain bytes) if set, else 80%
// of the smaller of the machine's memory and its cgroup's limit.
func SetMemoryLimit(n int64) { memlimit.Set(n, "set by runtime.SetMemoryLimit") }

// MemoryLimit returns graft's memory limit in bytes, and where it comes
// from ("80% of this machine's memory", "set by GRAFT_MEMORY_LIMIT", ...).
// It fails only when GRAFT_MEMORY_LIMIT is not a size.
func MemoryLimit() (int64, string, error) {
	lim, err := memlimit.Get()
	return lim.Bytes, lim.From, err
}

// ErrMemoryLimit is wrapped by the errors of work refused for needing more
// than graft's memory limit.
var ErrMemoryLimit = memlimit.ErrExceeded

// A Plan describes a Step by shapes alone, for estimating its memory before
// any input exists.
type Plan struct {
	Inputs [][]int // the shape of each graph input, in order
	// Targets is the shape of the targets; nil takes the first output's.
	Targets []int
	Loss    Loss
	// LossOn names the value the loss reads (see Request.LossOn).
	LossOn     string
	Train      bool
	Params     []string
	InputGrads bool
}

func planOf(req *Request) Plan {
	plan := Plan{Loss: req.Loss, LossOn: req.LossOn, Train: req.Train, Params: req.Params, InputGrads: req.InputGrads}
	for _, x := range req.Inputs {
		plan.Inputs = append(plan.Inputs, x.Shape().Clone())
	}
	if req.Targets != nil {
		plan.Targets = req.Targets.Shape().Clone()
	}
	return plan
}

// A MemoryEstimate is the memory a Step of one plan holds at its peak, in
// bytes, from the shapes of every tensor of its graph and the order a run
// computes them in: a value's buffer serves later values of its size once
// its last reader is done, and the buffers stay with the session for its
// next run.
type MemoryEstimate struct {
	Model       int64 // the tensor data of the ONNX model the program keeps
	Params      int64 // the model's float parameters (shared by every plan)
	Inputs      int64 // the inputs and targets the caller passes
	Constants   int64 // float constants folded when the graph was built
	Activations int64 // the buffers of the forward pass's values
	Gradients   int64 // the buffers of gradients, when the plan asks for any
	Scratch     int64 // buffers kernels keep: im2col matrices, transposed weights
	Results     int64 // the copies Step returns: outputs and gradients
	// Garbage is what the previous run allocated and did not keep: the
	// values it could not recycle (the outputs and gradients it returns,
	// and their copies in Results), which stay in memory until the garbage
	// collector runs, and the model file's bytes, read to decode it.
	Garbage int64
	Total   int64
	Largest TensorBytes // the largest single tensor
	plan    Plan
}

// TensorBytes describes one tensor of an estimate.
type TensorBytes struct {
	What  string // `the output of Conv node "conv1"`, `input "x"`, ...
	Shape []int
	DType string
	Bytes int64
}

func (t TensorBytes) String() string {
	return fmt.Sprintf("%s %s %s (%s)", t.What, shapeString(t.Shape), t.DType, memlimit.Format(t.Bytes))
}

// String summarises the estimate on one line.
func (e *MemoryEstimate) String() string {
	parts := []string{fmt.Sprintf("%s in all", memlimit.Format(e.Total))}
	for _, c := range []struct {
		name string
		n    int64
	}{{"model", e.Model}, {"parameters", e.Params}, {"inputs", e.Inputs}, {"constants", e.Constants}, {"activations", e.Activations},
		{"gradients", e.Gradients}, {"scratch", e.Scratch}, {"results", e.Results}, {"garbage", e.Garbage}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", c.name, memlimit.Format(c.n)))
		}
	}
	return strings.Join(parts, ", ") + "; largest tensor: " + e.Largest.String()
}

// Check returns an error wrapping ErrMemoryLimit when the estimate is over
// graft's memory limit, naming the inputs and the largest tensor.
func (e *MemoryEstimate) Check() error {
	what := "running the model"
	if e.plan.Loss != NoLoss && (len(e.plan.Params) > 0 || e.plan.InputGrads) {
		what = "a training step"
	}
	var shapes []string
	for _, s := range e.plan.Inputs {
		shapes = append(shapes, shapeString(s))
	}
	return memlimit.Check(fmt.Sprintf("%s on input %s (largest tensor: %s)", what, strings.Join(shapes, ", "), e.Largest), e.Total)
}

// retained is what a session keeps between runs.
func (e *MemoryEstimate) retained() int64 {
	return memlimit.Add(e.Constants, e.Activations, e.Gradients, e.Scratch)
}

// Estimate returns the memory a Step of plan would need, from the shapes
// of the graph it builds for it; nothing is run or allocated in proportion
// to the activations.
func (p *Program) Estimate(plan Plan) (*MemoryEstimate, error) {
	if err := p.checkPlan(plan); err != nil {
		return nil, err
	}
	var est *MemoryEstimate
	var err error
	if p.opts.Float64 {
		_, est, err = buildSession[float64](p, plan)
	} else {
		_, est, err = buildSession[float32](p, plan)
	}
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	return est, nil
}

// Estimate compiles m and estimates the memory a Step of plan would need
// (see Program.Estimate). Compiling fails if the parameters alone are over
// graft's memory limit.
func Estimate(m *onnx.Model, opts Options, plan Plan) (*MemoryEstimate, error) {
	p, err := Compile(m, opts)
	if err != nil {
		return nil, err
	}
	return p.Estimate(plan)
}

// A scratchKernel keeps buffers between runs, beside its output.
type scratchKernel interface {
	// scratchBytes returns the bytes it keeps at most.
	scratchBytes() int64
}

// estimate adds up the tensors of a built session: nodes made before index
// forward compute the plan's forward pass, those after its gradients.
func estimate[T Float](b *builder[T], s *graphSession[T], plan Plan, forward int) *MemoryEstimate {
	var z T
	elem := int64(4)
	dtype := "float32"
	if _, ok := any(z).(float64); ok {
		elem, dtype = 8, "float64"
	}
	e := &MemoryEstimate{plan: plan}
	bytes := func(shape []int) int64 {
		n := elem
		for _, d := range shape {
			n = memlimit.Mul(n, int64(d))
		}
		return n
	}
	consider := func(what string, shape []int, n int64) {
		if n > e.Largest.Bytes {
			e.Largest = TensorBytes{What: what, Shape: append([]int(nil), shape...), DType: dtype, Bytes: n}
		}
	}
	for _, prm := range b.p.params {
		n := bytes(prm.Shape)
		if !prm.shared { // else the model's own, counted in Model
			e.Params = memlimit.Add(e.Params, n)
		}
		consider(fmt.Sprintf("parameter %q", prm.Name), prm.Shape, n)
	}
	fed := map[*G.Node]string{}
	for i, n := range s.inputs {
		fed[n] = fmt.Sprintf("input %q", b.p.inputs[i].Name)
	}
	if s.target != nil {
		fed[s.target] = "the targets"
	}
	shared := map[any]int64{} // the workspace's buffers: the most any kernel takes of each
	backward := map[*G.Node]bool{}
	scheduled := map[*G.Node]bool{} // nodes a run computes: not those a rewrite left unread
	for _, st := range s.lean {
		scheduled[st.node] = true
	}
	for i, n := range b.g.AllNodes() {
		shape := []int(n.Shape())
		nb := bytes(shape)
		op := n.Op()
		switch {
		case fed[n] != "":
			e.Inputs = memlimit.Add(e.Inputs, nb)
			consider(fed[n], shape, nb)
		case op == nil:
			if strings.HasPrefix(n.Name(), "param:") {
				continue // counted above
			}
			e.Constants = memlimit.Add(e.Constants, nb)
		case !scheduled[n]:
		case i < forward:
			consider(describeOutput(op), shape, nb)
			if k, ok := op.(*kernelOp[T]); ok {
				if sk, ok := k.k.(scratchKernel); ok {
					e.Scratch = memlimit.Add(e.Scratch, sk.scratchBytes())
				}
				if wk, ok := k.k.(workspaceKernel); ok {
					wk.workspaceBytes(func(buf any, n int64) { shared[buf] = max(shared[buf], n) })
				}
			}
		default:
			backward[n] = true
			consider(describeOutput(op), shape, nb)
		}
	}
	for _, n := range shared {
		e.Scratch = memlimit.Add(e.Scratch, n)
	}
	// A run holds only the values still to be read, in buffers it keeps for
	// the next run, and allocates only what it cannot recycle (see leanRun):
	// garbage once it is over, until the collector runs.
	pooled, fresh := leanMemory(s.lean, elem, func(n *G.Node) int {
		if backward[n] {
			return 1
		}
		return 0
	})
	e.Activations = memlimit.Add(pooled[0], fresh[0])
	e.Gradients = memlimit.Add(pooled[1], fresh[1])
	e.Garbage = memlimit.Add(fresh[0], fresh[1])
	for i, n := range s.outputs {
		switch {
		case n == nil:
		case s.outputTypes[i] == onnx.Float:
			e.Results = memlimit.Add(e.Results, bytes(n.Shape()))
		default: // read out as int64 or bool (see denseType)
			e.Results = memlimit.Add(e.Results, memlimit.Mul(int64(n.Shape().TotalSize()), int64(denseType(s.outputTypes[i]).Size())))
		}
	}
	for _, n := range append(append([]*G.Node(nil), s.paramGrads...), s.inputGrads...) {
		e.Results = memlimit.Add(e.Results, bytes(n.Shape()))
	}
	for _, v := range b.p.model.Graph.Initializers {
		e.Model = memlimit.Add(e.Model, v.Const.Bytes())
	}
	// Go's collector aims to run before the garbage outgrows the live heap
	// (GOGC=100). It reaches that goal on a busy machine; an idle one
	// collects earlier (ResNet-18 inference at batch 8: 0.87 times this
	// estimate idle, 1.02 beside other tests). The model file's bytes, read
	// to decode it, are garbage too.
	live := memlimit.Add(e.Model, e.Params, e.Inputs, e.Constants, e.Activations, e.Gradients, e.Scratch)
	e.Garbage = min(memlimit.Add(e.Garbage, e.Results, e.Model), live)
	e.Total = memlimit.Add(e.Model, e.Params, e.Inputs, e.Constants, e.Activations, e.Gradients, e.Scratch, e.Results, e.Garbage)
	return e
}

// describeOutput names the tensor a graph node computes.
func describeOutput(op G.Op) string {
	name := func(n *onnx.Node) string {
		if n == nil {
			return "the loss"
		}
		return n.String()
	}
	switch k := op.(type) {
	case interface{ originNode() (*onnx.Node, int) }:
		n, input := k.originNode()
		if input < 0 {
			return "the output of " + name(n)
		}
		return fmt.Sprintf("the gradient for input %d of %s", input, name(n))
	}
	return "a " + op.String() + " result"
}

func (op *kernelOp[T]) originNode() (*onnx.Node, int) { return op.origin, -1 }
func (op *gradOp[T]) originNode() (*onnx.Node, int)   { return op.fwd.origin, op.input }

// shapeString prints a shape as ONNX's tools do: [1,3,224,224].
func shapeString[I int | int64](s []I) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.FormatInt(int64(d), 10)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// checkParams refuses a model whose float parameters would not fit in
// graft's memory limit once converted to the element type computed in
// (plus the float64 copy converting the largest one takes).
func checkParams(m *onnx.Model, opts Options) error {
	elem := int64(4)
	if opts.Float64 {
		elem = 8
	}
	var total, largest int64
	var name string
	var dims []int64
	for _, v := range m.Graph.Initializers {
		if t := v.Const; t != nil && (t.DType == onnx.Float || t.DType == onnx.Double) {
			n := t.NumElements()
			total = memlimit.Add(total, memlimit.Mul(n, elem))
			if n > largest {
				largest, name, dims = n, v.Name, t.Dims
			}
		}
	}
	need := memlimit.Add(total, memlimit.Mul(largest, 8))
	return memlimit.Check(fmt.Sprintf("compiling the model's parameters (largest: %q %s)", name, shapeString(dims)), need)
}
