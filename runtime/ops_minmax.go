package runtime

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
)

// registerMinMax adds Min and Max: elementwise over any number of inputs,
// broadcasting as numpy does.
func registerMinMax[T Float](r registry[T]) {
	r["Max"] = buildMinMax[T](true)
	r["Min"] = buildMinMax[T](false)
}

func buildMinMax[T Float](isMax bool) opBuilder[T] {
	name := "Min"
	if isMax {
		name = "Max"
	}
	return func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
		if len(in) == 0 {
			return nil, fmt.Errorf("needs at least one input")
		}
		shapes := make([][]int, len(in))
		allInts := true
		for i, v := range in {
			if v == nil {
				return nil, fmt.Errorf("input %d is missing", i)
			}
			shapes[i] = v.shape
			allInts = allInts && v.isInt()
		}
		out := shapes[0]
		for _, s := range shapes[1:] {
			var err error
			if out, err = broadcast(out, s); err != nil {
				return nil, fmt.Errorf("inputs %v: %w", shapes, err)
			}
		}
		if allInts { // shape arithmetic, at compile time
			data := make([]int64, size(out))
			for i, v := range in {
				idx := broadcastIndex(v.shape, out)
				for j := range data {
					x := v.ints[idx[j]]
					if i == 0 || isMax && x > data[j] || !isMax && x < data[j] {
						data[j] = x
					}
				}
			}
			return []*val[T]{{ints: data, shape: out}}, nil
		}
		k := &minMax[T]{name: name, isMax: isMax, out: out}
		for _, s := range shapes {
			var idx []int32
			if size(s) != size(out) {
				idx = broadcastIndex(s, out)
			}
			k.idx = append(k.idx, idx)
		}
		return one(b.apply(k, in...))
	}
}

// minMax is the elementwise maximum (or minimum) of broadcast inputs. NaN
// wins, as in numpy and PyTorch. The gradient goes to the inputs that equal
// the result, split evenly among them when several tie: PyTorch's
// torch.maximum gives each of two equal inputs half, and torch.amax over
// the stacked inputs splits among all of them, which is what a variadic
// Max computes.
type minMax[T Float] struct {
	name  string
	isMax bool
	out   []int
	idx   [][]int32 // per input: its element per output element; nil when unbroadcast
}

func (k *minMax[T]) describe() string {
	return fmt.Sprintf("%s(%d inputs)%v", k.name, len(k.idx), k.out)
}
func (k *minMax[T]) outShape() []int { return k.out }
func (k *minMax[T]) differentiable() []bool {
	d := make([]bool, len(k.idx))
	for i := range d {
		d[i] = true
	}
	return d
}

// pick folds v into the running result m.
func (k *minMax[T]) pick(m, v T) T {
	if k.isMax {
		return max(m, v)
	}
	return min(m, v)
}

func (k *minMax[T]) forward(in [][]T, out []T) error {
	parallelFor(len(out), len(out)*len(in), func(lo, hi int) {
		for j := lo; j < hi; j++ {
			m := in[0][at(k.idx[0], j)]
			for i := 1; i < len(in); i++ {
				m = k.pick(m, in[i][at(k.idx[i], j)])
			}
			out[j] = m
		}
	})
	return nil
}

// selected reports whether v is the result y (NaN results select NaN inputs).
func selected[T Float](v, y T) bool { return v == y || v != v && y != y }

func (k *minMax[T]) backward(which int, in [][]T, out, gout, gin []T) error {
	own := k.idx[which]
	body := func(lo, hi int) {
		for j := lo; j < hi; j++ {
			y := out[j]
			if !selected(in[which][at(own, j)], y) {
				continue
			}
			ties := 0
			for i := range in {
				if selected(in[i][at(k.idx[i], j)], y) {
					ties++
				}
			}
			gin[at(own, j)] += gout[j] / T(ties)
		}
	}
	if own != nil { // several outputs may add into one element: keep the order
		body(0, len(out))
		return nil
	}
	parallelFor(len(out), len(out)*len(in), body)
	return nil
}
