package runtime

import (
	"fmt"
	"math"
	"strings"

	"github.com/graft-dev/graft/onnx"
)

func registerSample[T Float](r registry[T]) {
	r["GridSample"] = buildGridSample[T]
	r["AffineGrid"] = buildAffineGrid[T]
}

// sampleMode is GridSample's interpolation.
type sampleMode int

const (
	sampleNearest sampleMode = iota
	sampleLinear
	sampleCubic
)

var sampleModeNames = [...]string{"nearest", "bilinear", "bicubic"}

// samplePad is GridSample's padding_mode: what is read outside the input.
type samplePad int

const (
	samplePadZeros samplePad = iota
	samplePadBorder
	samplePadReflection
)

var samplePadNames = [...]string{"zeros", "border", "reflection"}

func buildGridSample[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) < 2 || in[0] == nil || in[1] == nil {
		return nil, fmt.Errorf("needs input X and grid")
	}
	var mode sampleMode
	switch m := n.AttrString("mode", "bilinear"); m {
	case "bilinear", "linear": // "linear" is opset 20's name
		mode = sampleLinear
	case "nearest":
		mode = sampleNearest
	case "bicubic", "cubic":
		mode = sampleCubic
	default:
		return nil, fmt.Errorf("unknown mode %q", m)
	}
	var pad samplePad
	switch p := n.AttrString("padding_mode", "zeros"); p {
	case "zeros":
		pad = samplePadZeros
	case "border":
		pad = samplePadBorder
	case "reflection":
		pad = samplePadReflection
	default:
		return nil, fmt.Errorf("unknown padding_mode %q", p)
	}
	k, err := newGridSample[T](in[0].shape, in[1].shape, mode, pad, n.AttrInt("align_corners", 0) != 0)
	if err != nil {
		return nil, err
	}
	return one(b.apply(k, in[0], in[1]))
}

// gridSample is 2-D GridSample with PyTorch's grid_sample semantics: X [N,
// C, H, W] is read at grid [N, Ho, Wo, 2] positions (x, y in [-1, 1] span
// the input), giving [N, C, Ho, Wo]. Each output point is a weighted sum of
// up to 16 input pixels ("taps"), the same for every channel, so the taps
// of one image are computed once and reused across channels and passes.
type gridSample[T Float] struct {
	n, c, h, w int
	ho, wo     int
	mode       sampleMode
	pad        samplePad
	align      bool
	ax, ay     sampleAxis
	taps       int // taps per output point: 1, 4 or 16
}

func newGridSample[T Float](x, grid []int, mode sampleMode, pad samplePad, align bool) (*gridSample[T], error) {
	if len(x) != 4 {
		return nil, fmt.Errorf("input %v: only 2-D sampling of [N, C, H, W] is supported", x)
	}
	if len(grid) != 4 || grid[0] != x[0] || grid[3] != 2 {
		return nil, fmt.Errorf("grid %v does not match input %v: want [%d, Ho, Wo, 2]", grid, x, x[0])
	}
	k := &gridSample[T]{n: x[0], c: x[1], h: x[2], w: x[3], ho: grid[1], wo: grid[2], mode: mode, pad: pad, align: align}
	k.ax = newSampleAxis(k.w, mode, pad, align)
	k.ay = newSampleAxis(k.h, mode, pad, align)
	k.taps = []int{1, 4, 16}[mode]
	return k, nil
}

func (k *gridSample[T]) describe() string {
	return fmt.Sprintf("GridSample(%s %s ac%v %dx%dx%dx%d->%dx%d)", sampleModeNames[k.mode], samplePadNames[k.pad],
		sampleBit(k.align), k.n, k.c, k.h, k.w, k.ho, k.wo)
}

