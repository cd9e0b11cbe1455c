package runtime

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/graft-dev/graft/onnx"
)

func registerElementwise[T Float](r registry[T]) {
	un := func(name string, f func(x T) T, df func(x, y T) T) {
		r[name] = func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
			if out, ok, err := foldInts(name, in); ok {
				return out, err
			}
			return one(b.apply(&unary[T]{name: name, shape: in[0].shape, f: f, df: df}, in[0]))
		}
	}
	un("Relu", func(x T) T { return max(x, 0) }, func(x, _ T) T { return step(x) })
	un("Sigmoid", sigmoid[T], func(_, y T) T { return y * (1 - y) })
	un("Tanh", func(x T) T { return T(math.Tanh(float64(x))) }, func(_, y T) T { return 1 - y*y })
	un("Neg", func(x T) T { return -x }, func(_, _ T) T { return -1 })
	un("Exp", func(x T) T { return T(math.Exp(float64(x))) }, func(_, y T) T { return y })
	un("Log", func(x T) T { return T(math.Log(float64(x))) }, func(x, _ T) T { return 1 / x })
	un("Sqrt", func(x T) T { return T(math.Sqrt(float64(x))) }, func(_, y T) T { return 0.5 / y })
	un("Abs", func(x T) T { return T(math.Abs(float64(x))) }, func(x, _ T) T { return sign(x) })
	un("Identity", func(x T) T { return x }, func(_, _ T) T { return 1 })
	r["LeakyRelu"] = func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
		alpha := T(n.AttrFloat("alpha", 0.01))
		return one(b.apply(&unary[T]{name: fmt.Sprintf("LeakyRelu(%g)", alpha), shape: in[0].shape,
			f: func(x T) T { return leaky(x, alpha) },
			df: func(x, _ T) T {
				if x > 0 {
					return 1
				}
				return alpha
			}}, in[0]))
	}
	r["Clip"] = buildClip[T]
	r["Dropout"] = buildDropout[T]
	bin := func(name string, f func(a, b T) T, da, db func(a, b, y T) T) {
		r[name] = func(b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
			if len(in) != 2 || in[0] == nil || in[1] == nil {
				return nil, fmt.Errorf("needs 2 inputs")
			}
			if out, ok, err := foldInts(name, in); ok {
				return out, err
			}
			if in[0].integral() {
				return one(b.intArithmetic(name, in[0], in[1]))
			}
			if name == "Add" {
				if y, err := b.fuseAdd(n, in); y != nil || err != nil {
					return one(y, err)
				}
			}
			k, err := newBinary(name, in[0].shape, in[1].shape, f, da, db)
			if err != nil {
				return nil, err
			}
			return one(b.apply(k, in[0], in[1]))
		}
	}
	bin("Add", func(a, b T) T { return a + b }, func(_, _, _ T) T { return 1 }, func(_, _, _ T) T { return 1 })
	bin("Sub", func(a, b T) T { return a - b }, func(_, _, _ T) T { return 1 }, func(_, _, _ T) T { return -1 })
	bin("Mul", func(a, b T) T { return a * b }, func(_, b, _ T) T { return b }, func(a, _, _ T) T { return a })
	bin("Div", func(a, b T) T { return a / b }, func(_, b, _ T) T { return 1 / b }, func(a, b, _ T) T { return -a / (b * b) })
	bin("Pow", func(a, b T) T { return T(math.Pow(float64(a), float64(b))) },
		func(a, b, _ T) T { return b * T(math.Pow(float64(a), float64(b-1))) },
		func(a, _, y T) T { return T(math.Log(float64(a))) * y })
}

func one[T Float](v *val[T], err error) ([]*val[T], error) {
	if err != nil {
		return nil, err
	}
	return []*val[T]{v}, nil
}

// passPositiveF32, when set (vec_amd64.go), is passPositive for float32
// over the whole groups of 8 of dst, vectorised. (Its mask differs from
// the loop's only at y = -0, which a Relu never outputs.)
var passPositiveF32 func(dst, g, y []float32, add bool)

