package runtime

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/graft-dev/graft/onnx"
)

func registerNorm[T Float](r registry[T]) {
	r["BatchNormalization"] = buildBatchNorm[T]
}

// buildBatchNorm builds BatchNormalization.
//
// The form is chosen as ONNX says: from opset 14 by the training_mode
// attribute (outputs Y, running_mean, running_var); in opsets 7 and 9 by the
// number of outputs (5 outputs: Y, running mean, running var, saved mean,
// saved var, is training); in opset 6 and earlier by is_test = 0 together
// with those outputs (a single-output node is inference, as exporters meant
// it). A training request (Request.Train, PyTorch's model.train()) also
// runs inference-form nodes on batch statistics.
//
// Running statistics. The running_mean/running_var outputs follow ONNX's
// definition, which its backend tests check: running*momentum +
// batch*(1-momentum) with the biased batch variance. Separately, under a
// training request, when the running statistics are initializers (the
// model's parameters) they are updated in place on every forward pass, as
// PyTorch's train mode does, and like PyTorch with the unbiased batch
// variance (times n/(n-1), n = values per channel): fine-tuning then keeps
// the statistics the model was trained with consistent. Only a training
// request changes the parameters: a graph whose nodes say training_mode=1
// run by Run (inference) computes its outputs without side effects.
func buildBatchNorm[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) != 5 {
		return nil, fmt.Errorf("has %d inputs, want 5 (X, scale, B, mean, var)", len(in))
	}
	for i, name := range []string{"X", "scale", "B", "mean", "var"} {
		if in[i] == nil {
			return nil, fmt.Errorf("input %s is missing", name)
		}
	}
	x := in[0]
	if len(x.shape) < 2 {
		return nil, fmt.Errorf("input %v must have at least 2 dimensions (N, C, ...)", x.shape)
	}
	if b.opset < 9 && n.AttrInt("spatial", 1) != 1 {
		return nil, fmt.Errorf("spatial=%d (per-activation statistics) is not supported; only spatial=1", n.AttrInt("spatial", 1))
	}
	outputs := 0 // outputs present beyond Y
	for i, v := range n.Outputs {
		if i > 0 && v != nil {
			outputs = i
		}
	}
	var train bool
	switch {
	case b.opset >= 14:
		train = n.AttrInt("training_mode", 0) != 0
	case b.opset >= 7:
		train = outputs > 0
	default:
		train = outputs > 0 && n.AttrInt("is_test", 0) == 0
	}
	callerTrain := b.mode.trainsNode(n)
	train = train || callerTrain
	c := x.shape[1]
	for i, name := range []string{"scale", "B", "mean", "var"} {
		if s := in[i+1].shape; size(s) != c || len(s) > 1 {
			return nil, fmt.Errorf("%s has shape %v, want [%d] (the channels of X %v)", name, s, c, x.shape)
		}
	}
	if !train && outputs == 0 {
		if y, err := b.foldBatchNorm(n, in); y != nil || err != nil {
			return []*val[T]{y}, err
		}
	}
	k := &batchNorm[T]{
		shape:    x.shape,
		n:        x.shape[0],
		c:        c,
		hw:       size(x.shape[2:]),
		eps:      float64(n.AttrFloat("epsilon", 1e-5)),
		momentum: float64(n.AttrFloat("momentum", 0.9)),
		train:    train,
	}
	if train && callerTrain && !b.p.replica {
		mv, vv := n.Input(3), n.Input(4)
		if mv != nil && mv.IsConst() && vv != nil && vv.IsConst() && in[3].consts != nil && in[4].consts != nil {
			if k.n*k.hw < 2 {
				return nil, fmt.Errorf("training needs more than one value per channel, input %v has one (PyTorch refuses this too)", x.shape)
			}
			k.runMean, k.runVar = in[3].consts, in[4].consts
		}
	}
	y, err := b.apply(k, in...)
	if err != nil {
		return nil, err
	}
	outs := []*val[T]{y}
	g := b.p.model.Graph
	for i := 1; i < len(n.Outputs) && i < 5; i++ {
		v := n.Outputs[i]
		if v == nil || len(g.Consumers(v)) == 0 && !g.IsOutput(v) {
			outs = append(outs, nil)
			continue
		}
		if !train {
			// Inference leaves the running statistics as they are; saved
			// statistics do not exist.
			if i <= 2 {
				outs = append(outs, in[i+2])
				continue
			}
			return nil, fmt.Errorf("output %d (saved statistics) exists only in training", i)
		}
		s, err := b.apply(&bnStat[T]{bn: k, which: i - 1}, y)
		if err != nil {
			return nil, err
		}
		outs = append(outs, s)
	}
	return outs, nil
}

