package runtime

import (
	"fmt"
	"math"

	"github.com/graft-dev/graft/onnx"
)

// registerLayerNorm adds the normalisations over each sample's own values:
// LayerNormalization (the transformers') and InstanceNormalization. Both
// normalise rows of X viewed as a matrix; they differ in where the rows
// are and in how the scale and bias apply (per column, per channel).
func registerLayerNorm[T Float](r registry[T]) {
	r["LayerNormalization"] = buildLayerNorm[T]
	r["InstanceNormalization"] = buildInstanceNorm[T]
}

// buildLayerNorm builds LayerNormalization (opset 17): X's values from axis
// on are normalised together, then scaled and shifted by Scale and B, which
// broadcast to that normalised shape. Mean and InvStdDev, when used, are
// the statistics of each row with X's shape, 1 from axis on. stash_type
// names the precision of the statistics: graft computes them in float64
// whatever it says.
func buildLayerNorm[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) < 2 || in[0] == nil || in[1] == nil {
		return nil, fmt.Errorf("needs inputs X and Scale")
	}
	x := in[0]
	r := len(x.shape)
	axis, err := normAxis(n.AttrInt("axis", -1), r)
	if err != nil {
		return nil, fmt.Errorf("attribute axis: %w of input X %v", err, x.shape)
	}
	if st := onnx.DType(n.AttrInt("stash_type", 1)); st != onnx.Float && st != onnx.Double && st != onnx.Float16 && st != onnx.BFloat16 {
		return nil, fmt.Errorf("attribute stash_type=%d is not a float type", int(st))
	}
	norm := x.shape[axis:]
	k := &normRows[T]{
		name:  fmt.Sprintf("LayerNormalization(axis=%d)", axis),
		shape: x.shape, rows: size(x.shape[:axis]), cols: size(norm),
		eps: float64(n.AttrFloat("epsilon", 1e-5)),
	}
	args := []*val[T]{x, in[1]}
	if len(in) > 2 && in[2] != nil {
		args = append(args, in[2])
		k.hasBias = true
	}
	for i, p := range args[1:] {
		what := [...]string{"Scale", "B"}[i]
		if s, err := broadcast(p.shape, norm); err != nil || len(p.shape) > len(norm) || size(s) != size(norm) {
			return nil, fmt.Errorf("%s %v does not broadcast to the normalised shape %v (X %v from axis %d)", what, p.shape, norm, x.shape, axis)
		}
		if size(p.shape) != size(norm) {
			k.pIdx[i] = broadcastIndex(p.shape, norm)
		}
	}
	y, err := b.apply(k, args...)
	if err != nil {
		return nil, err
	}
	outs := []*val[T]{y}
	statShape := append([]int{}, x.shape...)
	for i := axis; i < r; i++ {
		statShape[i] = 1
	}
	g := b.p.model.Graph
	for i := 1; i < len(n.Outputs) && i < 3; i++ {
		v := n.Outputs[i]
		if v == nil || len(g.Consumers(v)) == 0 && !g.IsOutput(v) {
			outs = append(outs, nil)
			continue
		}
		s, err := b.apply(&rowStat[T]{rows: k.rows, cols: k.cols, eps: k.eps, invStd: i == 2, shape: statShape}, x)
		if err != nil {
			return nil, err
		}
		outs = append(outs, s)
	}
	return outs, nil
}

