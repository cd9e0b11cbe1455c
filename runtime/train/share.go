package train

import (
	"fmt"

	"github.com/graft-dev/graft/runtime"
)

// ShareParams copies the live values of src's parameters srcPrefix+name
// into dst's parameters dstPrefix+name, for each name, in place, so dst's
// compiled graphs see them on their next run. Two programs holding the same
// sub-model (a discriminator compiled alone and inside a GAN made by
// surgery.Compose, whose names carry a prefix) stay in step by sharing
// after each update. It fails, copying nothing, if a parameter is missing or
// the two differ in shape or element type.
func ShareParams(dst *runtime.Program, dstPrefix string, src *runtime.Program, srcPrefix string, names []string) error {
	type pair struct{ d, s *runtime.Param }
	pairs := make([]pair, 0, len(names))
	for _, n := range names {
		d, s := dst.Param(dstPrefix+n), src.Param(srcPrefix+n)
		switch {
		case s == nil:
			return fmt.Errorf("share params: the source has no parameter %q", srcPrefix+n)
		case d == nil:
			return fmt.Errorf("share params: the destination has no parameter %q", dstPrefix+n)
		case !d.Value.Shape().Eq(s.Value.Shape()) || d.Value.Dtype() != s.Value.Dtype():
			return fmt.Errorf("share params: %q is %v %v but %q is %v %v", dstPrefix+n, d.Value.Dtype(), d.Value.Shape(), srcPrefix+n, s.Value.Dtype(), s.Value.Shape())
		}
		pairs = append(pairs, pair{d, s})
	}
	for _, p := range pairs {
		switch dd := p.d.Value.Data().(type) {
		case []float32:
			copy(dd, p.s.Value.Data().([]float32))
		case []float64:
			copy(dd, p.s.Value.Data().([]float64))
		}
	}
	return nil
}
