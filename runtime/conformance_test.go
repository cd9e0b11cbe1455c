package runtime

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"gorgonia.org/tensor"
)

// Conformance tolerances.
const (
	confRtol = 1e-4
	confAtol = 1e-5
)

// excluded lists backend tests of supported ops that are not run, and why.
var excluded = map[string]string{
	"test_training_dropout":              "output depends on a random mask",
	"test_training_dropout_default":      "output depends on a random mask",
	"test_training_dropout_default_mask": "output depends on a random mask",
	"test_training_dropout_mask":         "output depends on a random mask",
	"test_identity_opt":                  "input is an optional value, not a tensor",
	"test_identity_sequence":             "input is a sequence value, not a tensor",

	// Shape ops and casts.
	"test_cast_BFLOAT16_to_FLOAT":              "bfloat16 input (stored as uint16 by the test); graft computes in float32 or float64",
	"test_castlike_BFLOAT16_to_FLOAT":          "bfloat16 input (stored as uint16 by the test); graft computes in float32 or float64",
	"test_castlike_BFLOAT16_to_FLOAT_expanded": "bfloat16 input (stored as uint16 by the test); graft computes in float32 or float64",
	"test_cast_DOUBLE_to_FLOAT16":              "float16 output; graft computes in float32 or float64",
	"test_cast_FLOAT_to_FLOAT16":               "float16 output; graft computes in float32 or float64",
	"test_cast_FLOAT_to_BFLOAT16":              "bfloat16 output; graft computes in float32 or float64",
	"test_castlike_FLOAT_to_BFLOAT16":          "bfloat16 output; graft computes in float32 or float64",
	"test_castlike_FLOAT_to_BFLOAT16_expanded": "bfloat16 output; graft computes in float32 or float64",
	"test_cast_FLOAT_to_STRING":                "string tensors; graft computes numbers only",
	"test_cast_STRING_to_FLOAT":                "string tensors; graft computes numbers only",
	"test_castlike_FLOAT_to_STRING":            "string tensors; graft computes numbers only",
	"test_castlike_FLOAT_to_STRING_expanded":   "string tensors; graft computes numbers only",
	"test_castlike_STRING_to_FLOAT":            "string tensors; graft computes numbers only",
	"test_castlike_STRING_to_FLOAT_expanded":   "string tensors; graft computes numbers only",
	"test_constantofshape_int_shape_zero":      "output is an empty tensor; Gorgonia's tensors cannot be empty",
	"test_slice_start_out_of_bounds":           "output is an empty tensor; Gorgonia's tensors cannot be empty",

	// Resizing.
	"test_resize_downsample_scales_linear_align_corners": "expected output follows ONNX 1.12's reference, which takes align_corners' output length as size x scale (2.4) where the spec, ONNX Runtime and PyTorch take the output's length (2), as graft does (TestResizeReferences checks PyTorch's and ONNX Runtime's results)",
	"test_resize_downsample_scales_cubic_align_corners":  "expected output follows ONNX 1.12's reference, which takes align_corners' output length as size x scale (3.2) where the spec, ONNX Runtime and PyTorch take the output's length (3), as graft does (TestResizeReferences checks PyTorch's and ONNX Runtime's results)",

	// Sampling.
	"test_gridsample_bicubic": "expected output is rounded to 4 decimals (-0.1406 for PyTorch's -0.140625), beyond the tolerance; graft gives PyTorch's values (TestSamplePyTorchReferences) and this test's within the rounding (TestGridSampleBicubicBackendData)",
}

type confResult struct {
	name, suite string
	ops         []string
	status      string // pass, fail, excluded
	reason      string
}

// conformanceSuites are the ONNX backend test suites run, with the number
// of tests each has in Debian's libonnx-testdata (ONNX 1.12).
var conformanceSuites = []struct {
	name  string
	tests int
}{{"node", 932}, {"pytorch-converted", 82}, {"pytorch-operator", 35}}