// buildInstanceNorm builds InstanceNormalization: each channel of each
// sample, X [N, C, spatial...], is normalised over its spatial values, then
// scaled and shifted by the channel's scale and B.
func buildInstanceNorm[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) != 3 || in[0] == nil || in[1] == nil || in[2] == nil {
		return nil, fmt.Errorf("needs inputs input, scale and B")
	}
	x := in[0]
	if len(x.shape) < 2 {
		return nil, fmt.Errorf("input %v must have at least 2 dimensions (N, C, ...)", x.shape)
	}
	c := x.shape[1]
	for i, name := range []string{"scale", "B"} {
		if s := in[i+1].shape; len(s) != 1 || s[0] != c {
			return nil, fmt.Errorf("%s has shape %v, want [%d] (the channels of input %v)", name, s, c, x.shape)
		}
	}
	k := &normRows[T]{
		name:  "InstanceNormalization",
		shape: x.shape, rows: size(x.shape[:2]), cols: size(x.shape[2:]),
		eps:      float64(n.AttrFloat("epsilon", 1e-5)),
		channels: c, hasBias: true,
	}
	return one(b.apply(k, in...))
}

// normRows normalises X viewed as [rows, cols], row by row:
// y = (x - mean) / sqrt(var + eps) * scale + bias, with the row's mean and
// biased variance. The scale and bias are indexed by column (LayerNorm,
// through pIdx when they broadcast) or, when channels > 0, by the row's
// channel, row % channels (InstanceNorm). Gradients flow to X, scale and
// bias.
type normRows[T Float] struct {
	name       string
	shape      []int
	rows, cols int
	eps        float64
	channels   int
	pIdx       [2][]int32 // scale's and bias's element per column; nil when one per column
	hasBias    bool
}

func (k *normRows[T]) describe() string {
	return fmt.Sprintf("%s(%v eps=%g)", k.name, k.shape, k.eps)
}
func (k *normRows[T]) outShape() []int { return k.shape }
func (k *normRows[T]) differentiable() []bool {
	if k.hasBias {
		return []bool{true, true, true}
	}
	return []bool{true, true}
}

// param returns parameter p's (0 scale, 1 bias) element for row r, column j.
func (k *normRows[T]) param(p []T, which, r, j int) float64 {
	if k.channels > 0 {
		return float64(p[r%k.channels])
	}
	return float64(p[at(k.pIdx[which], j)])
}

// rowStats returns the mean and 1/sqrt(var + eps) of one row (two passes,
// in float64).
func rowStats[T Float](row []T, eps float64) (mean, istd float64) {
	mean = sumOf(row) / float64(len(row))
	return mean, 1 / math.Sqrt(sqDevOf(row, mean)/float64(len(row))+eps)
}

func (k *normRows[T]) forward(in [][]T, out []T) error {
	x := in[0]
	parallelFor(k.rows, len(x), func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			row, y := x[r*k.cols:(r+1)*k.cols], out[r*k.cols:(r+1)*k.cols]
			mean, istd := rowStats(row, k.eps)
			if k.channels > 0 { // one scale and bias for the row: y = a*x + c
				a := k.param(in[1], 0, r, 0) * istd
				c := -mean * a
				if k.hasBias {
					c += k.param(in[2], 1, r, 0)
				}
				for j, v := range row {
					y[j] = T(a*float64(v) + c)
				}
				continue
			}
			for j, v := range row {
				z := (float64(v) - mean) * istd * k.param(in[1], 0, r, j)
				if k.hasBias {
					z += k.param(in[2], 1, r, j)
				}
				y[j] = T(z)
			}
		}
	})
	return nil
}

