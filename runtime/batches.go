package runtime

import (
	"fmt"

	"gorgonia.org/tensor"
)

// RunBatches runs a single-input model over x [N, ...] in batches of at most
// n examples along the first axis, and joins each output's batches along
// it: the outputs Run(x) would return, while the graph only ever holds one
// batch's activations. Every output must have the batch as its first
// dimension.
func (p *Program) RunBatches(x *tensor.Dense, n int) ([]*tensor.Dense, error) {
	if len(p.inputs) != 1 {
		return nil, fmt.Errorf("run in batches: the model has %d inputs, want 1", len(p.inputs))
	}
	shape := x.Shape()
	if n < 1 || len(shape) == 0 || shape[0] < 1 {
		return nil, fmt.Errorf("run in batches: batches of %d over input shape %v", n, shape)
	}
	total, per := shape[0], x.Shape().TotalSize()/shape[0]
	var outs []*tensor.Dense
	var parts [][]any // each output's data, batch by batch
	for start := 0; start < total; start += n {
		end := min(start+n, total)
		bshape := append([]int{end - start}, shape[1:]...)
		var chunk *tensor.Dense
		switch d := x.Data().(type) {
		case []float32:
			chunk = tensor.New(tensor.WithShape(bshape...), tensor.WithBacking(d[start*per:end*per]))
		case []float64:
			chunk = tensor.New(tensor.WithShape(bshape...), tensor.WithBacking(d[start*per:end*per]))
		default:
			return nil, fmt.Errorf("run in batches: input of %v", x.Dtype())
		}
		got, err := p.Run(chunk)
		if err != nil {
			return nil, fmt.Errorf("examples %d to %d of %d: %w", start, end-1, total, err)
		}
		if outs == nil {
			outs, parts = got, make([][]any, len(got))
		}
		for i, y := range got {
			if s := y.Shape(); len(s) == 0 || s[0] != end-start {
				return nil, fmt.Errorf("run in batches: output %d has shape %v, without the batch of %d as its first dimension", i, s, end-start)
			}
			parts[i] = append(parts[i], y.Data())
		}
	}
	for i, y := range outs {
		s := append([]int{total}, y.Shape()[1:]...)
		switch y.Data().(type) {
		case []float32:
			outs[i] = join[float32](parts[i], s)
		case []float64:
			outs[i] = join[float64](parts[i], s)
		case []int64:
			outs[i] = join[int64](parts[i], s)
		default:
			return nil, fmt.Errorf("run in batches: output %d of %v", i, y.Dtype())
		}
	}
	return outs, nil
}

func join[E any](parts []any, shape []int) *tensor.Dense {
	var all []E
	for _, p := range parts {
		all = append(all, p.([]E)...)
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(all))
}