// batchNorm is BatchNormalization over X of shape [N, C, spatial...]:
// y = (x - mean) / sqrt(var + eps) * scale + B per channel, with the
// running statistics (inference) or the batch's (training, biased
// variance). Gradients flow to X, scale and B; in inference the gradient
// with respect to X uses the running variance, in training it goes through
// the batch statistics.
type batchNorm[T Float] struct {
	shape         []int
	n, c, hw      int
	eps, momentum float64
	train         bool
	// runMean and runVar are the live running statistics (the parameters'
	// data) to update in place in training, or nil.
	runMean, runVar []T
	// stats holds what the last training forward pass computed for the
	// statistics outputs: new running mean and variance (ONNX's
	// definition), batch mean and biased batch variance.
	stats [4][]T
	// runs counts forward passes; sums holds the per-channel sums the
	// three gradients share, for the run and the data they came from.
	runs uint64
	sums bnSums
	// relu applies a Relu to the output, and its gradient (see reluFuser).
	relu bool
}

func (k *batchNorm[T]) fuseRelu(bool) bool {
	k.relu = true
	return true
}

// bnSums are a batch normalization's per-channel sums for its backward
// pass: the mean it normalised with, Σ dy, Σ dy·(x - mean) and
// Σ (x - mean)², in float64.
type bnSums struct {
	run            uint64
	x, g           unsafe.Pointer // the data they were computed from
	mu, sg, sgd, q []float64
}

func (k *batchNorm[T]) describe() string {
	return fmt.Sprintf("BatchNormalization(%v eps=%g momentum=%g train=%v)", k.shape, k.eps, k.momentum, k.train)
}
func (k *batchNorm[T]) outShape() []int        { return k.shape }
func (k *batchNorm[T]) differentiable() []bool { return []bool{true, true, true, false, false} }

// block returns the contiguous spatial block of sample i, channel ch.
func (k *batchNorm[T]) block(x []T, i, ch int) []T {
	off := (i*k.c + ch) * k.hw
	return x[off : off+k.hw]
}

// batchStats returns the per-channel mean and biased variance of x (two
// passes, in float64).
func (k *batchNorm[T]) batchStats(x []T) (mean, variance []float64) {
	mean, variance = make([]float64, k.c), make([]float64, k.c)
	m := float64(k.n * k.hw)
	parallelFor(k.c, 2*len(x), func(c0, c1 int) {
		for ch := c0; ch < c1; ch++ {
			var s float64
			for i := 0; i < k.n; i++ {
				s += sumOf(k.block(x, i, ch))
			}
			mu := s / m
			var q float64
			for i := 0; i < k.n; i++ {
				q += sqDevOf(k.block(x, i, ch), mu)
			}
			mean[ch], variance[ch] = mu, q/m
		}
	})
	return mean, variance
}

// norm returns the per-channel mean, variance and 1/sqrt(var + eps) the
// output uses: the batch's in training, the running statistics otherwise.
func (k *batchNorm[T]) norm(in [][]T) (mean, variance, istd []float64) {
	if k.train {
		mean, variance = k.batchStats(in[0])
	} else {
		mean, variance = make([]float64, k.c), make([]float64, k.c)
		for ch := range mean {
			mean[ch], variance[ch] = float64(in[3][ch]), float64(in[4][ch])
		}
	}
	istd = make([]float64, k.c)
	for ch, v := range variance {
		istd[ch] = 1 / math.Sqrt(v+k.eps)
	}
	return mean, variance, istd
}

