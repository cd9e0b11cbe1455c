package runtime

import (
	"errors"

	G "gorgonia.org/gorgonia"
)

// Inference sessions (no loss, hence no gradients) do not run on Gorgonia's
// tape machine: it gives every node of the graph its own buffer for the
// whole run, so a run holds every activation at once (1.7 GB for ViT-B/16
// on one image). leanRun runs the nodes in a fixed order and drops each
// value after its last reader, so a run holds only the values still to be
// read: what an inference engine holds.

// leanStep is one node of an inference run: the node, its arguments in
// order, and the values no later step reads, dropped after it.
type leanStep struct {
	node *G.Node
	args []*G.Node
	drop []*G.Node
}

// leanSchedule orders the op nodes the outputs need (depth first, children
// in argument order) and notes each value's last reader. Values of outputs
// are never dropped.
func leanSchedule(g *G.ExprGraph, outputs []*G.Node) []leanStep {
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
	last := map[*G.Node]int{}
	for i, s := range steps {
		for _, a := range s.args {
			if a.Op() != nil && !keep[a] {
				last[a] = i
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
	}
	return steps
}

// leanPeak is the largest number of bytes the schedule's op values hold at
// once, for elements of elem bytes.
func leanPeak(steps []leanStep, elem int64) int64 {
	var live, peak int64
	for _, s := range steps {
		live += int64(s.node.Shape().TotalSize()) * elem
		peak = max(peak, live)
		for _, d := range s.drop {
			live -= int64(d.Shape().TotalSize()) * elem
		}
	}
	return peak
}

// leanRun runs steps with fed values for the input nodes and returns the
// value of every node in want.
func leanRun(steps []leanStep, fed map[*G.Node]G.Value, want []*G.Node) (map[*G.Node]G.Value, error) {
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
		v, err := s.node.Op().Do(args...)
		if err != nil {
			var k *kernelError
			if errors.As(err, &k) {
				return nil, k
			}
			return nil, err
		}
		vals[s.node] = v
		for _, d := range s.drop {
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
