package runtime

import (
	"errors"
	"math"

	G "gorgonia.org/gorgonia"
)

// Sessions do not run on Gorgonia's tape machine: it gives every node of
// the graph its own buffer for the whole run, so a run holds every
// activation and every gradient at once (1.7 GB for ViT-B/16 inference on
// one image). leanRun runs the nodes in a fixed order and drops each value
// after its last reader, so a run holds only the values still to be read:
// what an inference engine holds, and in a backward pass the activations
// its gradients still need. A dropped value's buffer goes back
// to the session's pool and serves a later value of the same size, in this
// run or the next, so a run in the steady state allocates only what it
// returns and leaves no garbage behind.

// leanStep is one node of a run: the node, its arguments in
// order, and the values no later step reads, dropped after it; recycle
// marks the dropped values whose buffers may be reused.
type leanStep struct {
	node    *G.Node
	args    []*G.Node
	drop    []*G.Node
	recycle []bool // parallel to drop
	// op computes the node into a buffer it is given; nil for ops of
	// Gorgonia's own, which allocate. pooled marks a node whose value is
	// recycled: its buffer comes from the pool. Others allocate their own,
	// so the pool holds the same buffers after every run. dirty: op writes
	// every element of its output, so the buffer need not be zeroed.
	op            any // pooledOp[T]
	pooled, dirty bool
}

// leanSchedule orders the op nodes the outputs need (depth first, children
// in argument order) and notes each value's last reader. Values of outputs
// are never dropped. A dropped value is recycled when a kernel computed it
// into a buffer of its own and only kernels read it: they copy what they
// read into their own outputs, so nothing else refers to the buffer once
// they are done (an op of Gorgonia's own may return a view of its input).
func leanSchedule[T Float](g *G.ExprGraph, outputs []*G.Node) []leanStep {
	children := func(n *G.Node) []*G.Node {
		var out []*G.Node
		it := g.From(n.ID())
		for it.Next() {
			out = append(out, it.Node().(*G.Node))
		}
		return out
	}
	var steps []leanStep
	state := map[*G.Node]int8{} // 1 visiting, 2 done
	var visit func(n *G.Node)
	visit = func(n *G.Node) {
		if state[n] != 0 {
			return
		}
		state[n] = 1
		args := children(n)
		for _, c := range args {
			visit(c)
		}
		state[n] = 2
		if n.Op() != nil {
			steps = append(steps, leanStep{node: n, args: args})
		}
	}
	for _, n := range outputs {
		if n != nil {
			visit(n)
		}
	}
	keep := map[*G.Node]bool{}
	for _, n := range outputs {
		keep[n] = true
	}
	isKernel := func(n *G.Node) bool {
		return pooledOpOf[T](n) != nil && len(n.Shape()) > 0 // a scalar is not a buffer
	}
	last := map[*G.Node]int{}
	owned := map[*G.Node]bool{}
	for _, s := range steps {
		owned[s.node] = isKernel(s.node)
	}
	for i, s := range steps {
		for _, a := range s.args {
			if a.Op() != nil && !keep[a] {
				last[a] = i
			}
			if !isKernel(s.node) {
				owned[a] = false
			}
		}
	}
	for i := range steps {
		if _, read := last[steps[i].node]; !read && !keep[steps[i].node] {
			last[steps[i].node] = i // nobody reads it: drop it at once
		}
	}
	for n, i := range last {
		steps[i].drop = append(steps[i].drop, n)
		steps[i].recycle = append(steps[i].recycle, owned[n])
	}
	for i := range steps {
		_, dropped := last[steps[i].node]
		steps[i].pooled = dropped && owned[steps[i].node]
		if op := pooledOpOf[T](steps[i].node); op != nil {
			steps[i].op = op
			steps[i].dirty = op.writesAll()
		}
	}
	return steps
}

// A pooledOp computes into a buffer it is given: the ops of graft's kernels
// and of their gradients.
type pooledOp[T Float] interface {
	// doInto is Do computing into out, of the value's size, zeroed unless
	// writesAll.
	doInto(out []T, vals []G.Value) (G.Value, error)
	// writesAll reports that the op writes every element of its value.
	writesAll() bool
}

func (op *kernelOp[T]) writesAll() bool {
	_, ok := op.k.(interface{ writesAll() })
	return ok
}

// A gradient accumulates into its buffer, unless its kernel says that its
// backward for this input writes every element (gradWritesAll).
func (op *gradOp[T]) writesAll() bool {
	w, ok := op.fwd.k.(interface{ gradWritesAll(input int) bool })
	return ok && w.gradWritesAll(op.input)
}