func (k *batchNorm[T]) forward(in [][]T, out []T) error {
	k.runs++
	x, scale, bias := in[0], in[1], in[2]
	mean, variance, istd := k.norm(in)
	parallelFor(k.c, len(out), func(c0, c1 int) {
		for ch := c0; ch < c1; ch++ {
			a := T(float64(scale[ch]) * istd[ch])
			c := T(float64(bias[ch]) - mean[ch]*float64(scale[ch])*istd[ch])
			for i := 0; i < k.n; i++ {
				y, xb := k.block(out, i, ch), k.block(x, i, ch)
				j := 0
				if y32, ok := any(y).([]float32); ok && affineF32 != nil {
					j = len(y) &^ 7
					affineF32(y32, any(xb).([]float32), float32(a), float32(c), k.relu)
				}
				for ; j < len(y); j++ {
					y[j] = xb[j]*a + c
					if k.relu {
						y[j] = max(y[j], 0)
					}
				}
			}
		}
	})
	if !k.train {
		return nil
	}
	// Statistics outputs, from the running statistics as they came in.
	m := float64(k.n * k.hw)
	for i := range k.stats {
		k.stats[i] = make([]T, k.c)
	}
	for ch := 0; ch < k.c; ch++ {
		v := variance[ch] // biased
		k.stats[0][ch] = T(float64(in[3][ch])*k.momentum + mean[ch]*(1-k.momentum))
		k.stats[1][ch] = T(float64(in[4][ch])*k.momentum + v*(1-k.momentum))
		k.stats[2][ch] = T(mean[ch])
		k.stats[3][ch] = T(v)
	}
	if k.runMean != nil {
		// PyTorch's update: the unbiased variance feeds the running one.
		unbias := m / (m - 1)
		for ch := 0; ch < k.c; ch++ {
			v := variance[ch]
			k.runMean[ch] = T(float64(k.runMean[ch])*k.momentum + mean[ch]*(1-k.momentum))
			k.runVar[ch] = T(float64(k.runVar[ch])*k.momentum + v*unbias*(1-k.momentum))
		}
	}
	return nil
}

// backward computes the statistics it needs from the inputs rather than
// keeping them from the forward pass (a kernel's inputs are all it can
// trust), folding them into one pass over x and dy that the three
// gradients share: the first computes it, the others of the same run and
// data reuse it.
// Its backward writes every element of dx, dscale and dbias.
func (k *batchNorm[T]) gradWritesAll(input int) bool { return input <= 2 }

func (k *batchNorm[T]) backward(which int, in [][]T, out, gout, gin []T) error {
	x := in[0]
	if which < 0 || which > 2 {
		return fmt.Errorf("input %d has no gradient", which)
	}
	if !k.train && which == 0 {
		// dx = dy * scale / sqrt(running_var + eps): the running variance,
		// not the batch's.
		parallelFor(k.c, len(x), func(c0, c1 int) {
			for ch := c0; ch < c1; ch++ {
				a := T(float64(in[1][ch]) / math.Sqrt(float64(in[4][ch])+k.eps))
				for i := 0; i < k.n; i++ {
					g, dx := k.block(gout, i, ch), k.block(gin, i, ch)
					if k.relu {
						passPositive(dx, g, k.block(out, i, ch), false)
						g = dx
					}
					for j := range dx {
						dx[j] = g[j] * a
					}
				}
			}
		})
		return nil
	}
	sums := k.backwardSums(in, out, gout)
	m := float64(k.n * k.hw)
	// Channels are independent: each writes only its own part of gin.
	parallelFor(k.c, len(x), func(c0, c1 int) {
		for ch := c0; ch < c1; ch++ {
			variance := float64(in[4][ch])
			if k.train {
				variance = sums.q[ch] / m
			}
			is := 1 / math.Sqrt(variance+k.eps)
			sgx := sums.sgd[ch] * is // sum dy * xhat
			switch which {
			case 2: // dB = sum dy
				gin[ch] = T(sums.sg[ch])
				continue
			case 1: // dscale = sum dy * xhat
				gin[ch] = T(sgx)
				continue
			}
			// Training: dx = scale*istd * (dy - mean(dy) - xhat * mean(dy*xhat)).
			// Expanded: dx = a*dy + c1*x + c0.
			a := float64(in[1][ch]) * is
			mg, mgx := sums.sg[ch]/m, sgx/m
			c1 := -a * is * mgx
			c0 := -a*mg - c1*sums.mu[ch]
			for i := 0; i < k.n; i++ {
				g, dx, xb := k.block(gout, i, ch), k.block(gin, i, ch), k.block(x, i, ch)
				var y []T
				if k.relu {
					y = k.block(out, i, ch)
				}
				j := 0
				if dx32, ok := any(dx).([]float32); ok && bnDxF32 != nil {
					j = len(dx) &^ 3
					bnDxF32(dx32, any(g).([]float32), any(y).([]float32), any(xb).([]float32), a, c1, c0)
				}
				if k.relu {
					passPositive(dx[j:], g[j:], y[j:], false)
					g = dx
				}
				for ; j < len(dx); j++ {
					dx[j] = T(a*float64(g[j]) + c1*float64(xb[j]) + c0)
				}
			}
		}
	})
	return nil
}

