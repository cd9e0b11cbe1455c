package runtime

import (
	"fmt"
	"math"
	goruntime "runtime"
	"slices"
	"sync"
	"unsafe"

	"github.com/graft-dev/graft/onnx"
	G "gorgonia.org/gorgonia"
)

func registerConv[T Float](r registry[T]) {
	r["Conv"] = buildConv[T]
	r["ConvTranspose"] = buildConvTranspose[T]
}

// window describes a sliding window over the spatial axes of an N-d input
// (N = 1, 2 or 3), shared by convolution and pooling.
type window struct {
	in, out   []int // spatial sizes
	kernel    []int
	strides   []int
	dilations []int
	padsBegin []int
	padsEnd   []int
}

// attrInts reads an ints attribute that must have count values, or count
// copies of def when it is absent (strides, dilations, pads, ...).
func attrInts(n *onnx.Node, name string, def, count int) ([]int, error) {
	v := n.AttrInts(name, nil)
	if v == nil {
		out := make([]int, count)
		for i := range out {
			out[i] = def
		}
		return out, nil
	}
	if len(v) != count {
		return nil, fmt.Errorf("attribute %s has %d values, want %d", name, len(v), count)
	}
	return ints(v), nil
}

// newWindow reads kernel_shape, strides, dilations, pads, auto_pad and
// ceil_mode for input spatial sizes in.
func newWindow(n *onnx.Node, in, kernel []int) (*window, error) {
	r := len(in)
	w := &window{in: in, kernel: kernel}
	get := func(name string, def, count int) ([]int, error) { return attrInts(n, name, def, count) }
	var err error
	if w.strides, err = get("strides", 1, r); err != nil {
		return nil, err
	}
	if w.dilations, err = get("dilations", 1, r); err != nil {
		return nil, err
	}
	pads, err := get("pads", 0, 2*r)
	if err != nil {
		return nil, err
	}
	w.padsBegin, w.padsEnd = pads[:r], pads[r:]
	ceil := n.AttrInt("ceil_mode", 0) == 1
	autoPad := n.AttrString("auto_pad", "NOTSET")
	w.out = make([]int, r)
	for i := 0; i < r; i++ {
		if w.kernel[i] < 1 || w.strides[i] < 1 || w.dilations[i] < 1 {
			return nil, fmt.Errorf("kernel %v, strides %v and dilations %v must be positive", w.kernel, w.strides, w.dilations)
		}
		eff := w.dilations[i]*(w.kernel[i]-1) + 1
		switch autoPad {
		case "SAME_UPPER", "SAME_LOWER":
			out := (in[i] + w.strides[i] - 1) / w.strides[i]
			total := max(0, (out-1)*w.strides[i]+eff-in[i])
			small, big := total/2, total-total/2
			if autoPad == "SAME_UPPER" {
				w.padsBegin[i], w.padsEnd[i] = small, big
			} else {
				w.padsBegin[i], w.padsEnd[i] = big, small
			}
			w.out[i] = out
		case "VALID":
			w.padsBegin[i], w.padsEnd[i] = 0, 0
			w.out[i] = (in[i]-eff)/w.strides[i] + 1
		case "NOTSET", "":
			span := in[i] + w.padsBegin[i] + w.padsEnd[i] - eff
			if ceil {
				w.out[i] = (span+w.strides[i]-1)/w.strides[i] + 1
				// A window may not start in the end padding.
				if (w.out[i]-1)*w.strides[i] >= in[i]+w.padsBegin[i] {
					w.out[i]--
				}
			} else {
				w.out[i] = span/w.strides[i] + 1
			}
		default:
			return nil, fmt.Errorf("unknown auto_pad %q", autoPad)
		}
		if w.out[i] < 1 {
			return nil, fmt.Errorf("window %v (dilations %v, pads %v/%v) does not fit input %v", w.kernel, w.dilations, w.padsBegin, w.padsEnd, in)
		}
	}
	return w, nil
}

func (w *window) String() string {
	return fmt.Sprintf("k%v s%v d%v p%v/%v", w.kernel, w.strides, w.dilations, w.padsBegin, w.padsEnd)
}

// forEach calls f for every output position o (flat over the spatial
// output) and kernel position q (flat over the kernel) with the flat input
// position, or -1 where the window reads padding.
func (w *window) forEach(f func(o, q, i int)) {
	r := len(w.in)
	outN, kN := size(w.out), size(w.kernel)
	opos, kpos := make([]int, r), make([]int, r)
	for o := 0; o < outN; o++ {
		unflatten(o, w.out, opos)
		for q := 0; q < kN; q++ {
			unflatten(q, w.kernel, kpos)
			i := 0
			for d := 0; d < r; d++ {
				x := opos[d]*w.strides[d] - w.padsBegin[d] + kpos[d]*w.dilations[d]
				if x < 0 || x >= w.in[d] {
					i = -1
					break
				}
				i = i*w.in[d] + x
			}
			f(o, q, i)
		}
	}
}

func unflatten(i int, shape, pos []int) {
	for d := len(shape) - 1; d >= 0; d-- {
		pos[d] = i % shape[d]
		i /= shape[d]
	}
}