func (k *normRows[T]) backward(which int, in [][]T, _, gout, gin []T) error {
	x := in[0]
	switch which {
	case 0:
		// dx = istd * (g' - mean(g') - xhat * mean(g' * xhat)), g' = dy * scale.
		n := float64(k.cols)
		parallelFor(k.rows, len(x), func(r0, r1 int) {
			for r := r0; r < r1; r++ {
				lo, hi := r*k.cols, (r+1)*k.cols
				row, g, dx := x[lo:hi], gout[lo:hi], gin[lo:hi]
				mean, istd := rowStats(row, k.eps)
				var sg, sgx float64
				for j, v := range row {
					gs := float64(g[j]) * k.param(in[1], 0, r, j)
					sg += gs
					sgx += gs * (float64(v) - mean) * istd
				}
				mg, mgx := sg/n, sgx/n
				for j, v := range row {
					xhat := (float64(v) - mean) * istd
					dx[j] = T(istd * (float64(g[j])*k.param(in[1], 0, r, j) - mg - xhat*mgx))
				}
			}
		})
	case 1, 2:
		// dscale = sum dy * xhat, dbias = sum dy, over the rows (and, for a
		// broadcast parameter, the columns) that share an element.
		stats := make([][2]float64, k.rows)
		if which == 1 {
			parallelFor(k.rows, len(x), func(r0, r1 int) {
				for r := r0; r < r1; r++ {
					stats[r][0], stats[r][1] = rowStats(x[r*k.cols:(r+1)*k.cols], k.eps)
				}
			})
		}
		term := func(r, j int) float64 {
			g := float64(gout[r*k.cols+j])
			if which == 1 {
				return g * (float64(x[r*k.cols+j]) - stats[r][0]) * stats[r][1]
			}
			return g
		}
		switch {
		case k.channels > 0:
			sums := make([]float64, k.rows)
			parallelFor(k.rows, len(x), func(r0, r1 int) {
				for r := r0; r < r1; r++ {
					for j := 0; j < k.cols; j++ {
						sums[r] += term(r, j)
					}
				}
			})
			for r, s := range sums {
				gin[r%k.channels] += T(s)
			}
		case k.pIdx[which-1] != nil:
			for r := 0; r < k.rows; r++ {
				for j := 0; j < k.cols; j++ {
					gin[k.pIdx[which-1][j]] += T(term(r, j))
				}
			}
		default:
			// Each column is summed over the rows in order, so the result
			// does not depend on how the columns are split.
			parallelFor(k.cols, len(x), func(c0, c1 int) {
				acc := make([]float64, c1-c0)
				for r := 0; r < k.rows; r++ {
					for j := c0; j < c1; j++ {
						acc[j-c0] += term(r, j)
					}
				}
				for j, s := range acc {
					gin[c0+j] = T(s)
				}
			})
		}
	default:
		return fmt.Errorf("input %d has no gradient", which)
	}
	return nil
}

// rowStat outputs each row's mean, or its 1/sqrt(var + eps) (invStd), of X
// viewed as [rows, cols]: LayerNormalization's Mean and InvStdDev.
type rowStat[T Float] struct {
	rows, cols int
	eps        float64
	invStd     bool
	shape      []int
}

func (k *rowStat[T]) describe() string {
	if k.invStd {
		return fmt.Sprintf("LayerNormalization.InvStdDev(%v)", k.shape)
	}
	return fmt.Sprintf("LayerNormalization.Mean(%v)", k.shape)
}
func (k *rowStat[T]) outShape() []int        { return k.shape }
func (k *rowStat[T]) differentiable() []bool { return []bool{true} }

func (k *rowStat[T]) forward(in [][]T, out []T) error {
	for r := range out {
		mean, istd := rowStats(in[0][r*k.cols:(r+1)*k.cols], k.eps)
		if k.invStd {
			out[r] = T(istd)
		} else {
			out[r] = T(mean)
		}
	}
	return nil
}

// backward: d mean/dx = 1/n; d istd/dx = -istd^3 (x - mean) / n.
func (k *rowStat[T]) backward(_ int, in [][]T, _, gout, gin []T) error {
	n := float64(k.cols)
	for r, g := range gout {
		row, dx := in[0][r*k.cols:(r+1)*k.cols], gin[r*k.cols:(r+1)*k.cols]
		if !k.invStd {
			for j := range dx {
				dx[j] = T(float64(g) / n)
			}
			continue
		}
		mean, istd := rowStats(row, k.eps)
		c := -float64(g) * istd * istd * istd / n
		for j, v := range row {
			dx[j] = T(c * (float64(v) - mean))
		}
	}
	return nil
}
