package surgery

import (
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
)

// HeadOptions configure ReplaceHead.
type HeadOptions struct {
	// Node names the head when FindHead cannot find it (the --head flag).
	Node string
	// Seed seeds the new layer's initial weights.
	Seed int64
}

// ReplaceHead returns an edit that swaps the classifier head for a new
// Linear(in_features, k) initialised as PyTorch's nn.Linear is (weights and
// bias uniform in ±1/sqrt(in_features)). A Gemm head becomes a Gemm
// (transB=1, weight [k, in]); a MatMul + Add head keeps that form (weight
// [in, k]); a 1x1 Conv head keeps its form (weight [k, in, 1, 1]). The new
// parameters take the old ones' names, so "fc.weight" stays "fc.weight".
// Downstream ops (Flatten, Softmax) are kept and the output's shape becomes
// [..., k]. A stored trainable set (see Freeze) names the new parameters
// as it named the old (a bias the old head lacked joins its weight); the
// old parameters are gone when the edit returns, so the edits after it see
// only the new head.
func ReplaceHead(k int, opts HeadOptions) Edit {
	return func(m *onnx.Model) error {
		if k < 1 {
			return fmt.Errorf("replace head: k = %d, want at least 1 class", k)
		}
		g := m.Graph
		var h *Head
		var err error
		if opts.Node != "" {
			h, err = HeadAt(g, opts.Node)
		} else {
			h, err = FindHead(g)
		}
		if err != nil {
			return err
		}
		rng := rand.New(rand.NewSource(opts.Seed))
		in := h.InFeatures
		bound := 1 / math.Sqrt(float64(in))
		uniform := func(n int64) []float32 {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32((rng.Float64()*2 - 1) * bound)
			}
			return v
		}
		if err := checkHeadMemory(h, int64(k)); err != nil {
			return err
		}
		old := h.Node
		out := old.Outputs[0]
		if h.BiasAdd != nil {
			out = h.BiasAdd.Outputs[0]
		}
		wName, bName := h.Weight.Name, biasName(h)
		trained, stored, err := storedTrainable(m)
		if err != nil {
			return fmt.Errorf("replace head: %w", err)
		}
		// The old parameters give up their names to the new ones, and go
		// at once unless something else reads them: the edits after this
		// one (Freeze, Unfreeze, Initialize) must see the new head only.
		oldParams := []*onnx.Value{h.Weight}
		if b := oldBias(h); b != nil {
			oldParams = append(oldParams, b)
		}
		for _, v := range oldParams {
			v.Name += "__replaced"
		}
		x := old.Input(0)
		kk := int64(k)
		g.RemoveNode(old)
		if h.BiasAdd != nil {
			g.RemoveNode(h.BiasAdd)
		}
		for _, v := range oldParams {
			removeIfUnread(g, v)
		}
		switch old.OpType {
		case "Gemm":
			w, err := onnx.FromFloat32(wName, []int64{kk, in}, uniform(kk*in))
			if err != nil {
				return err
			}
			b, err := onnx.FromFloat32(bName, []int64{kk}, uniform(kk))
			if err != nil {
				return err
			}
			n := &onnx.Node{Name: old.Name, OpType: "Gemm", Inputs: []*onnx.Value{x, g.AddInitializer(w), g.AddInitializer(b)},
				Outputs: []*onnx.Value{out}, Attrs: []*onnx.Attribute{
					{Name: "alpha", Type: onnx.AttrFloat, Float: 1}, {Name: "beta", Type: onnx.AttrFloat, Float: 1},
					{Name: "transB", Type: onnx.AttrInt, Int: 1}}}
			g.InsertNode(n)
		case "MatMul":
			// Draw as PyTorch lays out Linear ([k, in]), store transposed.
			wt := uniform(kk * in)
			wv := make([]float32, len(wt))
			for o := int64(0); o < kk; o++ {
				for i := int64(0); i < in; i++ {
					wv[i*kk+o] = wt[o*in+i]
				}
			}
			w, err := onnx.FromFloat32(wName, []int64{in, kk}, wv)
			if err != nil {
				return err
			}
			b, err := onnx.FromFloat32(bName, []int64{kk}, uniform(kk))
			if err != nil {
				return err
			}
			mm := g.AddNode("MatMul", old.Name, []*onnx.Value{x, g.AddInitializer(w)}, []string{old.Outputs[0].Name + "_new"})
			add := &onnx.Node{Name: nameOr(h.BiasAdd, old.Name+"_bias"), OpType: "Add",
				Inputs: []*onnx.Value{mm.Outputs[0], g.AddInitializer(b)}, Outputs: []*onnx.Value{out}}
			g.InsertNode(add)
		case "Conv":
			w, err := onnx.FromFloat32(wName, []int64{kk, in, 1, 1}, uniform(kk*in))
			if err != nil {
				return err
			}
			b, err := onnx.FromFloat32(bName, []int64{kk}, uniform(kk))
			if err != nil {
				return err
			}
			n := &onnx.Node{Name: old.Name, OpType: "Conv", Inputs: []*onnx.Value{x, g.AddInitializer(w), g.AddInitializer(b)},
				Outputs: []*onnx.Value{out}, Attrs: old.Attrs}
			g.InsertNode(n)
		default:
			return fmt.Errorf("replace head: cannot replace a %s head", old.OpType)
		}
		retypeDownstream(m, out, h.OutFeatures, kk)
		if stored && len(oldParams) == 1 && slices.Contains(trained, wName) {
			// The new parameters take the old ones' names, and so their
			// places in the set; a new bias trains with its weight.
			if err := SetTrainable(m, append(trained, bName)); err != nil {
				return fmt.Errorf("replace head: %w", err)
			}
		}
		return restoreContract(m, true, func(c *contract.Contract) {
			c.Output.NumClasses, c.Output.Classes = k, nil
		})
	}
}