// conv is an N-d grouped convolution: x [N, C, spatial...], w [M, C/group,
// kernel...], optional b [M]. It lowers each image and group to im2col and
// one GEMM.
type conv[T Float] struct {
	n, c, m, group int
	win            *window
	hasBias        bool
	out            []int
	// plane describes 1-d and 2-d windows as 2-d, for the direct im2col
	// and col2im loops; nil for 3-d, which use gather.
	plane *plane2d
	// direct marks a 1x1, stride-1, unpadded window: the input of one
	// image and group already is the im2col matrix.
	direct bool
	// gather[(c*kN+q)*oN+o]: for each (channel, kernel position) pair of
	// one group and output position, the input offset or -1. Built on the
	// first run, only when plane is nil and the window is not direct: it is
	// as large as an im2col matrix, so it waits until the memory estimate
	// has passed.
	gather     []int32
	gatherOnce sync.Once
	// cols is the im2col buffer (the program's workspace's), wt the
	// weight's transpose.
	cols *scratch[T]
	wt   scratch[T]
	// wino, when set, computes the forward pass instead of im2col: a
	// float32 3x3 convolution of fixed weights (Options.FixedWeights).
	// winoDX computes the input gradient of one, which is itself a 3x3
	// convolution of the output gradient (see dxWindow).
	wino, winoDX *winograd
	// panels, when set, computes the float32 forward pass in place of
	// im2col (see convPanels).
	panels *convPanels
	packed *scratch[float32] // B packed once when shared (panelsShared)
	// fixed marks weights that never change (Options.FixedWeights): the
	// panels' products read them packed once, by group, from pw.
	fixed bool
	pw    []*sgemmPackedA
	pwMu  sync.Mutex
	// fold, when set, scales the weight input's output channels: a
	// BatchNormalization folded into a convolution that packs (panels)
	// or transforms (Winograd) its weights once, scaling them then (see
	// foldBatchNorm).
	fold []float64
	// grad marks a convolution some gradient flows through: its backward
	// pass lowers to im2col.
	grad bool
	// relu applies a Relu to the output (see reluFuser).
	relu bool
	// residual marks a convolution whose last input, of the output's
	// shape, is added to its output before the Relu: an Add folded into it
	// (see fuseAdd).
	residual bool
	// dx marks a convolution whose input gradient a session computes: it
	// keeps the weight's transpose (wt) for it.
	dx bool
}

// fuseRelu: a convolution applies a Relu only where no gradient flows
// back through it.
func (k *conv[T]) fuseRelu(grad bool) bool {
	k.relu = !grad
	return k.relu
}

// plane2d is a 2-d window (a 1-d one has height 1). For kernel column kw,
// the output columns [lo[kw], hi[kw]) read the input (the others read
// padding), output column ow reading input column ow*sw+off[kw].
type plane2d struct {
	h, w, oh, ow, kh, kw int
	sh, dh, ph, sw       int
	lo, hi, off          []int
}

func newPlane2d(win *window) *plane2d {
	if len(win.in) > 2 {
		return nil
	}
	p := &plane2d{h: 1, oh: 1, kh: 1, sh: 1, dh: 1}
	if len(win.in) == 2 {
		p.h, p.oh, p.kh = win.in[0], win.out[0], win.kernel[0]
		p.sh, p.dh, p.ph = win.strides[0], win.dilations[0], win.padsBegin[0]
	}
	d := len(win.in) - 1
	p.w, p.ow, p.kw, p.sw = win.in[d], win.out[d], win.kernel[d], win.strides[d]
	p.lo, p.hi, p.off = make([]int, p.kw), make([]int, p.kw), make([]int, p.kw)
	for kw := 0; kw < p.kw; kw++ {
		off := kw*win.dilations[d] - win.padsBegin[d]
		lo, hi := 0, p.ow
		for lo < p.ow && lo*p.sw+off < 0 {
			lo++
		}
		for hi > lo && (hi-1)*p.sw+off >= p.w {
			hi--
		}
		p.lo[kw], p.hi[kw], p.off[kw] = lo, hi, off
	}
	return p
}

// rowOf splits im2col row r into the offset of its input channel (in the
// group's input), its input row for output row 0, and its kernel column.
func (p *plane2d) rowOf(r int) (base, ih0, kw int) {
	kN := p.kh * p.kw
	c, q := r/kN, r%kN
	kh := q / p.kw
	return c * p.h * p.w, kh*p.dh - p.ph, q % p.kw
}

