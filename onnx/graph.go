package onnx

import (
	"fmt"
	"strings"
)

// uses returns the values node n reads: its inputs and, for nodes with
// subgraphs (If, Loop, Scan), the outer values those subgraphs refer to.
func (n *Node) uses() []*Value {
	out := append([]*Value(nil), n.Inputs...)
	for _, a := range n.Attrs {
		for _, sg := range a.subgraphs() {
			out = append(out, sg.outerRefs()...)
		}
	}
	return out
}

// outerRefs lists the values a graph (and its subgraphs) reads from
// enclosing scopes.
func (g *Graph) outerRefs() []*Value {
	var out []*Value
	for _, n := range g.Nodes {
		for _, v := range n.uses() {
			if v != nil && v.graph != nil && v.graph != g && !g.encloses(v.graph) {
				out = append(out, v)
			}
		}
	}
	return out
}

// encloses reports whether h is g or nested inside g.
func (g *Graph) encloses(h *Graph) bool {
	for ; h != nil; h = h.parent {
		if h == g {
			return true
		}
	}
	return false
}

// Value returns the value named name defined in g (an input, initializer or
// node output), or nil.
func (g *Graph) Value(name string) *Value {
	for _, v := range g.Inputs {
		if v.Name == name {
			return v
		}
	}
	for _, v := range g.Initializers {
		if v.Name == name {
			return v
		}
	}
	for _, n := range g.Nodes {
		for _, v := range n.Outputs {
			if v != nil && v.Name == name {
				return v
			}
		}
	}
	return nil
}