// pooledOpOf returns n's op as a pooledOp, or nil when it is one of
// Gorgonia's own. Gorgonia sums the gradients a value gets from several
// readers (a residual block's input) with its own Add, which allocates its
// result: gradientSum computes those sums into pooled buffers instead.
func pooledOpOf[T Float](n *G.Node) pooledOp[T] {
	switch op := n.Op().(type) {
	case pooledOp[T]:
		return op
	case nil:
		return nil
	}
	if n.Op().String() != "+ false" || len(n.Shape()) == 0 {
		return nil
	}
	it := n.Graph().From(n.ID())
	for it.Next() {
		if !it.Node().(*G.Node).Shape().Eq(n.Shape()) {
			return nil // a broadcast
		}
	}
	return gradientSum[T]{}
}

// gradientSum adds two tensors of one shape: the gradient sums of
// Gorgonia's differentiation (see pooledOpOf).
type gradientSum[T Float] struct{}

func (gradientSum[T]) doInto(out []T, vals []G.Value) (G.Value, error) {
	in, err := dataOf[T](vals)
	if err != nil {
		return nil, err
	}
	a, b := in[0][:len(out)], in[1][:len(out)]
	parallelFor(len(out), len(out), func(lo, hi int) {
		out, a, b := out[lo:hi], a[lo:hi], b[lo:hi]
		for i := range out {
			out[i] = a[i] + b[i]
		}
	})
	return wrap(out, vals[0].Shape()), nil
}

func (gradientSum[T]) writesAll() bool { return true }

// leanMemory is what the schedule's op values take, for elements of elem
// bytes, split in two parts by part (0 or 1 for each node: the forward
// pass and the gradients): pooled, the buffers a first run takes from an
// empty pool (later runs find them there: the pool keeps them between
// runs), and fresh, the bytes of values each run allocates anew (those of
// Gorgonia's own ops, and values that are not recycled, such as the
// outputs and gradients a run returns), garbage once the run is over.
func leanMemory(steps []leanStep, elem int64, part func(*G.Node) int) (pooled, fresh [2]int64) {
	free := map[int]int{} // buffers of each size in the pool
	for _, s := range steps {
		n := s.node.Shape().TotalSize()
		i := part(s.node)
		switch {
		case !s.pooled:
			fresh[i] += int64(n) * elem
		case free[n] > 0:
			free[n]--
		default:
			pooled[i] += int64(n) * elem
		}
		for i, d := range s.drop {
			if s.recycle[i] {
				free[d.Shape().TotalSize()]++
			}
		}
	}
	return pooled, fresh
}

// leanPool holds the buffers of dropped values, by length, for reuse.
type leanPool[T Float] struct {
	free map[int][][]T
	made int // buffers allocated, for tests
}

// get returns a buffer of n elements, zeroed unless dirty: a kernel that
// writes every element of its output (writesAll) does not need it zeroed.
func (p *leanPool[T]) get(n int, dirty bool) []T {
	if bs := p.free[n]; len(bs) > 0 {
		b := bs[len(bs)-1]
		p.free[n] = bs[:len(bs)-1]
		if !dirty {
			clear(b) // kernels write into zeroed outputs
		} else if leanPoison {
			poison(b)
		}
		return b
	}
	p.made++
	b := make([]T, n)
	if dirty && leanPoison {
		poison(b)
	}
	return b
}

// leanPoison, set by tests, fills the buffers given to kernels that write
// every element (writesAll) with NaN, so that an element one leaves
// unwritten shows.
var leanPoison bool

func poison[T Float](b []T) {
	nan := T(math.NaN())
	for i := range b {
		b[i] = nan
	}
}

func (p *leanPool[T]) put(b []T) {
	if p.free == nil {
		p.free = map[int][][]T{}
	}
	p.free[len(b)] = append(p.free[len(b)], b)
}

// leanRun runs steps with fed values for the input nodes and returns the
// value of every node in want. Kernels compute into buffers from pool.
func leanRun[T Float](steps []leanStep, pool *leanPool[T], fed map[*G.Node]G.Value, want []*G.Node) (map[*G.Node]G.Value, error) {
	vals := map[*G.Node]G.Value{}
	value := func(n *G.Node) G.Value {
		if v, ok := vals[n]; ok {
			return v
		}
		if v, ok := fed[n]; ok {
			return v
		}
		return n.Value() // parameters and constants
	}
	args := make([]G.Value, 0, 8)
	for _, s := range steps {
		args = args[:0]
		for _, a := range s.args {
			args = append(args, value(a))
		}
		var v G.Value
		var err error
		if s.pooled {
			v, err = s.op.(pooledOp[T]).doInto(pool.get(s.node.Shape().TotalSize(), s.dirty), args)
		} else {
			v, err = s.node.Op().Do(args...)
		}
		if err != nil {
			var k *kernelError
			if errors.As(err, &k) {
				return nil, k
			}
			return nil, err
		}
		vals[s.node] = v
		for i, d := range s.drop {
			if s.recycle[i] {
				pool.put(vals[d].Data().([]T))
			}
			delete(vals, d)
		}
	}
	out := map[*G.Node]G.Value{}
	for _, n := range want {
		if n != nil {
			out[n] = value(n)
		}
	}
	return out, nil
}