// im2col fills rows [r0, r1) of cols [cg*kN, oN] from x (one group of one
// image).
func planeIm2col[T Float](p *plane2d, x, cols []T, r0, r1 int) {
	oN := p.oh * p.ow
	for r := r0; r < r1; r++ {
		base, ih, kw := p.rowOf(r)
		lo, hi, off := p.lo[kw], p.hi[kw], p.off[kw]
		for oh := 0; oh < p.oh; oh, ih = oh+1, ih+p.sh {
			dst := cols[r*oN+oh*p.ow : r*oN+(oh+1)*p.ow]
			if ih < 0 || ih >= p.h || lo >= hi {
				clear(dst)
				continue
			}
			src := base + ih*p.w
			clear(dst[:lo])
			clear(dst[hi:])
			if p.sw == 1 {
				copy(dst[lo:hi], x[src+lo+off:src+hi+off])
				continue
			}
			s := x[src : src+p.w]
			if p.sw == 2 { // the stride of stems and downsampling
				evens(dst[lo:hi], s[lo*2+off:])
				continue
			}
			for o := lo; o < hi; o++ {
				dst[o] = s[o*p.sw+off]
			}
		}
	}
}

// evensF32, when set (vec_amd64.go), is evens for float32 over the first
// len(dst) elements, a multiple of 8; src holds 2 per element.
var evensF32 func(dst, src []float32)

// evens sets dst[i] = src[2i] for i < len(dst): the columns a stride of 2
// reads. src needs 2·len(dst) - 1 elements.
func evens[T Float](dst, src []T) {
	n := len(dst)
	if n == 0 {
		return
	}
	i := 0
	if d, ok := any(dst).([]float32); ok && evensF32 != nil {
		i = min(n, len(src)/2) &^ 7 // whole groups of 8 whose reads lie inside src
		evensF32(d[:i], any(src).([]float32)[:2*i])
	}
	src = src[:2*n-1]
	for ; i < n; i++ {
		dst[i] = src[2*i]
	}
}

// asPairs views the first 2n elements of s as n pairs.
func asPairs[T Float](s []T, n int) [][2]T {
	s = s[:2*n]
	return unsafe.Slice((*[2]T)(unsafe.Pointer(unsafe.SliceData(s))), n)
}

// col2im adds rows [r0, r1) of cols back into the input rows [h0, h1) of
// dx: each element receives its terms in the order of the rows of cols, so
// disjoint input row ranges (or channels) can be done concurrently with the
// same result.
func planeCol2im[T Float](p *plane2d, cols, dx []T, r0, r1, h0, h1, oy0, oy1 int) {
	oN := (oy1 - oy0) * p.ow
	for r := r0; r < r1; r++ {
		base, ih, kw := p.rowOf(r)
		lo, hi, off := p.lo[kw], p.hi[kw], p.off[kw]
		if lo >= hi {
			continue
		}
		ih += oy0 * p.sh
		for oh := 0; oh < oy1-oy0; oh, ih = oh+1, ih+p.sh {
			if ih < h0 || ih >= h1 {
				continue
			}
			src := base + ih*p.w
			col := cols[r*oN+oh*p.ow+lo : r*oN+oh*p.ow+hi]
			if p.sw == 1 {
				addInto(dx[src+lo+off:src+hi+off], col)
				continue
			}
			d := dx[src : src+p.w]
			if p.sw == 2 {
				last := len(col) - 1
				pairs := asPairs(d[lo*2+off:], last)
				for i, v := range col[:last] {
					pairs[i][0] += v
				}
				d[(lo+last)*2+off] += col[last]
				continue
			}
			for i, v := range col {
				d[(lo+i)*p.sw+off] += v
			}
		}
	}
}

// transpose writes the transpose of the r x c row-major a into t (c x r).
func transpose[T Float](a, t []T, r, c int) {
	const b = 8 // small blocks: power-of-two row strides alias in L1
	// Blocks of columns of a (rows of t) are independent.
	parallelFor((c+b-1)/b, r*c, func(lo, hi int) {
		for j0 := lo * b; j0 < min(hi*b, c); j0 += b {
			j1 := min(j0+b, c)
			for i0 := 0; i0 < r; i0 += b {
				for i := i0; i < min(i0+b, r); i++ {
					row := a[i*c+j0 : i*c+j1]
					for j, v := range row {
						t[(j0+j)*r+i] = v
					}
				}
			}
		}
	})
}

// addInto adds s to d[:len(s)] elementwise: axpy by 1, which with fused
// multiply-adds rounds exactly as d[i] + s[i].
func addInto[T Float](d, s []T) { axpy(1, s, d) }

func buildConv[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	y, err := b.conv(n, in, nil, nil)
	if err != nil {
		return nil, err
	}
	return []*val[T]{y}, nil
}