// The official ONNX backend tests, from Debian's libonnx-testdata.
func TestConformance(t *testing.T) {
	var dirs []string
	for _, suite := range conformanceSuites {
		for _, model := range testenv.Backend.Glob(t, filepath.Join(suite.name, "test_*", "model.onnx"), suite.tests) {
			dirs = append(dirs, filepath.Dir(model))
		}
	}
	only := os.Getenv("GRAFT_CONFORMANCE_ONLY")
	var results []confResult
	for _, dir := range dirs {
		if only != "" && !regexp.MustCompile(only).MatchString(filepath.Base(dir)) {
			continue
		}
		r := runBackendTest(dir)
		results = append(results, r)
		if r.status == "fail" {
			t.Errorf("%s/%s: %s", r.suite, r.name, r.reason)
		}
	}
	if os.Getenv("GRAFT_WRITE_CONFORMANCE") == "1" && only == "" {
		if err := os.WriteFile(filepath.Join(onnxtest.Root(), "docs", "conformance.md"), []byte(conformanceTable(results)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pass, fail, exc := 0, 0, 0
	for _, r := range results {
		switch r.status {
		case "pass":
			pass++
		case "fail":
			fail++
		default:
			exc++
		}
	}
	t.Logf("%d backend tests: %d passed, %d failed, %d not run (unsupported ops or excluded)", len(results), pass, fail, exc)
}

// runBackendTest runs one backend test folder on every data set.
func runBackendTest(dir string) (r confResult) {
	r = confResult{name: filepath.Base(dir), suite: filepath.Base(filepath.Dir(dir))}
	defer func() {
		if p := recover(); p != nil {
			r.status, r.reason = "fail", fmt.Sprintf("panic: %v", p)
		}
	}()
	m, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return r.fail("load: %v", err)
	}
	seen := map[string]bool{}
	var unsupported []string
	reg := registryFor[float32]()
	for _, n := range m.Graph.Nodes {
		if !seen[n.OpType] {
			seen[n.OpType] = true
			r.ops = append(r.ops, n.OpType)
			if _, ok := reg[n.OpType]; !ok || n.Domain != "" && n.Domain != "ai.onnx" {
				unsupported = append(unsupported, n.OpType)
			}
		}
	}
	sort.Strings(r.ops)
	if len(unsupported) > 0 {
		r.status, r.reason = "excluded", "uses "+strings.Join(unsupported, ", ")+", which graft does not support"
		return r
	}
	if why, ok := excluded[r.name]; ok {
		r.status, r.reason = "excluded", why
		return r
	}
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if len(sets) == 0 {
		return r.fail("no test data sets")
	}
	for _, set := range sets {
		if msg := runDataSet(dir, set); msg != "" {
			if strings.HasPrefix(msg, "excluded: ") {
				r.status, r.reason = "excluded", strings.TrimPrefix(msg, "excluded: ")
				return r
			}
			return r.fail("%s: %s", filepath.Base(set), msg)
		}
	}
	r.status = "pass"
	return r
}

func (r confResult) fail(format string, args ...any) confResult {
	r.status, r.reason = "fail", fmt.Sprintf(format, args...)
	return r
}

// runDataSet runs one data set and returns "" on success, or what failed.
// Inputs are fed at run time (integers as int64, booleans as bool tensors),
// except scalars and those the graph needs when it is built (shapes, axes,
// Resize's scales, Clip's bounds), which are bound as constants: graft
// fixes shapes per session. When integer inputs were fed, the data set
// runs again with every integer input bound, so integer ops are checked
// both computed at run time and folded when the graph is built.
func runDataSet(dir, set string) string {
	m, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return err.Error()
	}
	inputs := map[string]*onnx.Tensor{}
	bound := map[string]bool{}
	intsFed := false
	i := 0
	for _, v := range m.Graph.Inputs {
		if v.Const != nil {
			continue
		}
		t, err := onnx.LoadTensor(filepath.Join(set, fmt.Sprintf("input_%d.pb", i)))
		i++
		if err != nil {
			return err.Error()
		}
		isFloat := t.DType == onnx.Float || t.DType == onnx.Double
		switch {
		case t.DType == onnx.Float16 || t.DType == onnx.BFloat16:
			return "excluded: float16 inputs; graft computes in float32 or float64"
		case t.NumElements() == 0 && isFloat:
			return "excluded: empty input tensor; Gorgonia's tensors cannot be empty"
		case t.NumElements() == 0 || len(t.Dims) == 0 && len(m.Graph.Inputs) > 1:
			bound[v.Name] = true
		case !isFloat:
			intsFed = true
		}
		inputs[v.Name] = t
	}
	for {
		msg, need := runBound(dir, set, inputs, bound)
		if need == "" || bound[need] {
			if msg != "" || !intsFed {
				return msg
			}
			break
		}
		bound[need] = true
	}
	for name, t := range inputs {
		if t.DType != onnx.Float && t.DType != onnx.Double {
			bound[name] = true
		}
	}
	if msg, _ := runBound(dir, set, inputs, bound); msg != "" {
		return "with integer inputs bound as constants: " + msg
	}
	return ""
}

// runBound runs the model with the named inputs bound as constants and the
// others fed. need names an input the graph needs as a constant.
func runBound(dir, set string, inputs map[string]*onnx.Tensor, bound map[string]bool) (msg, need string) {
	m, err := onnx.Load(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return err.Error(), ""
	}
	var feeds []*onnx.Tensor
	var keep []*onnx.Value
	float64s := false
	for _, v := range m.Graph.Inputs {
		t := inputs[v.Name]
		switch {
		case v.Const != nil:
			keep = append(keep, v)
		case bound[v.Name]:
			v.Const = t
			m.Graph.Initializers = append(m.Graph.Initializers, v)
		default:
			float64s = float64s || t.DType == onnx.Double
			feeds = append(feeds, t)
			keep = append(keep, v)
		}
	}
	m.Graph.Inputs = keep
	p, err := Compile(m, Options{Float64: float64s})
	if err != nil {
		return err.Error(), ""
	}
	var in []*tensor.Dense
	for _, f := range feeds {
		shape := shapeOrScalar(ints(f.Dims))
		switch f.DType {
		case onnx.Float, onnx.Double:
			vals, _ := f.Float64s()
			if float64s {
				in = append(in, tensor.New(tensor.WithShape(shape...), tensor.WithBacking(vals)))
				continue
			}
			v32 := make([]float32, len(vals))
			for j, x := range vals {
				v32[j] = float32(x)
			}
			in = append(in, tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v32)))
		default:
			vals, err := f.Int64s()
			if err != nil {
				return err.Error(), ""
			}
			in = append(in, intDense(vals, shape, f.DType))
		}
	}
	outs, err := p.Run(in...)
	if err != nil {
		var c *constantError
		if errors.As(err, &c) {
			need = c.value
		}
		return err.Error(), need
	}
	for k, got := range outs {
		want, err := onnx.LoadTensor(filepath.Join(set, fmt.Sprintf("output_%d.pb", k)))
		if err != nil {
			return err.Error(), ""
		}
		if msg := compareOutput(got, want); msg != "" {
			return fmt.Sprintf("output %d: %s", k, msg), ""
		}
	}
	return "", ""
}