// backwardSums returns the sums of x and dy for this run's backward pass,
// computing them unless the last call of the run already did for the same
// data.
func (k *batchNorm[T]) backwardSums(in [][]T, out, gout []T) *bnSums {
	x := in[0]
	s := &k.sums
	xp, gp := unsafe.Pointer(unsafe.SliceData(x)), unsafe.Pointer(unsafe.SliceData(gout))
	if s.mu != nil && s.run == k.runs && s.x == xp && s.g == gp {
		return s
	}
	if s.mu == nil {
		s.mu, s.sg, s.sgd, s.q = make([]float64, k.c), make([]float64, k.c), make([]float64, k.c), make([]float64, k.c)
	}
	m := float64(k.n * k.hw)
	parallelFor(k.c, 2*len(x), func(c0, c1 int) {
		for ch := c0; ch < c1; ch++ {
			// One pass of sums of d = x - shift: the running mean, or in
			// training a value of the channel (near its mean, so the sums
			// do not cancel).
			shift := float64(in[3][ch])
			if k.train {
				shift = float64(k.block(x, 0, ch)[0])
			}
			var sd, sg, sgd, q float64
			for i := 0; i < k.n; i++ {
				var a, b, c, d float64
				if k.relu {
					a, b, c, d = maskedGradSums(k.block(gout, i, ch), k.block(out, i, ch), k.block(x, i, ch), shift)
				} else {
					a, b, c, d = gradSums(k.block(gout, i, ch), k.block(x, i, ch), shift)
				}
				sg, sgd, q, sd = sg+a, sgd+b, q+c, sd+d
			}
			mu := shift
			if k.train {
				mu = shift + sd/m
				q -= sd * sd / m
			}
			// Σ dy·(x - mu) = Σ dy·d - (mu - shift)·Σ dy; Σ (x - mu)² likewise.
			s.mu[ch], s.sg[ch], s.sgd[ch], s.q[ch] = mu, sg, sgd-(mu-shift)*sg, q
		}
	})
	s.run, s.x, s.g = k.runs, xp, gp
	return s
}

// bnStat outputs one of the statistics a training batchNorm computed in its
// forward pass. Its input is that pass's Y, which orders it after it.
type bnStat[T Float] struct {
	bn    *batchNorm[T]
	which int // 0 running mean, 1 running var, 2 saved mean, 3 saved var
}

func (k *bnStat[T]) describe() string {
	return fmt.Sprintf("%s.%s", k.bn.describe(), [...]string{"running_mean", "running_var", "saved_mean", "saved_var"}[k.which])
}
func (k *bnStat[T]) outShape() []int        { return []int{k.bn.c} }
func (k *bnStat[T]) differentiable() []bool { return []bool{false} }

func (k *bnStat[T]) forward(_ [][]T, out []T) error {
	if k.bn.stats[k.which] == nil {
		return fmt.Errorf("statistics read before the forward pass")
	}
	copy(out, k.bn.stats[k.which])
	return nil
}

func (k *bnStat[T]) backward(int, [][]T, []T, []T, []T) error {
	return fmt.Errorf("running statistics have no gradient")
}