// conv builds Conv node n over its inputs; res, when not nil, is a value of
// the output's shape the convolution adds to its output (see fuseAdd), and
// fold, when not nil, scales the weights per output channel (see
// foldBatchNorm). It returns nil, having built nothing, when the
// convolution cannot add res or scale its weights itself.
func (b *builder[T]) conv(n *onnx.Node, in []*val[T], res *val[T], fold []float64) (*val[T], error) {
	if len(in) < 2 || in[0] == nil || in[1] == nil {
		return nil, fmt.Errorf("needs input and weight")
	}
	x, w := in[0].shape, in[1].shape
	if len(x) < 3 || len(x) > 5 || len(w) != len(x) {
		return nil, fmt.Errorf("input %v and weight %v: want matching ranks 3 to 5", x, w)
	}
	group := int(n.AttrInt("group", 1))
	if group < 1 || x[1]%group != 0 || w[0]%group != 0 || w[1]*group != x[1] {
		return nil, fmt.Errorf("input %v with weight %v and group %d: channels do not match", x, w, group)
	}
	kernel := w[2:]
	if ks := n.AttrInts("kernel_shape", nil); ks != nil && fmt.Sprint(ints(ks)) != fmt.Sprint(kernel) {
		return nil, fmt.Errorf("kernel_shape %v does not match weight %v", ks, w)
	}
	win, err := newWindow(n, x[2:], kernel)
	if err != nil {
		return nil, err
	}
	k := &conv[T]{n: x[0], c: x[1], m: w[0], group: group, win: win, cols: &workspaceOf[T](b.p).cols}
	k.out = append([]int{x[0], w[0]}, win.out...)
	k.hasBias = len(in) > 2 && in[2] != nil
	k.dx = in[0].need
	k.direct = true
	for d := range win.in {
		if win.kernel[d] != 1 || win.strides[d] != 1 || win.padsBegin[d] != 0 || win.out[d] != win.in[d] {
			k.direct = false
		}
	}
	k.plane = newPlane2d(win)
	k.grad = k.dx || in[1].need || k.hasBias && in[2].need
	if k32, ok := any(k).(*conv[float32]); ok {
		fixed := b.p.opts.FixedWeights && in[1].consts != nil
		k32.wino = newWinograd(k.n, k.c, k.m, group, win, workspaceOf[float32](b.p), fixed, false)
		if k.dx && k32.wino != nil {
			k32.winoDX = newWinograd(k.n, k.m, k.c, group, dxWindow(win), workspaceOf[float32](b.p), fixed, true)
		}
		// A single output channel or position is a matrix-vector
		// product, which the GEMM does without packing.
		if k32.wino == nil && !k.direct && !k.depthwise() && k.m/group > 1 && size(win.out) > 1 {
			k32.panels = newConvPanels(win, k.c/group)
			k32.packed = &workspaceOf[float32](b.p).tiles
			k32.fixed = fixed && !in[1].need
		}
		if fold != nil {
			// Only kernels that pack or transform their weights once,
			// and never read them again, scale them themselves.
			if k.grad || !(k32.wino != nil && k32.wino.fixed || k32.panels != nil && k32.fixed) {
				return nil, nil
			}
			k32.fold = fold
			if k32.wino != nil {
				k32.wino.fold = fold
			}
		}
	} else if fold != nil {
		return nil, nil
	}
	args := []*val[T]{in[0], in[1]}
	if k.hasBias {
		if len(in[2].shape) != 1 || in[2].shape[0] != w[0] {
			return nil, fmt.Errorf("bias %v does not match %d output channels", in[2].shape, w[0])
		}
		args = append(args, in[2])
	}
	if res != nil {
		// The panels' epilogue is the GEMM's micro-kernel's, which
		// cannot add a third operand.
		if k.panels != nil || !slices.Equal(res.shape, k.out) {
			return nil, nil
		}
		k.residual = true
		y, err := b.apply(k, append(args, res)...)
		return y, err
	}
	y, err := b.apply(k, args...)
	if err != nil {
		return nil, err
	}
	if b.p.opts.FixedWeights && in[1].consts != nil && !in[1].need && (!k.hasBias || in[2].consts != nil && !in[2].need) {
		if b.convs == nil {
			b.convs = map[*G.Node]convBuild[T]{}
		}
		b.convs[y.node] = convBuild[T]{n: n, in: args, fold: fold}
	}
	return y, nil
}

// fuseAdd folds Add node n (inputs in) into the convolution of fixed
// weights (and folded BatchNormalization) that computes one of its
// inputs, when nothing else reads that input, the other has the output's
// shape and no gradient flows through either: a residual connection. It
// builds the convolution again adding the other input in its epilogue
// (before a Relu that then fuses too), and returns it, or nil when the Add
// cannot be folded. The Add's pass over memory (two reads and a write of
// the activations) goes, and the sums are the same, rounded the same:
// (conv + bias) + other. The convolution first built is read by nothing,
// and a run never computes it.
func (b *builder[T]) fuseAdd(n *onnx.Node, in []*val[T]) (*val[T], error) {
	if len(in) != 2 || in[0] == nil || in[1] == nil || in[0].need || in[1].need || in[0].node == nil || in[1].node == nil ||
		!slices.Equal(in[0].shape, in[1].shape) {
		return nil, nil
	}
	for i := range 2 {
		cb, ok := b.convs[in[i].node]
		if !ok || b.readers[n.Inputs[i]] != 1 {
			continue
		}
		add := b.node
		b.node = cb.n
		y, err := b.conv(cb.n, cb.in, in[1-i], cb.fold)
		b.node = add
		if y != nil || err != nil {
			return y, err
		}
	}
	return nil, nil
}

