package surgery

import (
	"fmt"
	"strings"

	"github.com/graft-dev/graft/onnx"
)

// A Head is a model's classifier head: the last linear layer before the
// output, which transfer learning replaces.
type Head struct {
	// Node is the Gemm, MatMul or 1x1 Conv that maps features to classes.
	Node *onnx.Node
	// BiasAdd is the Add that follows a MatMul head, or nil.
	BiasAdd *onnx.Node
	// Weight is the constant weight the head multiplies by.
	Weight *onnx.Value
	// InFeatures and OutFeatures are the layer's sizes: 512 and 1000 for
	// torchvision's ResNet-18.
	InFeatures, OutFeatures int64
	// Tail lists the nodes between the head and the graph output (Flatten,
	// Softmax, pooling), nearest the output first.
	Tail []*onnx.Node
}

// passThrough are the ops that may sit between a head and the output.
var passThrough = map[string]bool{
	"Flatten": true, "Reshape": true, "Softmax": true, "LogSoftmax": true,
	"Identity": true, "Dropout": true, "Squeeze": true, "Sigmoid": true,
}

// pooling may follow a convolutional (squeezenet-style) head.
var pooling = map[string]bool{
	"GlobalAveragePool": true, "AveragePool": true, "ReduceMean": true, "Relu": true,
}

// FindHead finds the classifier head feeding the graph's first output: the
// last Gemm, or MatMul (+ Add), reached from the output through Flatten,
// Reshape, Softmax, Identity and the like; or a 1x1 Conv followed by pooling
// (squeezenet style). If there is none, the error lists the candidates.
func FindHead(g *onnx.Graph) (*Head, error) {
	if len(g.Outputs) == 0 {
		return nil, fmt.Errorf("find head: the graph has no outputs")
	}
	var tail []*onnx.Node
	v := g.Outputs[0]
	sawPool := false
	for {
		n := v.Producer()
		if n == nil {
			break
		}
		if h, err := headAt(n); err == nil && (n.OpType != "Conv" || sawPool) {
			h.Tail = tail
			return h, nil
		}
		switch {
		case passThrough[n.OpType] && !sawPool:
		case pooling[n.OpType]:
			sawPool = true
		default:
			return nil, noHead(g, fmt.Sprintf("walking back from output %q stopped at %s", g.Outputs[0].Name, n))
		}
		tail = append(tail, n)
		v = n.Input(0)
		if v == nil {
			break
		}
	}
	return nil, noHead(g, fmt.Sprintf("walking back from output %q reached the graph input", g.Outputs[0].Name))
}

// HeadAt returns the head at the named node (a Gemm, a MatMul, the Add after
// a MatMul, or a 1x1 Conv), for models whose head FindHead cannot find.
func HeadAt(g *onnx.Graph, name string) (*Head, error) {
	n := g.Node(name)
	if n == nil {
		return nil, noHead(g, fmt.Sprintf("there is no node named %q", name))
	}
	h, err := headAt(n)
	if err != nil {
		return nil, noHead(g, err.Error())
	}
	return h, nil
}

func noHead(g *onnx.Graph, why string) error {
	var cands []string
	for _, n := range g.Nodes {
		if h, err := headAt(n); err == nil && n.OpType != "Add" {
			cands = append(cands, fmt.Sprintf("%q (%s %d->%d)", n.Name, n.OpType, h.InFeatures, h.OutFeatures))
		}
	}
	list := "none"
	if len(cands) > 0 {
		list = strings.Join(cands, ", ")
	}
	return fmt.Errorf("no classifier head found: %s; candidates: %s (name one with --head NODE)", why, list)
}

// headAt checks whether n is a linear layer with a constant weight.
func headAt(n *onnx.Node) (*Head, error) {
	switch n.OpType {
	case "Gemm":
		w := constMatrix(n.Input(1))
		if w == nil || n.AttrInt("transA", 0) != 0 {
			return nil, fmt.Errorf("%s has no constant 2-d weight", n)
		}
		in, out := w.Dims[0], w.Dims[1]
		if n.AttrInt("transB", 0) == 1 {
			in, out = out, in
		}
		return &Head{Node: n, Weight: n.Input(1), InFeatures: in, OutFeatures: out}, nil
	case "MatMul":
		w := constMatrix(n.Input(1))
		if w == nil {
			return nil, fmt.Errorf("%s has no constant 2-d weight", n)
		}
		return &Head{Node: n, Weight: n.Input(1), InFeatures: w.Dims[0], OutFeatures: w.Dims[1]}, nil
	case "Add":
		for i, other := range []int{1, 0} {
			x, b := n.Input(i), n.Input(other)
			if x == nil || b == nil || b.Const == nil || x.Producer() == nil || x.Producer().OpType != "MatMul" {
				continue
			}
			h, err := headAt(x.Producer())
			if err != nil {
				return nil, err
			}
			h.BiasAdd = n
			return h, nil
		}
		return nil, fmt.Errorf("%s does not add a constant bias to a MatMul", n)
	case "Conv":
		w := n.Input(1)
		if w == nil || w.Const == nil || len(w.Const.Dims) != 4 || w.Const.Dims[2] != 1 || w.Const.Dims[3] != 1 || n.AttrInt("group", 1) != 1 {
			return nil, fmt.Errorf("%s is not a 1x1 convolution with a constant weight", n)
		}
		return &Head{Node: n, Weight: w, InFeatures: w.Const.Dims[1], OutFeatures: w.Const.Dims[0]}, nil
	}
	return nil, fmt.Errorf("%s is not a linear layer", n)
}

func constMatrix(v *onnx.Value) *onnx.Tensor {
	if v == nil || v.Const == nil || len(v.Const.Dims) != 2 {
		return nil
	}
	return v.Const
}