func isFloat(t *tensor.Dense) bool {
	return t.Dtype() == tensor.Float32 || t.Dtype() == tensor.Float64
}

func compareOutput(got *tensor.Dense, want *onnx.Tensor) string {
	gs := got.Shape()
	wantDims := ints(want.Dims)
	if !(len(wantDims) == 0 && size(gs) == 1) && fmt.Sprint([]int(gs)) != fmt.Sprint(wantDims) {
		return fmt.Sprintf("shape %v, want %v", gs, wantDims)
	}
	if want.DType != onnx.Float && want.DType != onnx.Double {
		w, err := want.Int64s()
		if err != nil {
			return fmt.Sprintf("cannot compare %s outputs", want.DType)
		}
		var g []int64
		switch d := got.Data().(type) {
		case []int64:
			if want.DType != onnx.Bool {
				g = d
			}
		case []bool:
			if want.DType == onnx.Bool {
				for _, b := range d {
					g = append(g, boolInt(b))
				}
			}
		}
		if g == nil {
			return fmt.Sprintf("got %v, want %s", got.Dtype(), want.DType)
		}
		for i := range w {
			if g[i] != w[i] {
				return fmt.Sprintf("element %d: got %d, want %d", i, g[i], w[i])
			}
		}
		return ""
	}
	var g []float64
	switch d := got.Data().(type) {
	case []float32:
		for _, x := range d {
			g = append(g, float64(x))
		}
	case []float64:
		g = d
	default:
		return fmt.Sprintf("got %v, want %s", got.Dtype(), want.DType)
	}
	w, _ := want.Float64s()
	for i := range w {
		if d := math.Abs(g[i] - w[i]); d > confAtol+confRtol*math.Abs(w[i]) || math.IsNaN(g[i]) != math.IsNaN(w[i]) {
			return fmt.Sprintf("element %d: got %g, want %g", i, g[i], w[i])
		}
	}
	return ""
}