// dxWindow is the window of a 3x3 stride-1 convolution's input gradient as
// a convolution of the output gradient: dx[y] = Σ_i gout[y+p-i] w[i] =
// Σ_i' gout[y-(2-p)+i'] w[2-i'], a correlation with the kernel turned 180
// degrees (and its channels swapped) and padding 2-p before, from the
// output's size back to the input's. Its padding is never negative: a
// window padded by more than 2 gets a plan Winograd refuses.
func dxWindow(win *window) *window {
	t := &window{in: win.out, out: win.in, kernel: win.kernel, strides: win.strides, dilations: win.dilations}
	for _, p := range win.padsBegin {
		if p > 2 {
			return &window{in: []int{}} // not 2-d: no plan
		}
		t.padsBegin = append(t.padsBegin, 2-p)
	}
	return t
}

// convBuild is how a convolution of fixed weights was built: its node,
// inputs (input, weight and bias, if any) and the scale of its weights.
type convBuild[T Float] struct {
	n    *onnx.Node
	in   []*val[T]
	fold []float64
}

// foldEagerly makes foldBatchNorm always build scaled copies of the
// weights (a switch for tests).
var foldEagerly bool

// foldBatchNorm folds an inference-form BatchNormalization (n, inputs in)
// into the convolution of fixed weights before it, when that convolution's
// output has no other reader and the statistics and affine parameters are
// constants: it builds the convolution again with the weights and bias
// scaled per output channel (in float64, rounded once), and returns it, or
// nil when n cannot be folded. The convolution first built is then read by
// nothing, and a run never computes it. BatchNormalization then costs no
// pass over the activations, and a Relu after it fuses into the
// convolution. The weights are rounded to float32 after scaling, as
// PyTorch's own export folds them. A convolution that packs or transforms
// its weights once (Winograd's, the panels') scales them then, from the
// model's own, so that no scaled copy is kept beside what it packs
// (ResNet-18's would be 45 MB); others get a scaled copy.
func (b *builder[T]) foldBatchNorm(n *onnx.Node, in []*val[T]) (*val[T], error) {
	cb, ok := b.convs[in[0].node]
	if !ok || b.readers[n.Inputs[0]] != 1 || cb.fold != nil {
		return nil, nil
	}
	for _, v := range in[1:] {
		if v.consts == nil || v.need {
			return nil, nil
		}
	}
	scale, shift, mean, variance := in[1].consts, in[2].consts, in[3].consts, in[4].consts
	eps := float64(n.AttrFloat("epsilon", 1e-5))
	w := cb.in[1]
	m := w.shape[0]
	per := size(w.shape[1:])
	fold, fb := make([]float64, m), make([]T, m)
	for o := range m {
		s := float64(scale[o]) / math.Sqrt(float64(variance[o])+eps)
		fold[o] = s
		bias := 0.0
		if len(cb.in) > 2 {
			bias = float64(cb.in[2].consts[o])
		}
		fb[o] = T((bias-float64(mean[o]))*s + float64(shift[o]))
	}
	bn := b.node
	defer func() { b.node = bn }()
	b.node = cb.n
	bias := b.constant("folded bias", fb, []int{m})
	if !foldEagerly {
		if y, err := b.conv(cb.n, []*val[T]{cb.in[0], w, bias}, nil, fold); y != nil || err != nil {
			return y, err
		}
	}
	return b.conv(cb.n, []*val[T]{cb.in[0], b.constant("folded:"+w.node.Name(), scaleRows(w.consts, fold, per), w.shape), bias}, nil, nil)
}

// scaleRows returns w, rows of per elements, with row o scaled by fold[o]
// in float64 and rounded once.
func scaleRows[T Float](w []T, fold []float64, per int) []T {
	out := make([]T, len(w))
	for i, v := range w {
		out[i] = T(float64(v) * fold[i/per])
	}
	return out
}

func (k *conv[T]) buildGather() {
	cg := k.c / k.group
	kN, oN, iN := size(k.win.kernel), size(k.win.out), size(k.win.in)
	rows := cg * kN
	k.gather = make([]int32, rows*oN)
	for i := range k.gather {
		k.gather[i] = -1
	}
	k.win.forEach(func(o, q, i int) {
		if i < 0 {
			return
		}
		for c := 0; c < cg; c++ {
			k.gather[(c*kN+q)*oN+o] = int32(c*iN + i)
		}
	})
}

func (k *conv[T]) describe() string {
	tail := ""
	if k.residual {
		tail = "+Add"
	}
	if k.relu {
		tail += "+Relu"
	}
	return fmt.Sprintf("Conv(%dx%d->%d g%d %v)%s", k.n, k.c, k.m, k.group, k.win, tail)
}
func (k *conv[T]) outShape() []int { return k.out }
func (k *conv[T]) differentiable() []bool {
	d := []bool{true, true}
	if k.hasBias {
		d = append(d, true)
	}
	if k.residual { // built only where no gradient flows (see fuseAdd)
		d = append(d, false)
	}
	return d
}

// sizes returns channels per group, output channels per group, kernel
// elements, output and input positions.
func (k *conv[T]) sizes() (cg, mg, kN, oN, iN int) {
	return k.c / k.group, k.m / k.group, size(k.win.kernel), size(k.win.out), size(k.win.in)
}