// sumOf sums x in float64, with independent partial sums so the additions
// pipeline.
func sumOf[T Float](x []T) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	if x32, ok := any(x).([]float32); ok && sumF32 != nil {
		i = len(x) &^ 15
		s0 = sumF32(x32)
	}
	for ; i+4 <= len(x); i += 4 {
		s0 += float64(x[i])
		s1 += float64(x[i+1])
		s2 += float64(x[i+2])
		s3 += float64(x[i+3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// sumF32 and sqDevF32, when set (vec_amd64.go), compute sumOf and sqDevOf
// over the whole groups of 16 of a float32 slice, vectorised (the sums in
// another order: float64 rounding, not float32's, is what differs);
// affineF32 sets dst[i] = x[i]*a + c, then a Relu when relu is set, over
// the whole groups of 8 of dst, rounding as Go does.
// gradSumsF32, when set (vec_amd64.go), is gradSums (y nil) or
// maskedGradSums over the whole groups of 8 of a float32 slice,
// vectorised (the sums in another order); bnDxF32 computes a training
// BatchNormalization's dx = a·g + c1·x + c0 (g masked by y as
// maskedGradSums masks it, y nil: not) over the whole groups of 4 of dx,
// rounding as Go does.
var (
	gradSumsF32 func(g, y, x []float32, shift float64) [4]float64
	bnDxF32     func(dx, g, y, x []float32, a, c1, c0 float64)
)

var (
	sumF32    func(x []float32) float64
	sqDevF32  func(x []float32, mu float64) float64
	affineF32 func(dst, x []float32, a, c float32, relu bool)
)

// sqDevOf is the sum of (x - mu)^2.
func sqDevOf[T Float](x []T, mu float64) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	if x32, ok := any(x).([]float32); ok && sqDevF32 != nil {
		i = len(x) &^ 15
		s0 = sqDevF32(x32, mu)
	}
	for ; i+4 <= len(x); i += 4 {
		d0, d1 := float64(x[i])-mu, float64(x[i+1])-mu
		d2, d3 := float64(x[i+2])-mu, float64(x[i+3])-mu
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(x); i++ {
		d := float64(x[i]) - mu
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}

// maskedGradSums is gradSums of g where y, a Relu's output, is positive
// and 0 elsewhere: the gradient through a fused Relu (see passPositive).
func maskedGradSums[T Float](g, y, x []T, shift float64) (sg, sgd, q, sd float64) {
	g, y = g[:len(x)], y[:len(x)]
	if g32, ok := any(g).([]float32); ok {
		y32, x32 := any(y).([]float32), any(x).([]float32)
		i0 := 0
		if gradSumsF32 != nil {
			s := gradSumsF32(g32, y32, x32, shift)
			sg, sgd, q, sd = s[0], s[1], s[2], s[3]
			i0 = len(x) &^ 7
		}
		for i := i0; i < len(x32); i++ {
			v := x32[i]
			keep := uint32(-int32(math.Float32bits(y32[i])) >> 31)
			gi := float64(math.Float32frombits(math.Float32bits(g32[i]) & keep))
			d := float64(v) - shift
			sg += gi
			sgd += gi * d
			q += d * d
			sd += d
		}
		return sg, sgd, q, sd
	}
	for i, v := range x {
		gi := float64(g[i] * step(y[i]))
		d := float64(v) - shift
		sg += gi
		sgd += gi * d
		q += d * d
		sd += d
	}
	return sg, sgd, q, sd
}

// gradSums returns, for d = x - shift, sum g, sum g*d, sum d^2 and sum d.
func gradSums[T Float](g, x []T, shift float64) (sg, sgd, q, sd float64) {
	g = g[:len(x)]
	i0 := 0
	if g32, ok := any(g).([]float32); ok && gradSumsF32 != nil {
		s := gradSumsF32(g32, nil, any(x).([]float32), shift)
		sg, sgd, q, sd = s[0], s[1], s[2], s[3]
		i0 = len(x) &^ 7
	}
	for i := i0; i < len(x); i++ {
		v := x[i]
		gi := float64(g[i])
		d := float64(v) - shift
		sg += gi
		sgd += gi * d
		q += d * d
		sd += d
	}
	return sg, sgd, q, sd
}
