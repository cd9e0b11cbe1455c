package attacks

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"gorgonia.org/tensor"
)

func saveDense(t *testing.T, x *tensor.Dense, path string) {
	t.Helper()
	dims := make([]int64, len(x.Shape()))
	for i, d := range x.Shape() {
		dims[i] = int64(d)
	}
	pb, err := onnx.FromFloat32(filepath.Base(path), dims, x.Data().([]float32))
	if err != nil {
		t.Fatal(err)
	}
	if err := onnx.SaveTensor(pb, path); err != nil {
		t.Fatal(err)
	}
}

// graft's BIM and PGD on held-out digits follow PyTorch's
// (testdata/gen/pgd_refs.py) step for step, element for element: an
// example's path may leave PyTorch's only at a step where every element
// that differs had a gradient component rounding can decide (near zero,
// or of another sign in float64), computed at the point both paths shared.
// PGD starts from graft's own random start (PGD.Start, which Perturb draws
// the same way), and the script checks that the start is uniform in the
// eps-ball: a start drawn from [0, eps] fails the test.
func TestBIMAndPGDMatchPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("about 10 s of PyTorch and graft")
	}
	onnxtest.NeedPython(t, "torch", "onnx", "numpy")
	const n, steps, seed = 100, 5, 11
	eps := []float64{0.1, 0.3}
	c := loadLeNet(t)
	im, labels := loadHeldOut(t)
	x, labels := im.Tensor(0, n), labels[:n]
	dir := t.TempDir()
	saveDense(t, x, filepath.Join(dir, "x.pb"))
	l64 := make([]int64, n)
	for i, l := range labels {
		l64[i] = int64(l)
	}
	lt, _ := onnx.FromInt64("labels", []int64{n}, l64)
	if err := onnx.SaveTensor(lt, filepath.Join(dir, "labels.pb")); err != nil {
		t.Fatal(err)
	}
	for k, e := range eps {
		saveDense(t, (&PGD{Seed: seed}).Start(x, e), filepath.Join(dir, fmt.Sprintf("start_%d.pb", k)))
	}
	var epsArg []string
	for _, e := range eps {
		epsArg = append(epsArg, fmt.Sprint(e))
	}
	cmd := exec.Command(onnxtest.Python, filepath.Join(onnxtest.Root(), "testdata/gen/pgd_refs.py"), dir,
		"--eps", strings.Join(epsArg, ","), "--steps", fmt.Sprint(steps))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgd_refs.py: %v\n%s", err, out)
	}
	t.Logf("pgd_refs.py:\n%s", out)

	crit := Misclassification(labels)
	xv := x.Data().([]float32)
	size := len(xv) / n
	for k, e := range eps {
		alpha := 2.5 * e / steps // the default rule, given explicitly so that shorter runs step alike
		for _, name := range []string{"bim", "pgd"} {
			// graft's path: the attack run for 1, 2, ... steps.
			path := make([][]float32, steps)
			for s := range steps {
				var a Attack = BIM{Steps: s + 1, Alpha: alpha}
				if name == "pgd" {
					a = &PGD{Steps: s + 1, Alpha: alpha, Seed: seed}
				}
				adv, err := a.Perturb(c, x, crit, []float64{e})
				if err != nil {
					t.Fatal(err)
				}
				path[s] = adv[0].Data().([]float32)
			}
			want, err := readPB(t, filepath.Join(dir, fmt.Sprintf("%s_%d.pb", name, k))).Float32s()
			if err != nil {
				t.Fatal(err)
			}
			ties, err := readPB(t, filepath.Join(dir, fmt.Sprintf("%s_ties_%d.pb", name, k))).Int64s()
			if err != nil {
				t.Fatal(err)
			}
			same, parted, moved := 0, 0, 0
			for i := range n {
				lo, hi := i*size, (i+1)*size
				if !slices.Equal(path[steps-1][lo:hi], xv[lo:hi]) {
					moved++
				}
				first := -1 // the first step where the paths part
				for s := range steps {
					if off := s * len(xv); !slices.Equal(path[s][lo:hi], want[off+lo:off+hi]) {
						first = s
						break
					}
				}
				if first < 0 {
					same++
					continue
				}
				parted++
				off := first * len(xv)
				for j := lo; j < hi; j++ {
					if path[first][j] != want[off+j] && ties[off+j] == 0 {
						t.Errorf("eps %g %s example %d, step %d, pixel %d: graft %v, PyTorch %v, where PyTorch's gradient is not within rounding of zero",
							e, name, i, first+1, j-lo, path[first][j], want[off+j])
						break
					}
				}
			}
			t.Logf("eps %g %s: %d of %d examples follow PyTorch's path bit for bit; %d part from it where rounding decides a gradient component's sign",
				e, name, same, n, parted)
			if parted > n/10 {
				t.Errorf("eps %g %s: %d of %d examples part from PyTorch's path", e, name, parted, n)
			}
			if moved < n*9/10 {
				t.Errorf("eps %g %s: only %d of %d examples moved", e, name, moved, n)
			}
		}
	}
	// The default step size is the rule used above, whatever the radii.
	def, err := BIM{Steps: steps}.Perturb(c, x, crit, eps)
	if err != nil {
		t.Fatal(err)
	}
	for k, e := range eps {
		adv, _ := BIM{Steps: steps, Alpha: 2.5 * e / steps}.Perturb(c, x, crit, []float64{e})
		if !slices.Equal(def[k].Data().([]float32), adv[0].Data().([]float32)) {
			t.Errorf("eps %g: BIM's default step is not 2.5*eps/steps", e)
		}
	}
}

// readPB reads a tensor file the reference script wrote.
func readPB(t *testing.T, path string) *onnx.Tensor {
	t.Helper()
	x, err := onnx.LoadTensor(path)
	if err != nil {
		t.Fatal(err)
	}
	return x
}