// im2col fills cols [cg*kN, oN] from one image's group of channels, every
// element written.
func (k *conv[T]) im2col(x []T, cols []T) {
	if k.plane != nil {
		rows := len(cols) / (k.plane.oh * k.plane.ow)
		parallelFor(rows, len(cols), func(lo, hi int) { planeIm2col(k.plane, x, cols, lo, hi) })
		return
	}
	k.gatherOnce.Do(k.buildGather)
	for j, src := range k.gather {
		if src >= 0 {
			cols[j] = x[src]
		} else {
			cols[j] = 0
		}
	}
}

// col2im adds cols [cg*kN, oN] into dx, one image's group of channels, in
// the order of the rows of cols.
func (k *conv[T]) col2im(cols, dx []T) {
	if k.plane != nil {
		p, rows := k.plane, len(cols)/(k.plane.oh*k.plane.ow)
		if p.h >= 8 { // by input row, balanced whatever the channel count
			parallelFor(p.h, len(cols), func(lo, hi int) { planeCol2im(p, cols, dx, 0, rows, lo, hi, 0, p.oh) })
			return
		}
		// By input channel: a channel's rows add only into it.
		cg, _, kN, _, _ := k.sizes()
		parallelFor(cg, len(cols), func(lo, hi int) { planeCol2im(p, cols, dx, lo*kN, hi*kN, 0, p.h, 0, p.oh) })
		return
	}
	k.gatherOnce.Do(k.buildGather)
	for j, src := range k.gather {
		if src >= 0 {
			dx[src] += cols[j]
		}
	}
}

// colsFor returns the im2col matrix of one image's group (offset xo into x),
// lowering it into buf unless the window is direct.
func (k *conv[T]) colsFor(x []T, xo int, buf []T) []T {
	cg, _, kN, oN, _ := k.sizes()
	if k.direct {
		return x[xo : xo+cg*kN*oN]
	}
	k.im2col(x[xo:], buf)
	return buf
}

// scratchBytes counts the buffers a convolution keeps: for 3-d windows the
// gather table (not for a direct window), the weight's transpose (for the
// input gradient) and Winograd's transformed weights.
func (k *conv[T]) scratchBytes() int64 {
	cg, mg, kN, oN, _ := k.sizes()
	elem := int64(unsafe.Sizeof(T(0)))
	var n int64
	if k.dx && k.winoDX == nil {
		n += int64(k.group*mg*cg*kN) * elem
	}
	if k.wino != nil {
		n += k.wino.scratchBytes()
	}
	if k.winoDX != nil {
		n += k.winoDX.scratchBytes()
	}
	if !k.direct && k.plane == nil {
		n += int64(cg*kN) * int64(oN) * 4
	}
	if k.fixed {
		n += int64(k.group) * packedBytes(mg, cg*kN)
	}
	return n
}

// packedWeights returns group g's weights a (mg x rows) packed for the
// kernel in use, packing them on first use.
func (k *conv[T]) packedWeights(g int, a []float32, mg, rows int) *sgemmPackedA {
	k.pwMu.Lock()
	defer k.pwMu.Unlock()
	if k.pw == nil {
		k.pw = make([]*sgemmPackedA, k.group)
	}
	if k.pw[g] == nil || k.pw[g].kern != sgemmKern {
		if k.fold != nil {
			a = scaleRows(a[:mg*rows], k.fold[g*mg:], rows)
		}
		k.pw[g] = packAll(sgemmKern, a, rows, mg, rows)
	}
	return k.pw[g]
}

// workspaceBytes: the im2col matrix of one image's group (none for a
// direct window), and Winograd's buffers.
func (k *conv[T]) workspaceBytes(need func(buf any, bytes int64)) {
	cg, _, kN, oN, _ := k.sizes()
	if !k.direct && (k.panels == nil || k.grad) {
		need(k.cols, int64(cg*kN)*int64(oN)*int64(unsafe.Sizeof(T(0))))
	}
	if k.panels != nil {
		need(k.cols, int64(k.panels.size(k.c)+convPanelsSlack)*4)
		if k.panelsShared(sgemmKern) {
			need(k.packed, int64(cg*kN)*int64((oN+sgemmKern.nr-1)/sgemmKern.nr*sgemmKern.nr)*4)
		}
	}
	if k.wino != nil {
		k.wino.workspaceBytes(need)
	}
	if k.winoDX != nil {
		k.winoDX.workspaceBytes(need)
	}
}

func (k *conv[T]) takeCols() []T {
	if k.direct {
		return nil
	}
	cg, _, kN, oN, _ := k.sizes()
	return k.cols.take(cg * kN * oN)
}

func (k *conv[T]) giveCols(b []T) {
	if b != nil {
		k.cols.give(b)
	}
}

func (k *conv[T]) writesAll() {}

// depthwise reports a depthwise convolution: one input and one output
// channel per group, a 1-d or 2-d window. Its forward pass runs tap by tap
// over the rows (depthwiseForward): as a GEMM it would be one product of
// a single row by 9 columns per channel.
func (k *conv[T]) depthwise() bool {
	return k.plane != nil && k.group == k.c && k.m == k.c && k.group > 1
}