// conformanceTable renders docs/conformance.md.
func conformanceTable(results []confResult) string {
	type row struct{ tests, pass, exc, fail int }
	rows := map[string]*row{}
	for _, op := range SupportedOps() {
		rows[op] = &row{}
	}
	var excl, fails []confResult
	for _, r := range results {
		for _, op := range r.ops {
			x := rows[op]
			if x == nil {
				continue
			}
			x.tests++
			switch r.status {
			case "pass":
				x.pass++
			case "fail":
				x.fail++
			default:
				x.exc++
			}
		}
		if r.status == "fail" {
			fails = append(fails, r)
		}
		if r.status == "excluded" && len(r.ops) > 0 {
			for _, op := range r.ops {
				if rows[op] != nil {
					excl = append(excl, r)
					break
				}
			}
		}
	}
	var b strings.Builder
	b.WriteString("# ONNX conformance of graft's runtime\n\n")
	b.WriteString("Generated by `GRAFT_WRITE_CONFORMANCE=1 go test ./runtime -run TestConformance` (CI regenerates it).\n")
	b.WriteString("Data: Debian's libonnx-testdata (ONNX 1.12 backend tests: node, pytorch-converted, pytorch-operator).\n")
	fmt.Fprintf(&b, "Outputs must match within rtol %g, atol %g. A test counts for every supported op its model uses.\n", confRtol, confAtol)
	b.WriteString("Integer and boolean inputs are fed at run time and, in a second run, bound as constants (folded when the graph is built);\n")
	b.WriteString("inputs that decide shapes or attributes (Reshape's shape, Split's split, Resize's scales, Clip's bounds) and scalars are bound in both.\n\n")
	b.WriteString("| op | tests | passed | excluded | failed |\n|---|---|---|---|---|\n")
	for _, op := range SupportedOps() {
		x := rows[op]
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d |\n", op, x.tests, x.pass, x.exc, x.fail)
	}
	b.WriteString("\n## Tests of supported ops that are not run\n\n| test | suite | reason |\n|---|---|---|\n")
	for _, r := range excl {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.name, r.suite, r.reason)
	}
	if len(fails) > 0 {
		b.WriteString("\n## Failing\n\n| test | suite | error |\n|---|---|---|\n")
		for _, r := range fails {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", r.name, r.suite, strings.ReplaceAll(r.reason, "|", "\\|"))
		}
	}
	return b.String()
}
