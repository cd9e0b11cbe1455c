// Package onnxtest runs the reference tools graft is checked against, for
// tests: the ONNX checker (Debian's python3-onnx) and onnxruntime-node, and
// compares tensors.
//
// A missing tool skips the test with the reason, unless GRAFT_REFERENCE=1
// (set by CI), which turns it into a failure: internal/testenv decides, as
// for missing reference data.
package onnxtest

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
)

// Python is the interpreter that sees Debian's torch and onnx packages.
const Python = "/usr/bin/python3"

// Root returns the repository's root folder.
func Root() string { return testenv.Root() }

// Required reports whether reference tools must be present (GRAFT_REFERENCE=1).
//
// Deprecated: use testenv.Required.
func Required() bool { return testenv.Required() }

// Missing skips t, or fails it when reference tools are required.
//
// Deprecated: use testenv.Missing.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	testenv.Missing(t, format, args...)
}

// NeedPython skips or fails t unless Python can import the given modules.
func NeedPython(t testing.TB, modules ...string) {
	t.Helper()
	for _, m := range modules {
		if err := exec.Command(Python, "-c", "import "+m).Run(); err != nil {
			testenv.Missing(t, "%s cannot import %s (apt-get install python3-%s)", Python, m, m)
		}
	}
}

// CheckModel runs onnx.checker.check_model (full check) on the model file.
func CheckModel(t testing.TB, path string) {
	t.Helper()
	NeedPython(t, "onnx")
	out, err := exec.Command(Python, filepath.Join(Root(), "testdata/gen/check_model.py"), path).CombinedOutput()
	if err != nil {
		t.Fatalf("onnx.checker rejects %s: %v\n%s", path, err, out)
	}
}

// RunORT runs the model in onnxruntime-node on the given input tensor files
// and returns its outputs in graph order.
func RunORT(t testing.TB, model string, inputs ...string) []*onnx.Tensor {
	t.Helper()
	gen := filepath.Join(Root(), "testdata/gen")
	if _, err := exec.LookPath("node"); err != nil {
		testenv.Missing(t, "node is not installed")
	}
	if _, err := os.Stat(filepath.Join(gen, "node_modules/onnxruntime-node")); err != nil {
		testenv.Missing(t, "onnxruntime-node is not installed (cd testdata/gen && ONNXRUNTIME_NODE_INSTALL=skip npm ci)")
	}
	dir := t.TempDir()
	args := append([]string{filepath.Join(gen, "ort_run.js"), model, dir}, inputs...)
	cmd := exec.Command("node", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("onnxruntime-node failed on %s: %v\n%s", model, err, stderr.String())
	}
	var outs []*onnx.Tensor
	for k := 0; ; k++ {
		p := filepath.Join(dir, fmt.Sprintf("output_%d.pb", k))
		if _, err := os.Stat(p); err != nil {
			break
		}
		o, err := onnx.LoadTensor(p)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, o)
	}
	if len(outs) == 0 {
		t.Fatalf("onnxruntime-node wrote no outputs for %s", model)
	}
	return outs
}

// MaxAbsDiff returns the largest absolute difference between two float
// tensors of the same shape, or an error naming the mismatch.
func MaxAbsDiff(a, b *onnx.Tensor) (float64, error) {
	if fmt.Sprint(a.Dims) != fmt.Sprint(b.Dims) {
		return 0, fmt.Errorf("shapes differ: %v vs %v", a.Dims, b.Dims)
	}
	x, err := a.Float64s()
	if err != nil {
		return 0, err
	}
	y, err := b.Float64s()
	if err != nil {
		return 0, err
	}
	var d float64
	for i := range x {
		if math.IsNaN(x[i]) != math.IsNaN(y[i]) {
			return math.Inf(1), nil
		}
		d = math.Max(d, math.Abs(x[i]-y[i]))
	}
	return d, nil
}

// AllClose reports whether |a-b| <= atol + rtol*|b| elementwise, and the
// worst element's index and values when not.
func AllClose(a, b *onnx.Tensor, rtol, atol float64) error {
	if fmt.Sprint(a.Dims) != fmt.Sprint(b.Dims) {
		return fmt.Errorf("shapes differ: %v vs %v", a.Dims, b.Dims)
	}
	x, err := a.Float64s()
	if err != nil {
		return err
	}
	y, err := b.Float64s()
	if err != nil {
		return err
	}
	worst, at := 0.0, -1
	for i := range x {
		excess := math.Abs(x[i]-y[i]) - (atol + rtol*math.Abs(y[i]))
		if math.IsNaN(x[i]) != math.IsNaN(y[i]) {
			excess = math.Inf(1)
		}
		if excess > worst {
			worst, at = excess, i
		}
	}
	if at >= 0 {
		return fmt.Errorf("element %d: got %g, want %g (rtol %g, atol %g)", at, x[at], y[at], rtol, atol)
	}
	return nil
}

// The models of testdata/roundtrip (made by testdata/gen/roundtrip_models.py)
// give every message a doc string, metadata and fields unknown to graft's
// schema, each marked with the message's path: doc(model.graph.node[0]),
// key(...) and meta(...) for metadata, unknown(...) for unknown fields.
var markPattern = regexp.MustCompile(`(?:doc|key|meta|unknown)\(model[^()]*\)`)

// Marks returns the set of marks in an encoded model.
func Marks(b []byte) map[string]bool {
	out := map[string]bool{}
	for _, m := range markPattern.FindAll(b, -1) {
		out[string(m)] = true
	}
	return out
}

// KeepsMarks fails t unless every mark of before is in after, except those of
// the messages an edit replaced: edited lists their paths, each covering the
// messages inside it (model.graph.node[3] covers model.graph.node[3].attribute[0]).
func KeepsMarks(t testing.TB, before, after []byte, edited ...string) {
	t.Helper()
	want, got := Marks(before), Marks(after)
	if len(want) < 50 {
		t.Fatalf("the model has %d marks: not a model of testdata/roundtrip", len(want))
	}
	var lost []string
	for m := range want {
		path := m[strings.Index(m, "(")+1 : len(m)-1]
		replaced := false
		for _, e := range edited {
			if path == e || strings.HasPrefix(path, e+".") {
				replaced = true
			}
		}
		if !got[m] && !replaced {
			lost = append(lost, m)
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		t.Errorf("%d of %d doc strings, metadata and unknown fields were lost, among them %s", len(lost), len(want), strings.Join(lost[:min(len(lost), 8)], ", "))
	}
}