// depthwiseForward computes channel planes [p0, p1) of all images (plane
// i*c+ch) into out, zeroed first: for each output row and kernel tap, the
// tap's weight times the input row it reads (an axpy along the row).
func (k *conv[T]) depthwiseForward(x, w, out []T, p0, p1 int) {
	p := k.plane
	iN, oN, kN := p.h*p.w, p.oh*p.ow, p.kh*p.kw
	for pl := p0; pl < p1; pl++ {
		xp, op, wp := x[pl*iN:(pl+1)*iN], out[pl*oN:(pl+1)*oN], w[(pl%k.c)*kN:(pl%k.c+1)*kN]
		clear(op)
		for oh := 0; oh < p.oh; oh++ {
			orow := op[oh*p.ow : (oh+1)*p.ow]
			for kh := 0; kh < p.kh; kh++ {
				ih := oh*p.sh - p.ph + kh*p.dh
				if ih < 0 || ih >= p.h {
					continue
				}
				xrow := xp[ih*p.w : (ih+1)*p.w]
				for kw := 0; kw < p.kw; kw++ {
					lo, hi, off := p.lo[kw], p.hi[kw], p.off[kw]
					if lo >= hi {
						continue
					}
					wv := wp[kh*p.kw+kw]
					if p.sw == 1 {
						axpy(wv, xrow[lo+off:hi+off], orow[lo:hi])
						continue
					}
					for o := lo; o < hi; o++ {
						orow[o] += wv * xrow[o*p.sw+off]
					}
				}
			}
		}
	}
}

// axpy adds alpha*x to y[:len(x)] (vectorised for float32).
func axpy[T Float](alpha T, x, y []T) {
	if xf, ok := any(x).([]float32); ok && len(x) >= 16 {
		sgemmKern.axpy(float32(alpha), xf, any(y).([]float32))
		return
	}
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

func (k *conv[T]) forward(in [][]T, out []T) error {
	var res []T
	if k.residual {
		res = in[len(in)-1]
	}
	if k.depthwise() {
		x, w := in[0], in[1]
		planes := k.n * k.c
		parallelFor(planes, len(out)*size(k.win.kernel), func(lo, hi int) { k.depthwiseForward(x, w, out, lo, hi) })
		if k.hasBias || k.relu || k.residual {
			k.epilogue(in, out, res)
		}
		return nil
	}
	if k.wino != nil || k.panels != nil {
		var bias []float32
		if k.hasBias {
			bias = any(in[2]).([]float32)
		}
		x, w, o := any(in[0]).([]float32), any(in[1]).([]float32), any(out).([]float32)
		if k.wino != nil {
			k.wino.forward(x, w, bias, any(res).([]float32), o, k.relu)
		} else {
			convForwardPanels(any(k).(*conv[float32]), x, w, bias, o)
		}
		return nil
	}
	x, w := in[0], in[1]
	cg, mg, kN, oN, iN := k.sizes()
	buf := k.takeCols()
	for img := 0; img < k.n; img++ {
		for g := 0; g < k.group; g++ {
			cols := k.colsFor(x, (img*k.c+g*cg)*iN, buf)
			// out[mg, oN] = w[mg, cg*kN] * cols[cg*kN, oN]
			gemm(false, false, mg, oN, cg*kN, 1, w[g*mg*cg*kN:], cg*kN, cols, oN, 0, out[(img*k.m+g*mg)*oN:], oN)
		}
		if k.hasBias || k.relu || k.residual { // while the image's output is still in cache
			var r []T
			if res != nil {
				r = res[img*k.m*oN : (img+1)*k.m*oN]
			}
			k.epilogue(in, out[img*k.m*oN:(img+1)*k.m*oN], r)
		}
	}
	k.giveCols(buf)
	return nil
}

// epilogue adds the bias and the residual res (when not nil: res lines up
// with o) and applies the fused Relu to whole images of output o, in the
// order of separate nodes: ((y + bias) + res), then the Relu.
func (k *conv[T]) epilogue(in [][]T, o, res []T) {
	oN := size(k.win.out)
	parallelFor(len(o)/oN, len(o), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			var bm T
			if k.hasBias {
				bm = in[2][r%k.m]
			}
			row := o[r*oN : (r+1)*oN]
			if res != nil {
				add := res[r*oN : (r+1)*oN]
				for i, v := range row {
					if v += bm; k.relu {
						v = max(v+add[i], 0)
					} else {
						v += add[i]
					}
					row[i] = v
				}
				continue
			}
			if k.relu {
				for i, v := range row {
					row[i] = max(v+bm, 0)
				}
				continue
			}
			for i := range row {
				row[i] += bm
			}
		}
	})
}

// The input gradient is written block by block by Winograd's plan or, for a
// direct window, by one GEMM per image and group; otherwise backward clears
// it on both cores before col2im adds into it.
func (k *conv[T]) gradWritesAll(input int) bool { return input == 0 }

// dxBandFloats bounds a band of im2col rows in dxByBands: with what the
// GEMM packs, it stays in a core's 512 KiB L2 cache.
const dxBandFloats = 48 << 10