// step is the derivative of Relu: 1 for x > 0, else 0 (PyTorch's choice at 0).
// passPositive writes (or, with add, adds) g where y, the output of a
// Relu, is positive into dst, and 0 elsewhere: the gradient through the
// Relu. For float32, without a branch to mispredict: y >= 0, so y > 0
// exactly when its bits, as an integer, are positive.
func passPositive[T Float](dst, g, y []T, add bool) {
	g, y = g[:len(dst)], y[:len(dst)]
	if d32, ok := any(dst).([]float32); ok {
		g32, y32 := any(g).([]float32), any(y).([]float32)
		i0 := 0
		if passPositiveF32 != nil {
			passPositiveF32(d32, g32, y32, add)
			i0 = len(d32) &^ 7
		}
		for i := i0; i < len(y32); i++ {
			v := y32[i]
			keep := uint32(-int32(math.Float32bits(v)) >> 31) // all ones when positive
			m := math.Float32frombits(math.Float32bits(g32[i]) & keep)
			if add {
				d32[i] += m
			} else {
				d32[i] = m
			}
		}
		return
	}
	for i, v := range y {
		m := g[i] * step(v)
		if add {
			dst[i] += m
		} else {
			dst[i] = m
		}
	}
}

func step[T Float](x T) T {
	if x > 0 {
		return 1
	}
	return 0
}