func sampleBit(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (k *gridSample[T]) outShape() []int        { return []int{k.n, k.c, k.ho, k.wo} }
func (k *gridSample[T]) differentiable() []bool { return []bool{true, true} }

// sampleTaps holds the taps of one image's output points: for point p, taps
// p*K..p*K+K-1 read input pixel idx (-1: padding, reads zero) with weight
// wt; dx and dy are the weight's derivatives by the point's grid x and y.
type sampleTaps[T Float] struct {
	idx        []int32
	wt, dx, dy []T
}

func (k *gridSample[T]) newTaps(deriv bool) *sampleTaps[T] {
	m := k.ho * k.wo * k.taps
	t := &sampleTaps[T]{idx: make([]int32, m), wt: make([]T, m)}
	if deriv {
		t.dx, t.dy = make([]T, m), make([]T, m)
	}
	return t
}

// fill computes the taps of one image from its grid [Ho*Wo*2].
func (k *gridSample[T]) fill(grid []T, t *sampleTaps[T]) {
	if k.mode == sampleLinear {
		k.fillLinear(grid, t)
		return
	}
	var tx, ty sampleAxisTaps
	q := 0
	for p := 0; p < k.ho*k.wo; p++ {
		nx := k.ax.taps(float64(grid[2*p]), &tx)
		ny := k.ay.taps(float64(grid[2*p+1]), &ty)
		for j := 0; j < ny; j++ {
			yi, wy, dy := ty.idx[j], ty.w[j], ty.d[j]
			for i := 0; i < nx; i++ {
				if xi := tx.idx[i]; xi >= 0 && yi >= 0 {
					t.idx[q] = int32(yi*k.w + xi)
				} else {
					t.idx[q] = -1
				}
				t.wt[q] = T(tx.w[i] * wy)
				if t.dx != nil {
					t.dx[q] = T(tx.d[i] * wy)
					t.dy[q] = T(tx.w[i] * dy)
				}
				q++
			}
		}
	}
}

// fillLinear is fill for bilinear sampling (the spatial transformer's hot
// path), unrolled: taps nw, ne, sw, se.
func (k *gridSample[T]) fillLinear(grid []T, t *sampleTaps[T]) {
	w, h := k.w, k.h
	ax, ay := &k.ax, &k.ay
	idx, wt := t.idx[:4*k.ho*k.wo], t.wt[:4*k.ho*k.wo]
	for p := range k.ho * k.wo {
		ux, mx := ax.padded(float64(grid[2*p])*ax.scale + ax.offset)
		uy, my := ay.padded(float64(grid[2*p+1])*ay.scale + ay.offset)
		ix, iy := floorInt(ux), floorInt(uy)
		fx, fy := ux-float64(ix), uy-float64(iy)
		inX0, inX1 := uint(ix) < uint(w), uint(ix+1) < uint(w)
		inY0, inY1 := uint(iy) < uint(h), uint(iy+1) < uint(h)
		i := iy*w + ix
		q := 4 * p
		idx[q], idx[q+1], idx[q+2], idx[q+3] = -1, -1, -1, -1
		if inY0 {
			if inX0 {
				idx[q] = int32(i)
			}
			if inX1 {
				idx[q+1] = int32(i + 1)
			}
		}
		if inY1 {
			if inX0 {
				idx[q+2] = int32(i + w)
			}
			if inX1 {
				idx[q+3] = int32(i + w + 1)
			}
		}
		gx, gy := 1-fx, 1-fy
		wt[q], wt[q+1], wt[q+2], wt[q+3] = T(gx*gy), T(fx*gy), T(gx*fy), T(fx*fy)
		if t.dx != nil {
			mx *= ax.scale
			my *= ay.scale
			t.dx[q], t.dx[q+1], t.dx[q+2], t.dx[q+3] = T(-mx*gy), T(mx*gy), T(-mx*fy), T(mx*fy)
			t.dy[q], t.dy[q+1], t.dy[q+2], t.dy[q+3] = T(-my*gx), T(-my*fx), T(my*gx), T(my*fx)
		}
	}
}

func (k *gridSample[T]) forward(in [][]T, out []T) error {
	x, grid := in[0], in[1]
	hw, pts, K := k.h*k.w, k.ho*k.wo, k.taps
	t := k.newTaps(false)
	for n := 0; n < k.n; n++ {
		k.fill(grid[n*pts*2:(n+1)*pts*2], t)
		for c := 0; c < k.c; c++ {
			xs := x[(n*k.c+c)*hw : (n*k.c+c+1)*hw]
			o := out[(n*k.c+c)*pts : (n*k.c+c+1)*pts]
			for p := range o {
				var s T
				idx, wt := t.idx[p*K:(p+1)*K], t.wt[p*K:(p+1)*K]
				for q, j := range idx {
					if j >= 0 {
						s += wt[q] * xs[j]
					}
				}
				o[p] = s
			}
		}
	}
	return nil
}

func (k *gridSample[T]) backward(i int, in [][]T, _, gout, gin []T) error {
	x, grid := in[0], in[1]
	hw, pts, K := k.h*k.w, k.ho*k.wo, k.taps
	if i == 1 && k.mode == sampleNearest {
		return nil // piecewise constant in the grid: zero, as in PyTorch
	}
	t := k.newTaps(i == 1)
	for n := 0; n < k.n; n++ {
		k.fill(grid[n*pts*2:(n+1)*pts*2], t)
		for c := 0; c < k.c; c++ {
			g := gout[(n*k.c+c)*pts : (n*k.c+c+1)*pts]
			if i == 0 {
				gx := gin[(n*k.c+c)*hw : (n*k.c+c+1)*hw]
				for p, gp := range g {
					idx, wt := t.idx[p*K:(p+1)*K], t.wt[p*K:(p+1)*K]
					for q, j := range idx {
						if j >= 0 {
							gx[j] += wt[q] * gp
						}
					}
				}
				continue
			}
			xs := x[(n*k.c+c)*hw : (n*k.c+c+1)*hw]
			gg := gin[n*pts*2 : (n+1)*pts*2]
			for p, gp := range g {
				idx, dx, dy := t.idx[p*K:(p+1)*K], t.dx[p*K:(p+1)*K], t.dy[p*K:(p+1)*K]
				var sx, sy T
				for q, j := range idx {
					if j >= 0 {
						v := xs[j]
						sx += dx[q] * v
						sy += dy[q] * v
					}
				}
				gg[2*p] += sx * gp
				gg[2*p+1] += sy * gp
			}
		}
	}
	return nil
}

// sampleAxis maps normalised grid coordinates along one input axis to the
// pixels read and their weights.
type sampleAxis struct {
	size  int
	mode  sampleMode
	pad   samplePad
	align bool
	// unnormalise: u = g*scale + offset, so that -1 and 1 are the centres
	// of the edge pixels (align_corners) or their outer edges.
	scale, offset float64
}

func newSampleAxis(size int, mode sampleMode, pad samplePad, align bool) sampleAxis {
	a := sampleAxis{size: size, mode: mode, pad: pad, align: align, offset: float64(size-1) / 2}
	if align {
		a.scale = float64(size-1) / 2
	} else {
		a.scale = float64(size) / 2
	}
	return a
}

// sampleAxisTaps are the pixels one grid coordinate reads along one axis.
type sampleAxisTaps struct {
	idx  [4]int     // pixel, or -1 outside the input
	w, d [4]float64 // weight and its derivative by the grid coordinate
}

// sampleCubicA is the cubic convolution coefficient of PyTorch's bicubic modes.
const sampleCubicA = -0.75

// sampleCubic1 is the cubic convolution kernel for |x| <= 1 and
// sampleCubic2 for 1 < |x| < 2; sampleDCubic1 and sampleDCubic2 are their
// derivatives.
func sampleCubic1(x float64) float64 {
	const a = sampleCubicA
	return ((a+2)*x-(a+3))*x*x + 1
}

func sampleCubic2(x float64) float64 {
	const a = sampleCubicA
	return ((a*x-5*a)*x+8*a)*x - 4*a
}

func sampleDCubic1(x float64) float64 {
	const a = sampleCubicA
	return (3*(a+2)*x - 2*(a+3)) * x
}

func sampleDCubic2(x float64) float64 {
	const a = sampleCubicA
	return (3*a*x-10*a)*x + 8*a
}

// taps fills t for grid coordinate g and returns how many taps it uses.
func (a *sampleAxis) taps(g float64, t *sampleAxisTaps) int {
	u := g*a.scale + a.offset
	switch a.mode {
	case sampleNearest:
		u, _ = a.padded(u)
		t.idx[0], t.w[0], t.d[0] = a.index(math.RoundToEven(u)), 1, 0
		return 1
	case sampleLinear:
		u, m := a.padded(u)
		u0 := math.Floor(u)
		f := u - u0
		m *= a.scale
		t.idx[0], t.w[0], t.d[0] = a.index(u0), 1-f, -m
		t.idx[1], t.w[1], t.d[1] = a.index(u0+1), f, m
		return 2
	}
	// Cubic: the four pixels around u, each padded on its own (so the
	// weights do not depend on the padding).
	u0 := math.Floor(u)
	f := u - u0
	t.w = [4]float64{sampleCubic2(f + 1), sampleCubic1(f), sampleCubic1(1 - f), sampleCubic2(2 - f)}
	s := a.scale
	t.d = [4]float64{sampleDCubic2(f+1) * s, sampleDCubic1(f) * s, -sampleDCubic1(1-f) * s, -sampleDCubic2(2-f) * s}
	for i := range 4 {
		p, _ := a.padded(u0 - 1 + float64(i))
		t.idx[i] = a.index(p)
	}
	return 4
}

// floorInt is math.Floor for u within int32 range (as padded returns),
// without a function call.
func floorInt(u float64) int {
	i := int(u)
	if float64(i) > u {
		i--
	}
	return i
}

// index is the pixel at integral coordinate u, or -1 outside the input.
func (a *sampleAxis) index(u float64) int {
	if u >= 0 && u < float64(a.size) {
		return int(u)
	}
	return -1
}

// padded applies the padding mode to pixel coordinate u, returning the
// coordinate to read and its derivative by u.
func (a *sampleAxis) padded(u float64) (float64, float64) {
	if a.pad != samplePadZeros {
		return a.fold(u)
	}
	return sampleInRange(u, 1)
}

// sampleInRange returns u and derivative d, or, like PyTorch, -100 (reads
// nothing) for coordinates beyond the int32 range and NaN.
func sampleInRange(u, d float64) (float64, float64) {
	if u > math.MinInt32 && u < math.MaxInt32-1 {
		return u, d
	}
	return -100, 0
}

// fold moves u into the input for border and reflection padding.
func (a *sampleAxis) fold(u float64) (float64, float64) {
	if a.pad == samplePadBorder {
		return sampleInRange(sampleClip(u, a.size))
	}
	var d, dc float64
	if a.align {
		u, d = sampleReflect(u, 0, float64(2*(a.size-1)))
	} else {
		u, d = sampleReflect(u, -1, float64(2*a.size-1))
	}
	u, dc = sampleClip(u, a.size)
	return sampleInRange(u, d*dc)
}

// sampleClip clamps u to [0, size-1]; the clamped edges have derivative 0.
func sampleClip(u float64, size int) (float64, float64) {
	hi := float64(size - 1)
	switch {
	case u <= 0:
		return 0, 0
	case u >= hi:
		return hi, 0
	}
	return u, 1
}

// sampleReflect reflects u into [twiceLow/2, twiceHigh/2], mirroring at the
// bounds as often as needed.
func sampleReflect(u, twiceLow, twiceHigh float64) (float64, float64) {
	if twiceLow == twiceHigh {
		return 0, 0
	}
	lo, span := twiceLow/2, (twiceHigh-twiceLow)/2
	u -= lo
	d := 1.0
	if u < 0 {
		u, d = -u, -1
	}
	extra := math.Mod(u, span)
	if math.Mod(math.Floor(u/span), 2) == 0 {
		return extra + lo, d
	}
	return span - extra + lo, -d
}

func buildAffineGrid[T Float](b *builder[T], n *onnx.Node, in []*val[T]) ([]*val[T], error) {
	if len(in) < 1 || in[0] == nil {
		return nil, fmt.Errorf("needs input theta")
	}
	sz, err := b.intsOf(in, 1, "size")
	if err != nil {
		return nil, err
	}
	k, err := newAffineGrid[T](in[0].shape, ints(sz), n.AttrInt("align_corners", 0) != 0)
	if err != nil {
		return nil, err
	}
	return one(b.apply(k, in[0]))
}

// affineGrid is AffineGrid (opset 20) with PyTorch's affine_grid
// semantics: for theta [N, r, r+1] and size [N, C, spatial...] (r = 2 or 3
// spatial axes), grid [N, spatial..., r] holds theta applied to each
// point's normalised coordinates (x, y[, z], 1), x along the last axis.
type affineGrid[T Float] struct {
	n       int
	spatial []int // D, H, W order (as in size)
	align   bool
	// base[a] are the normalised coordinates along spatial axis a.
	base [][]float64
}

func newAffineGrid[T Float](theta []int, sz []int, align bool) (*affineGrid[T], error) {
	r := len(sz) - 2
	if r != 2 && r != 3 {
		return nil, fmt.Errorf("size %v: want [N, C, H, W] or [N, C, D, H, W]", sz)
	}
	if len(theta) != 3 || theta[0] != sz[0] || theta[1] != r || theta[2] != r+1 {
		return nil, fmt.Errorf("theta %v does not match size %v: want [%d, %d, %d]", theta, sz, sz[0], r, r+1)
	}
	k := &affineGrid[T]{n: sz[0], spatial: append([]int(nil), sz[2:]...), align: align}
	for _, s := range k.spatial {
		if s < 1 {
			return nil, fmt.Errorf("size %v has an empty axis", sz)
		}
		c := make([]float64, s)
		for i := range c {
			// A single point sits at 0 (PyTorch; ONNX's reference puts it
			// at -1 with align_corners).
			switch {
			case s == 1:
			case align:
				c[i] = -1 + 2*float64(i)/float64(s-1)
			default:
				c[i] = (2*float64(i)+1)/float64(s) - 1
			}
		}
		k.base = append(k.base, c)
	}
	return k, nil
}

func (k *affineGrid[T]) describe() string {
	s := make([]string, len(k.spatial))
	for i, d := range k.spatial {
		s[i] = fmt.Sprint(d)
	}
	return fmt.Sprintf("AffineGrid(%d %s ac%d)", k.n, strings.Join(s, "x"), sampleBit(k.align))
}

func (k *affineGrid[T]) outShape() []int {
	return append(append([]int{k.n}, k.spatial...), len(k.spatial))
}

func (k *affineGrid[T]) differentiable() []bool { return []bool{true} }

// eachPoint calls f for every grid point (flat index) with its coordinates
// (x, y[, z], 1).
func (k *affineGrid[T]) eachPoint(f func(p int, c []float64)) {
	r := len(k.spatial)
	c := make([]float64, r+1)
	c[r] = 1
	pos := make([]int, r)
	for p := range size(k.spatial) {
		unflatten(p, k.spatial, pos)
		for a := range r {
			c[r-1-a] = k.base[a][pos[a]]
		}
		f(p, c)
	}
}

func (k *affineGrid[T]) forward(in [][]T, out []T) error {
	r, pts := len(k.spatial), size(k.spatial)
	theta := in[0]
	k.eachPoint(func(p int, c []float64) {
		for n := range k.n {
			th := theta[n*r*(r+1) : (n+1)*r*(r+1)]
			o := out[(n*pts+p)*r : (n*pts+p+1)*r]
			for i := range o {
				var s float64
				for j, cj := range c {
					s += float64(th[i*(r+1)+j]) * cj
				}
				o[i] = T(s)
			}
		}
	})
	return nil
}

func (k *affineGrid[T]) backward(_ int, _ [][]T, _, gout, gin []T) error {
	r, pts := len(k.spatial), size(k.spatial)
	acc := make([]float64, len(gin))
	k.eachPoint(func(p int, c []float64) {
		for n := range k.n {
			g := gout[(n*pts+p)*r : (n*pts+p+1)*r]
			a := acc[n*r*(r+1) : (n+1)*r*(r+1)]
			for i, gi := range g {
				for j, cj := range c {
					a[i*(r+1)+j] += float64(gi) * cj
				}
			}
		}
	})
	for i, v := range acc {
		gin[i] = T(v)
	}
	return nil
}