// dxByBands computes the input gradient of a 2-d float32 convolution of
// several images with each core taking whole images: for a band of output
// rows, the GEMM writes that band of the im2col matrix into a buffer of the
// core's own and col2im adds it into the image while it is in cache. The
// whole matrix (7 MiB an image for ResNet's stem) would go to memory and
// back. wt is w transposed by group. It reports false, having done
// nothing, when it does not apply.
func (k *conv[T]) dxByBands(wt, gout, gin []T) bool {
	p := k.plane
	wt32, ok := any(wt).([]float32)
	if p == nil || !ok || k.n < 2 {
		return false
	}
	gout32, gin32 := any(gout).([]float32), any(gin).([]float32)
	cg, mg, kN, oN, iN := k.sizes()
	rows := cg * kN
	cols := any(k.takeCols()).([]float32)
	defer k.giveCols(any(cols).([]T))
	workers := goruntime.GOMAXPROCS(0)
	band := min(max(1, dxBandFloats/(rows*p.ow)), p.oh, len(cols)/(workers*rows*p.ow))
	if band == 0 {
		return false
	}
	parallelForWorker(k.n, len(gin)+k.n*rows*oN, func(worker, lo, hi int) {
		wk := sgemmPool.Get().(*sgemmWork)
		defer sgemmPool.Put(wk)
		buf := cols[worker*rows*band*p.ow : (worker+1)*rows*band*p.ow]
		clear(gin32[lo*k.c*iN : hi*k.c*iN])
		for img := lo; img < hi; img++ {
			for g := 0; g < k.group; g++ {
				dx, gy := gin32[(img*k.c+g*cg)*iN:], gout32[(img*k.m+g*mg)*oN:]
				for oy0 := 0; oy0 < p.oh; oy0 += band {
					oy1 := min(oy0+band, p.oh)
					n := (oy1 - oy0) * p.ow
					sgemmBlock(sgemmKern, wk, false, false, 0, rows, 0, n, mg, 1, wt32[g*mg*rows:], mg, gy[oy0*p.ow:], oN, 0, buf, n)
					planeCol2im(p, buf, dx, 0, rows, 0, p.h, oy0, oy1)
				}
			}
		}
	})
	return true
}

func (k *conv[T]) backward(which int, in [][]T, _, gout, gin []T) error {
	x, w := in[0], in[1]
	cg, mg, kN, oN, iN := k.sizes()
	switch which {
	case 0: // dx: cols = w^T * gout, scattered back (col2im)
		if k.winoDX != nil {
			k.winoDX.forward(any(gout).([]float32), any(w).([]float32), nil, nil, any(gin).([]float32), false)
			return nil
		}
		// w^T once per call, so the GEMMs read it in place instead of
		// packing the transpose for every image.
		wt := k.wt.take(len(w))
		for g := 0; g < k.group; g++ {
			transpose(w[g*mg*cg*kN:(g+1)*mg*cg*kN], wt[g*mg*cg*kN:], mg, cg*kN)
		}
		defer k.wt.give(wt)
		if k.direct { // each block is written once
			for img := 0; img < k.n; img++ {
				for g := 0; g < k.group; g++ {
					gemm(false, false, cg*kN, oN, mg, 1, wt[g*mg*cg*kN:], mg, gout[(img*k.m+g*mg)*oN:], oN, 0, gin[(img*k.c+g*cg)*iN:], oN)
				}
			}
			return nil
		}
		if k.dxByBands(wt, gout, gin) {
			return nil
		}
		parallelFor(len(gin), len(gin), func(lo, hi int) { clear(gin[lo:hi]) })
		cols := k.takeCols()
		for img := 0; img < k.n; img++ {
			for g := 0; g < k.group; g++ {
				gemm(false, false, cg*kN, oN, mg, 1, wt[g*mg*cg*kN:], mg, gout[(img*k.m+g*mg)*oN:], oN, 0, cols, oN)
				k.col2im(cols, gin[(img*k.c+g*cg)*iN:])
			}
		}
		k.giveCols(cols)
	case 1: // dw += gout * cols^T
		if k.wino != nil && !k.wino.fixed {
			k.wino.weightGrad(any(x).([]float32), any(gout).([]float32), any(gin).([]float32))
			return nil
		}
		buf := k.takeCols()
		for img := 0; img < k.n; img++ {
			for g := 0; g < k.group; g++ {
				cols := k.colsFor(x, (img*k.c+g*cg)*iN, buf)
				gemm(false, true, mg, cg*kN, oN, 1, gout[(img*k.m+g*mg)*oN:], oN, cols, oN, 1, gin[g*mg*cg*kN:], cg*kN)
			}
		}
		k.giveCols(buf)
	case 2: // db: sum of gout over images and positions
		for img := 0; img < k.n; img++ {
			for m := 0; m < k.m; m++ {
				var s T
				for _, v := range gout[(img*k.m+m)*oN : (img*k.m+m+1)*oN] {
					s += v
				}
				gin[m] += s
			}
		}
	}
	return nil
}