func sign[T Float](x T) T {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

func leaky[T Float](x, alpha T) T {
	if x > 0 {
		return x
	}
	return alpha * x
}

func sigmoid[T Float](x T) T {
	if x >= 0 {
		return T(1 / (1 + math.Exp(-float64(x))))
	}
	e := math.Exp(float64(x))
	return T(e / (1 + e))
}

// reluF32 and reluGradF32, when set (vec_amd64.go), compute relu and
// reluGrad for float32 on the whole groups of 8 of dst, vectorised.
var reluF32, reluGradF32 func(dst, x, y []float32)

// relu sets dst[i] = max(x[i], 0): +0 for -0, NaN kept.
func relu[T Float](dst, x []T) {
	i := 0
	if d, ok := any(dst).([]float32); ok && reluF32 != nil {
		i = len(d) &^ 7
		reluF32(d, any(x).([]float32), nil)
	}
	x = x[:len(dst)]
	for ; i < len(dst); i++ {
		dst[i] = max(x[i], 0) // no branch to mispredict
	}
}

// reluGrad sets dst[i] = g[i] where x[i] > 0 (x the Relu's input, or its
// output), else 0: the gradient through a Relu, PyTorch's choice at 0.
func reluGrad[T Float](dst, g, x []T) {
	i := 0
	if d, ok := any(dst).([]float32); ok && reluGradF32 != nil {
		i = len(d) &^ 7
		reluGradF32(d, any(g).([]float32), any(x).([]float32))
	}
	g, x = g[:len(dst)], x[:len(dst)]
	for ; i < len(dst); i++ {
		if x[i] > 0 {
			dst[i] = g[i]
		} else {
			dst[i] = 0
		}
	}
}

// unary applies f elementwise; df gives dy/dx from x and y.
type unary[T Float] struct {
	name  string
	shape []int
	f     func(x T) T
	df    func(x, y T) T
}

func (k *unary[T]) describe() string       { return k.name }
func (k *unary[T]) outShape() []int        { return k.shape }
func (k *unary[T]) differentiable() []bool { return []bool{true} }

func (k *unary[T]) forward(in [][]T, out []T) error {
	x := in[0]
	parallelFor(len(out), len(out), func(lo, hi int) {
		x, out := x[lo:hi], out[lo:hi]
		if k.name == "Relu" {
			relu(out, x)
			return
		}
		for i, v := range x {
			out[i] = k.f(v)
		}
	})
	return nil
}

func (k *unary[T]) writesAll() {}

func (k *unary[T]) gradWritesAll(int) bool { return true }

func (k *unary[T]) backward(_ int, in [][]T, out, gout, gin []T) error {
	x := in[0]
	parallelFor(len(gin), len(gin), func(lo, hi int) {
		x, out, gout, gin := x[lo:hi], out[lo:hi], gout[lo:hi], gin[lo:hi]
		if k.name == "Relu" {
			reluGrad(gin, gout, x)
			return
		}
		for i, v := range x {
			gin[i] = gout[i] * k.df(v, out[i])
		}
	})
	return nil
}

// buildClip handles both forms: min/max attributes (opset < 11) and
// optional constant inputs (opset 11+).
func buildClip[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	lo, hi := T(math.Inf(-1)), T(math.Inf(1))
	if b.opset < 11 {
		lo, hi = T(n.AttrFloat("min", float32(math.Inf(-1)))), T(n.AttrFloat("max", float32(math.Inf(1))))
	} else {
		for i, dst := range []*T{&lo, &hi} {
			if len(in) > i+1 && in[i+1] != nil {
				c, err := b.floatConsts(in, i+1, []string{"min", "max"}[i])
				if err != nil {
					return nil, err
				}
				*dst = c[0]
			}
		}
	}
	return one(b.apply(&unary[T]{name: fmt.Sprintf("Clip(%g,%g)", lo, hi), shape: in[0].shape,
		f: func(x T) T { return min(max(x, lo), hi) },
		// PyTorch's clamp passes the gradient where lo <= x <= hi.
		df: func(x, _ T) T {
			if x >= lo && x <= hi {
				return 1
			}
			return 0
		}}, in[0]))
}

// buildDropout is the identity in inference, and drops with the ratio in
// training mode, with masks from the program's seeded generator.
func buildDropout[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	ratio := T(n.AttrFloat("ratio", 0.5))
	train := b.mode.train
	if b.opset >= 12 {
		ratio = 0.5
		if len(in) > 1 && in[1] != nil {
			c, err := b.floatConsts(in, 1, "ratio")
			if err != nil {
				return nil, err
			}
			ratio = c[0]
		}
		if len(in) > 2 && in[2] != nil {
			t, err := b.intsOf(in, 2, "training_mode")
			if err != nil {
				return nil, err
			}
			train = train || t[0] != 0
		}
	}
	mask := false
	if len(n.Outputs) > 1 && n.Outputs[1] != nil {
		g, v := b.p.model.Graph, n.Outputs[1]
		mask = g.IsOutput(v) || len(g.Consumers(v)) > 0
	}
	if !train || ratio == 0 {
		y, err := b.apply(&unary[T]{name: "Dropout(inference)", shape: in[0].shape,
			f: func(x T) T { return x }, df: func(_, _ T) T { return 1 }}, in[0])
		if err != nil || !mask {
			return []*val[T]{y}, err
		}
		// Nothing is dropped: the mask is all true.
		ones := make([]int64, size(in[0].shape))
		for i := range ones {
			ones[i] = 1
		}
		return []*val[T]{y, {ints: ones, shape: in[0].shape, elem: onnx.Bool}}, nil
	}
	if ratio < 0 || ratio >= 1 {
		return nil, fmt.Errorf("ratio %g is outside [0, 1)", ratio)
	}
	k := &dropout[T]{shape: in[0].shape, ratio: ratio, rng: b.p.rng.Float64}
	y, err := b.apply(k, in[0])
	if err != nil || !mask {
		return []*val[T]{y}, err
	}
	m, err := b.applyInt(&dropoutMask[T]{drop: k}, onnx.Bool, y)
	return []*val[T]{y, m}, err
}

// dropoutMask is Dropout's mask output: the elements its kernel kept, read
// after it ran (its output is the input, for the order).
type dropoutMask[T Float] struct{ drop *dropout[T] }

func (k *dropoutMask[T]) describe() string       { return k.drop.describe() + ".mask" }
func (k *dropoutMask[T]) outShape() []int        { return k.drop.shape }
func (k *dropoutMask[T]) differentiable() []bool { return []bool{false} }

func (k *dropoutMask[T]) forward(_ [][]T, out []T) error {
	for i, keep := range k.drop.mask {
		if keep {
			out[i] = 1
		}
	}
	return nil
}

func (k *dropoutMask[T]) backward(int, [][]T, []T, []T, []T) error {
	return fmt.Errorf("%s has no gradient", k.describe())
}

// dropout zeroes elements with probability ratio and scales the rest by
// 1/(1-ratio). The mask drawn in forward is reused by backward.
type dropout[T Float] struct {
	shape []int
	ratio T
	rng   func() float64
	mask  []bool
}

func (k *dropout[T]) describe() string       { return fmt.Sprintf("Dropout(%g)", k.ratio) }
func (k *dropout[T]) outShape() []int        { return k.shape }
func (k *dropout[T]) differentiable() []bool { return []bool{true} }

func (k *dropout[T]) forward(in [][]T, out []T) error {
	k.mask = make([]bool, len(out))
	scale := 1 / (1 - k.ratio)
	for i, x := range in[0] {
		if k.rng() >= float64(k.ratio) {
			k.mask[i] = true
			out[i] = x * scale
		}
	}
	return nil
}

func (k *dropout[T]) backward(_ int, _ [][]T, _, gout, gin []T) error {
	scale := 1 / (1 - k.ratio)
	for i, keep := range k.mask {
		if keep {
			gin[i] = gout[i] * scale
		}
	}
	return nil
}

// broadcast returns numpy's broadcast of two shapes.
func broadcast(a, b []int) ([]int, error) {
	r := max(len(a), len(b))
	out := make([]int, r)
	for i := 0; i < r; i++ {
		da, db := 1, 1
		if j := i - (r - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (r - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db || db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

// broadcastIndex maps each element of out to the element of in that numpy
// broadcasting reads.
func broadcastIndex(in, out []int) []int32 {
	strides := make([]int, len(out))
	s := 1
	for i := len(in) - 1; i >= 0; i-- {
		j := i + len(out) - len(in)
		if in[i] != 1 {
			strides[j] = s
		}
		s *= in[i]
	}
	idx := make([]int32, size(out))
	pos := make([]int, len(out))
	off := 0
	for o := range idx {
		idx[o] = int32(off)
		for d := len(out) - 1; d >= 0; d-- {
			pos[d]++
			off += strides[d]
			if pos[d] < out[d] {
				break
			}
			off -= strides[d] * pos[d]
			pos[d] = 0
		}
	}
	return idx
}

// table is an index table built when a kernel first runs, not when the
// graph is built: a session built only for its memory estimate allocates
// nothing in proportion to the activations. The estimate counts it as
// scratch.
type table struct {
	once  sync.Once
	n     int
	build func() []int32
	idx   []int32
}

func lazyTable(n int, build func() []int32) *table { return &table{n: n, build: build} }

// get returns the table, nil for a nil *table (no table needed).
func (t *table) get() []int32 {
	if t == nil {
		return nil
	}
	t.once.Do(func() { t.idx, t.build = t.build(), nil })
	return t.idx
}

func (t *table) bytes() int64 {
	if t == nil {
		return 0
	}
	return 4 * int64(t.n)
}

// binaryOp applies f to two broadcast inputs.
type binaryOp[T Float] struct {
	name   string
	out    []int
	ia, ib *table // source element per output element; nil when shapes equal
	// amod, bmod, when not 0, say an input broadcasts as a suffix of the
	// output's shape (a bias, a norm's scale, a scalar): output element i
	// reads its element i % mod, without a table.
	amod, bmod int
	f          func(a, b T) T
	da, db     func(a, b, y T) T
	relu       bool // a fused Relu after an Add (see fuseRelu)
}

func newBinary[T Float](name string, a, b []int, f func(a, b T) T, da, db func(a, b, y T) T) (*binaryOp[T], error) {
	out, err := broadcast(a, b)
	if err != nil {
		return nil, err
	}
	k := &binaryOp[T]{name: name, out: out, f: f, da: da, db: db}
	switch {
	case size(a) == size(out):
	case suffixOf(a, out):
		k.amod = size(a)
	default:
		k.ia = lazyTable(size(out), func() []int32 { return broadcastIndex(a, out) })
	}
	switch {
	case size(b) == size(out):
	case suffixOf(b, out):
		k.bmod = size(b)
	default:
		k.ib = lazyTable(size(out), func() []int32 { return broadcastIndex(b, out) })
	}
	return k, nil
}

// suffixOf reports whether in, leading 1s dropped, is the tail of out's
// shape: broadcasting it repeats it whole, element i of the output reading
// element i % size(in).
func suffixOf(in, out []int) bool {
	for len(in) > 0 && in[0] == 1 {
		in = in[1:]
	}
	return len(in) <= len(out) && slices.Equal(in, out[len(out)-len(in):])
}

// src returns the element of an input, broadcast by idx or mod, that
// output element i reads.
func src(idx []int32, mod, i int) int {
	switch {
	case idx != nil:
		return int(idx[i])
	case mod != 0:
		return i % mod
	}
	return i
}

func (k *binaryOp[T]) scratchBytes() int64 { return k.ia.bytes() + k.ib.bytes() }

func (k *binaryOp[T]) describe() string {
	if k.relu {
		return k.name + "+Relu"
	}
	return k.name
}
func (k *binaryOp[T]) outShape() []int        { return k.out }
func (k *binaryOp[T]) differentiable() []bool { return []bool{true, true} }

func at(idx []int32, i int) int {
	if idx == nil {
		return i
	}
	return int(idx[i])
}

func (k *binaryOp[T]) forward(in [][]T, out []T) error {
	a, b := in[0], in[1]
	ia, ib := k.ia.get(), k.ib.get()
	parallelFor(len(out), len(out), func(lo, hi int) {
		if ia == nil && ib == nil && k.amod == 0 && k.bmod == 0 {
			a, b, out := a[lo:hi], b[lo:hi], out[lo:hi]
			if k.name == "Add" { // a residual connection: inlined, not a call per element
				b = b[:len(a)]
				if k.relu {
					for i := range out {
						out[i] = max(a[i]+b[i], 0)
					}
					return
				}
				for i := range out {
					out[i] = a[i] + b[i]
				}
				return
			}
			for i := range out {
				out[i] = k.f(a[i], b[i])
			}
			return
		}
		if ia == nil && k.amod == 0 && k.bmod != 0 { // a bias or a scale along the last axes
			n, j := k.bmod, lo%k.bmod
			switch k.name {
			case "Add":
				for i := lo; i < hi; i++ {
					out[i] = a[i] + b[j]
					if j++; j == n {
						j = 0
					}
				}
			case "Mul":
				for i := lo; i < hi; i++ {
					out[i] = a[i] * b[j]
					if j++; j == n {
						j = 0
					}
				}
			default:
				for i := lo; i < hi; i++ {
					out[i] = k.f(a[i], b[j])
					if j++; j == n {
						j = 0
					}
				}
			}
			return
		}
		for i := lo; i < hi; i++ {
			out[i] = k.f(a[src(ia, k.amod, i)], b[src(ib, k.bmod, i)])
		}
	})
	return nil
}

// fuseRelu: an Add (a residual connection) applies the Relu after it, and
// masks the gradient with it (see passPositive).
func (k *binaryOp[T]) fuseRelu(bool) bool {
	if k.name != "Add" || k.ia != nil || k.ib != nil || k.amod != 0 || k.bmod != 0 {
		return false
	}
	k.relu = true
	return true
}

func (k *binaryOp[T]) writesAll() {}

// The gradient of an input of the output's size is written element by
// element; that of a broadcast input is summed.
func (k *binaryOp[T]) gradWritesAll(input int) bool {
	if input == 0 {
		return k.ia == nil && k.amod == 0
	}
	return k.ib == nil && k.bmod == 0
}

func (k *binaryOp[T]) backward(which int, in [][]T, out, gout, gin []T) error {
	a, b := in[0], in[1]
	ia, ib := k.ia.get(), k.ib.get()
	d, idx, mod := k.da, ia, k.amod
	if which == 1 {
		d, idx, mod = k.db, ib, k.bmod
	}
	body := func(lo, hi int) {
		if ia == nil && ib == nil && k.amod == 0 && k.bmod == 0 {
			a, b, out, gout, gin := a[lo:hi], b[lo:hi], out[lo:hi], gout[lo:hi], gin[lo:hi]
			if k.name == "Add" {
				if k.relu {
					passPositive(gin, gout, out, false)
					return
				}
				copy(gin, gout) // d = 1
				return
			}
			for i := range gin {
				gin[i] = gout[i] * d(a[i], b[i], out[i])
			}
			return
		}
		if idx == nil && mod == 0 { // one output element each
			for i := lo; i < hi; i++ {
				gin[i] = gout[i] * d(a[src(ia, k.amod, i)], b[src(ib, k.bmod, i)], out[i])
			}
			return
		}
		for i := lo; i < hi; i++ {
			gin[src(idx, mod, i)] += gout[i] * d(a[src(ia, k.amod, i)], b[src(ib, k.bmod, i)], out[i])
		}
	}
	if idx != nil || mod != 0 { // several outputs may add into one element: keep the order
		body(0, len(out))
		return nil
	}
	parallelFor(len(out), len(out), body)
	return nil
}

// crossEntropy is the mean over the batch of -sum(target * log p), where
// log p is log_softmax(x) for logits (CrossEntropy), x itself for
// log-probabilities (NLL), or log(max(x, minProbability)) for
// probabilities (ProbabilityNLL).
type crossEntropy[T Float] struct {
	n, k   int
	scores Loss
}

// minProbability bounds the probabilities ProbabilityNLL takes the log of,
// so a probability that underflowed to 0 gives a large finite loss and no
// gradient, rather than an infinite loss.
const minProbability = 1e-30

func (c *crossEntropy[T]) describe() string       { return fmt.Sprintf("CrossEntropy(%v)", c.scores) }
func (c *crossEntropy[T]) outShape() []int        { return nil }
func (c *crossEntropy[T]) differentiable() []bool { return []bool{true, false} }

func (c *crossEntropy[T]) logp(x []T) []T {
	switch c.scores {
	case CrossEntropy:
		lp := make([]T, len(x))
		logSoftmaxRows(x, lp, c.n, c.k)
		return lp
	case ProbabilityNLL:
		lp := make([]T, len(x))
		for i, p := range x {
			lp[i] = T(math.Log(max(float64(p), minProbability)))
		}
		return lp
	}
	return x
}

func (c *crossEntropy[T]) forward(in [][]T, out []T) error {
	lp, t := c.logp(in[0]), in[1]
	var sum float64
	for i := range lp {
		if t[i] != 0 {
			sum -= float64(t[i]) * float64(lp[i])
		}
	}
	out[0] = T(sum / float64(c.n))
	return nil
}

func (c *crossEntropy[T]) backward(_ int, in [][]T, _, gout, gin []T) error {
	t := in[1]
	g := gout[0] / T(c.n)
	switch c.scores {
	case NLL:
		for i := range gin {
			gin[i] = -t[i] * g
		}
		return nil
	case ProbabilityNLL:
		for i, p := range in[0] {
			gin[i] = 0
			if float64(p) > minProbability {
				gin[i] = -t[i] * g / p
			}
		}
		return nil
	}
	lp := c.logp(in[0])
	for r := 0; r < c.n; r++ {
		var tsum T
		for j := 0; j < c.k; j++ {
			tsum += t[r*c.k+j]
		}
		for j := 0; j < c.k; j++ {
			i := r*c.k + j
			gin[i] = g * (T(math.Exp(float64(lp[i])))*tsum - t[i])
		}
	}
	return nil
}

// logSoftmaxRows computes log_softmax over each row of an n x k matrix.
func logSoftmaxRows[T Float](x, out []T, n, k int) {
	for r := 0; r < n; r++ {
		row := x[r*k : (r+1)*k]
		m := row[0]
		for _, v := range row {
			m = max(m, v)
		}
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v - m))
		}
		ls := T(math.Log(s))
		for j, v := range row {
			out[r*k+j] = v - m - ls
		}
	}
}