// Node returns the node called name, or nil.
func (g *Graph) Node(name string) *Node {
	for _, n := range g.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Consumers returns the nodes of g that read v, in graph order.
func (g *Graph) Consumers(v *Value) []*Node {
	var out []*Node
	for _, n := range g.Nodes {
		for _, u := range n.uses() {
			if u == v {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// IsOutput reports whether v is one of g's outputs.
func (g *Graph) IsOutput(v *Value) bool {
	for _, o := range g.Outputs {
		if o == v {
			return true
		}
	}
	return false
}

// AddInitializer adds a constant to g and returns its value.
func (g *Graph) AddInitializer(t *Tensor) *Value {
	v := &Value{Name: t.Name, Const: t, Type: TensorType(t.DType, t.Dims...), graph: g}
	g.Initializers = append(g.Initializers, v)
	return v
}

// AddInput adds a graph input of type ty and returns its value.
func (g *Graph) AddInput(name string, ty *Type) *Value {
	v := &Value{Name: name, Type: ty, graph: g}
	g.Inputs = append(g.Inputs, v)
	return v
}

// AddNode appends a node computing op over inputs, creating its outputs
// with the given names, and returns it. Call TopoSort if the node must run
// before nodes already in the graph.
func (g *Graph) AddNode(op, name string, inputs []*Value, outputs []string, attrs ...*Attribute) *Node {
	n := &Node{Name: name, OpType: op, Inputs: inputs, Attrs: attrs}
	for _, o := range outputs {
		n.Outputs = append(n.Outputs, &Value{Name: o, producer: n, graph: g})
	}
	g.Nodes = append(g.Nodes, n)
	return n
}

// RemoveNode takes n out of g. Its output values are left dangling; their
// readers must be rewired first (see ReplaceUses).
func (g *Graph) RemoveNode(n *Node) {
	for i, m := range g.Nodes {
		if m == n {
			g.Nodes = append(g.Nodes[:i], g.Nodes[i+1:]...)
			break
		}
	}
	for _, v := range n.Outputs {
		if v != nil {
			v.producer = nil
			v.graph = nil
		}
	}
}

// ReplaceUses makes every reader of old (nodes and graph outputs) read new.
func (g *Graph) ReplaceUses(old, new *Value) {
	for _, n := range g.Nodes {
		for i, v := range n.Inputs {
			if v == old {
				n.Inputs[i] = new
			}
		}
	}
	for i, v := range g.Outputs {
		if v == old {
			g.Outputs[i] = new
		}
	}
}

// TopoSort orders g's nodes so that every node comes after the producers of
// what it reads, keeping the existing order where it already is. It fails,
// naming the nodes, if the graph has a cycle.
func (g *Graph) TopoSort() error {
	order, cycle := g.topoOrder()
	if cycle != nil {
		return cycleError(cycle)
	}
	g.Nodes = order
	return nil
}

func cycleError(cycle []*Node) error {
	names := make([]string, len(cycle))
	for i, n := range cycle {
		names[i] = n.String()
	}
	return fmt.Errorf("the graph has a cycle through %s", strings.Join(names, " -> "))
}

// topoOrder returns the sorted nodes, or the nodes of one cycle.
func (g *Graph) topoOrder() (order, cycle []*Node) {
	index := map[*Node]int{}
	for i, n := range g.Nodes {
		index[n] = i
	}
	// deps[i]: producers (in g) of what node i reads.
	deps := make([][]int, len(g.Nodes))
	users := make([][]int, len(g.Nodes))
	pending := make([]int, len(g.Nodes))
	for i, n := range g.Nodes {
		seen := map[int]bool{}
		for _, v := range n.uses() {
			if v == nil || v.producer == nil {
				continue
			}
			j, ok := index[v.producer]
			if !ok || seen[j] {
				continue
			}
			seen[j] = true
			deps[i] = append(deps[i], j)
			users[j] = append(users[j], i)
			pending[i]++
		}
	}
	// Kahn's algorithm, always taking the earliest ready node so an already
	// sorted graph keeps its order.
	ready := &intHeap{}
	for i := range g.Nodes {
		if pending[i] == 0 {
			ready.push(i)
		}
	}
	for ready.len() > 0 {
		i := ready.pop()
		order = append(order, g.Nodes[i])
		for _, u := range users[i] {
			if pending[u]--; pending[u] == 0 {
				ready.push(u)
			}
		}
	}
	if len(order) == len(g.Nodes) {
		return order, nil
	}
	// Walk dependencies among the unsorted nodes until one repeats.
	start := -1
	for i := range g.Nodes {
		if pending[i] > 0 {
			start = i
			break
		}
	}
	pos := map[int]int{}
	var path []int
	for i := start; ; {
		if p, ok := pos[i]; ok {
			for _, j := range path[p:] {
				cycle = append(cycle, g.Nodes[j])
			}
			return nil, append(cycle, g.Nodes[i])
		}
		pos[i] = len(path)
		path = append(path, i)
		for _, j := range deps[i] {
			if pending[j] > 0 {
				i = j
				break
			}
		}
	}
}

// Cleanup removes the nodes no graph output depends on, then the
// initializers and value_info entries nothing refers to any more. Graph
// inputs are kept: they are the model's interface.
func (g *Graph) Cleanup() {
	live := map[*Value]bool{}
	stack := append([]*Value(nil), g.Outputs...)
	liveNode := map[*Node]bool{}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if v == nil || live[v] {
			continue
		}
		live[v] = true
		if n := v.producer; n != nil && !liveNode[n] {
			liveNode[n] = true
			stack = append(stack, n.uses()...)
		}
	}
	var nodes []*Node
	for _, n := range g.Nodes {
		if liveNode[n] {
			nodes = append(nodes, n)
		} else {
			for _, v := range n.Outputs {
				if v != nil {
					v.producer, v.graph = nil, nil
				}
			}
		}
	}
	g.Nodes = nodes
	var inits []*Value
	for _, v := range g.Initializers {
		if live[v] || g.isInput(v) {
			inits = append(inits, v)
		}
	}
	g.Initializers = inits
	var infos []*Value
	for _, v := range g.ValueInfo {
		if live[v] {
			infos = append(infos, v)
		}
	}
	g.ValueInfo = infos
}

func (g *Graph) isInput(v *Value) bool {
	for _, u := range g.Inputs {
		if u == v {
			return true
		}
	}
	return false
}

// intHeap is a min-heap of node indices.
type intHeap struct{ a []int }

func (h *intHeap) len() int { return len(h.a) }

func (h *intHeap) push(x int) {
	h.a = append(h.a, x)
	for i := len(h.a) - 1; i > 0; {
		p := (i - 1) / 2
		if h.a[p] <= h.a[i] {
			break
		}
		h.a[p], h.a[i] = h.a[i], h.a[p]
		i = p
	}
}

func (h *intHeap) pop() int {
	top := h.a[0]
	last := len(h.a) - 1
	h.a[0] = h.a[last]
	h.a = h.a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && h.a[l] < h.a[m] {
			m = l
		}
		if r < last && h.a[r] < h.a[m] {
			m = r
		}
		if m == i {
			break
		}
		h.a[i], h.a[m] = h.a[m], h.a[i]
		i = m
	}
	return top
}

// eachNode calls f on every node of g and of its subgraphs.
func (g *Graph) eachNode(f func(*Node)) {
	for _, n := range g.Nodes {
		f(n)
		for _, a := range n.Attrs {
			for _, sg := range a.subgraphs() {
				sg.eachNode(f)
			}
		}
	}
}

// InsertNode adds n to g as the producer of its output values, which may be
// values that already exist (left without a producer by RemoveNode): that is
// how a node is replaced while its readers keep reading the same value. Call
// TopoSort if n must run before nodes already in the graph.
func (g *Graph) InsertNode(n *Node) {
	for _, v := range n.Outputs {
		if v != nil {
			v.producer, v.graph = n, g
		}
	}
	g.Nodes = append(g.Nodes, n)
}