// removeIfUnread takes an initializer nothing reads any more out of g's
// initializers and inputs (old exporters list initializers as inputs too).
func removeIfUnread(g *onnx.Graph, v *onnx.Value) {
	if len(g.Consumers(v)) > 0 || g.IsOutput(v) {
		return
	}
	drop := func(vs []*onnx.Value) []*onnx.Value {
		return slices.DeleteFunc(vs, func(u *onnx.Value) bool { return u == v })
	}
	g.Initializers = drop(g.Initializers)
	g.Inputs = drop(g.Inputs)
}

func nameOr(n *onnx.Node, def string) string {
	if n != nil && n.Name != "" {
		return n.Name
	}
	return def
}

// oldBias returns the head's constant bias value, if it has one.
func oldBias(h *Head) *onnx.Value {
	if h.BiasAdd != nil {
		for _, v := range h.BiasAdd.Inputs {
			if v != nil && v.Const != nil {
				return v
			}
		}
	}
	if b := h.Node.Input(2); b != nil && b.Const != nil {
		return b
	}
	return nil
}

// biasName keeps the old bias's name, or derives one from the weight's.
func biasName(h *Head) string {
	if b := oldBias(h); b != nil {
		return b.Name
	}
	if w := h.Weight.Name; strings.HasSuffix(w, "weight") {
		return strings.TrimSuffix(w, "weight") + "bias"
	}
	return h.Weight.Name + "_bias"
}

// retypeDownstream updates the types after the head: values between the
// head and the graph outputs lose their stale types (InferShapes redoes
// them) and graph outputs get k in place of the old class count.
func retypeDownstream(m *onnx.Model, from *onnx.Value, oldK, k int64) {
	g := m.Graph
	stale := map[*onnx.Value]bool{from: true}
	for _, n := range g.Nodes { // sorted: producers come before readers
		for _, v := range n.Inputs {
			if stale[v] {
				for _, o := range n.Outputs {
					if o != nil {
						stale[o] = true
					}
				}
			}
		}
	}
	for v := range stale {
		if g.IsOutput(v) && v.Type != nil && len(v.Type.Shape) > 0 {
			last := &v.Type.Shape[len(v.Type.Shape)-1]
			if last.Known() && last.Value == oldK {
				*last = onnx.Fixed(k)
			}
			continue
		}
		v.Type = nil
	}
	var keep []*onnx.Value
	for _, v := range g.ValueInfo {
		if !stale[v] {
			keep = append(keep, v)
		}
	}
	g.ValueInfo = keep
}

// checkHeadMemory refuses a new head whose weight would not fit in graft's
// memory limit, before drawing it: the weight is drawn as float32 values and
// converted to the tensor's bytes (a MatMul head's also transposed), so it
// is held two or three times over while it is made.
func checkHeadMemory(h *Head, k int64) error {
	copies := int64(2)
	shape := fmt.Sprintf("[%d,%d]", k, h.InFeatures)
	switch h.Node.OpType {
	case "MatMul":
		copies = 3
		shape = fmt.Sprintf("[%d,%d]", h.InFeatures, k)
	case "Conv":
		shape = fmt.Sprintf("[%d,%d,1,1]", k, h.InFeatures)
	}
	need := memlimit.Mul(k, h.InFeatures, 4, copies)
	return memlimit.Check(fmt.Sprintf("replace head: the new weight %q %s float32 (%s)", h.Weight.Name, shape, memlimit.Format(memlimit.Mul(k, h.InFeatures, 4))), need)
}
