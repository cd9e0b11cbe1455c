package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"github.com/graft-dev/graft/runtime"
	"gorgonia.org/tensor"
)

// The classification families of torchvision 0.14, each exported at opsets
// 13 and 17, in eval mode and with TrainingMode.PRESERVE, by
// testdata/gen/families.py (with PyTorch's outputs and gradients), through
// what a user does with them: graft inspect finds the head, graft run
// matches PyTorch, the input gradient (FGSM's) and every parameter's
// train-mode gradient match PyTorch's float64 gradient as closely as
// PyTorch's own float32 one does, and graft surgery --replace-head
// --freeze backbone gives a model that onnx.checker accepts, that
// onnxruntime-node runs with graft's outputs and that graft finetune
// trains on real images.
//
// "PyTorch float64" is, for each export, PyTorch computing in float64 the
// function that export describes (families.py's exported_function): the
// module with the export's float32 constants, BatchNorm folded into the
// Conv weights as the eval export has them and HardSigmoid's alpha the
// float32 nearest 1/6. A constant that moves a kink by 1e-7 changes a
// gradient by O(1) where an activation lands in between, so the module's
// own float64 gradient is not a reference for the file. PyTorch float32
// is the module's, as a user runs it.
//
// The small set (width-reduced or small-input variants, the default) is
// CI's; GRAFT_FAMILIES=full runs the same checks on the full-size
// architectures (testdata/gen/families.sh makes them). With
// GRAFT_WRITE_FAMILIES=1 the test writes the set's table into README.md.

// families lists the families in the README's order; the names are
// families.py's.
var families = []struct{ name, title string }{
	{"alexnet", "AlexNet"},
	{"convnext", "ConvNeXt"},
	{"densenet", "DenseNet"},
	{"efficientnet", "EfficientNet"},
	{"efficientnet_v2", "EfficientNetV2"},
	{"googlenet", "GoogLeNet"},
	{"inception_v3", "Inception v3"},
	{"mnasnet", "MNASNet"},
	{"mobilenet_v2", "MobileNetV2"},
	{"mobilenet_v3", "MobileNetV3"},
	{"regnet", "RegNet"},
	{"resnet", "ResNet"},
	{"resnext", "ResNeXt"},
	{"shufflenet_v2", "ShuffleNetV2"},
	{"squeezenet", "SqueezeNet"},
	{"swin", "Swin"},
	{"vgg", "VGG"},
	{"vit", "ViT"},
	{"wide_resnet", "Wide ResNet"},
}

// familyExports are the four exports of each family.
var familyExports = []string{"op13_eval", "op13_preserve", "op17_eval", "op17_preserve"}

// familyInfo is families.py's info.json.
type familyInfo struct {
	Family         string `json:"family"`
	Architecture   string `json:"architecture"`
	Size           string `json:"size"`
	Input          []int  `json:"input"`
	Parameters     int64  `json:"parameters"`
	HeadInFeatures int64  `json:"head_in_features"`
	Torch          string `json:"torch"`
	Exports        map[string]struct {
		Nodes int            `json:"nodes"`
		Ops   map[string]int `json:"ops"`
	} `json:"exports"`
}

// exportResult is what the checks measured on one export.
type exportResult struct {
	Export string
	Nodes  int
	Head   HeadInfo
	// Run: max |graft - PyTorch float64| of the logits, the tolerance
	// 1e-4 + 1e-5 max|y|, and PyTorch float32's own distance.
	Run, RunTol, RunTorch32 float64
	// Input gradient (eval mode): max |graft - PyTorch float64| over
	// max |PyTorch float64|, and the same for PyTorch float32.
	Grad, GradTorch32 float64
	// Train-mode parameter gradients (PRESERVE exports).
	Param paramCheck
	// Grad64 and Param64 are graft float64's errors, measured where graft
	// float32 is not as close as PyTorch float32 (see checkFamilyExport).
	Grad64  float64
	Param64 paramCheck
	// Run64 is set when PyTorch float32 itself is further than RunTol from
	// float64: then graft computes in float64 too, and Run64 is its
	// distance from PyTorch float64.
	Run64                           float64
	ORT, ORTTol                     float64 // after surgery: max |onnxruntime - graft|
	LossFirst, LossLast             float64 // fine-tuning, first and last epoch
	RunSeconds, SurgeryFinetuneSecs float64
}

func familySet() string {
	if os.Getenv("GRAFT_FAMILIES") == "full" {
		return "full"
	}
	return "small"
}

func TestFamilies(t *testing.T) {
	set := familySet()
	root := testenv.Big.Path("families", set)
	fashion, err := filepath.Abs("../../testdata/images/fashion")
	if err != nil {
		t.Fatal(err)
	}
	results := map[string][]exportResult{}
	infos := map[string]*familyInfo{}
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			dir := filepath.Join("families", set, f.name)
			names := []string{filepath.Join(dir, "info.json")}
			for _, e := range familyExports {
				names = append(names, filepath.Join(dir, e+".onnx"))
			}
			testenv.Big.Files(t, names...)
			info := readFamilyInfo(t, filepath.Join(root, f.name))
			infos[f.name] = info
			for _, e := range familyExports {
				t.Run(e, func(t *testing.T) {
					r := checkFamilyExport(t, filepath.Join(root, f.name), e, info, fashion)
					results[f.name] = append(results[f.name], r)
				})
			}
		})
	}
	if os.Getenv("GRAFT_WRITE_FAMILIES") == "1" {
		if len(results) != len(families) || t.Failed() {
			t.Fatalf("checked %d of %d families, failed %v; not writing the table", len(results), len(families), t.Failed())
		}
		writeFamiliesTable(t, set, infos, results)
	}
}

func readFamilyInfo(t *testing.T, dir string) *familyInfo {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "info.json"))
	if err != nil {
		t.Fatal(err)
	}
	var info familyInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("%s/info.json: %v", dir, err)
	}
	return &info
}

func checkFamilyExport(t *testing.T, dir, export string, info *familyInfo, fashion string) exportResult {
	start := time.Now()
	model := filepath.Join(dir, export+".onnx")
	ref := func(name ...string) string { return filepath.Join(append([]string{dir, "ref"}, name...)...) }
	r := exportResult{Export: export, Nodes: info.Exports[export].Nodes}
	tmp := t.TempDir()

	// graft inspect: the head, in_features -> 1000.
	code, out, errs := graft("inspect", model, "--json")
	if code != 0 {
		t.Fatalf("graft inspect: exit %d: %s", code, errs)
	}
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Head == nil {
		t.Errorf("graft inspect finds no head: %s", rep.HeadError)
	} else {
		r.Head = *rep.Head
		if rep.Head.InFeatures != info.HeadInFeatures || rep.Head.OutFeatures != 1000 {
			t.Errorf("graft inspect: head %s %d -> %d, want %d -> 1000", rep.Head.Node, rep.Head.InFeatures, rep.Head.OutFeatures, info.HeadInFeatures)
		}
	}

	// graft run on PyTorch's input.
	y := filepath.Join(tmp, "y.pb")
	if code, _, errs := graft("run", model, "--input", ref("input.pb"), "--save-output", y, "--json"); code != 0 {
		t.Fatalf("graft run: exit %d: %s", code, errs)
	}
	got, want64, want32 := floats(t, y), floats(t, ref(export, "output64.pb")), floats(t, ref("output32.pb"))
	r.Run, r.RunTorch32 = maxDiff(got, want64), maxDiff(want32, want64)
	r.RunTol = 1e-4 + 1e-5*maxAbs(want64)
	switch {
	case r.RunTorch32 > r.RunTol:
		// float32 itself drifts further than the tolerance on this model:
		// graft float32 must be as close as PyTorch float32, and graft
		// float64 within the tolerance.
		r.Run64 = run64(t, model, ref("input.pb"), want64)
		if !within32(r.Run/maxAbs(want64), r.RunTorch32/maxAbs(want64)) || !(r.Run64 <= r.RunTol) {
			t.Errorf("graft run: max |graft - PyTorch float64| = %.3g in float32 (PyTorch float32: %.3g), %.3g in float64, want <= %.3g", r.Run, r.RunTorch32, r.Run64, r.RunTol)
		}
	case !(r.Run <= r.RunTol):
		t.Errorf("graft run: max |graft - PyTorch float64| = %.3g, want <= %.3g (PyTorch float32: %.3g)", r.Run, r.RunTol, r.RunTorch32)
	}

	// Gradients through the library (no command computes them alone).
	// float32 first; where graft float32 is not as close as PyTorch
	// float32 (float32 rounding can flip a MaxPool's choice between two
	// values 1e-6 apart: VGG's folded eval export does), graft float64 must
	// match PyTorch float64 within 1e-5, and the table says so.
	for _, f64 := range []bool{false, true} {
		g := familyGradients(t, dir, export, f64, strings.HasSuffix(export, "_preserve"))
		if !f64 {
			r.Grad, r.GradTorch32, r.Param = g.input, g.inputTorch32, g.param
			t.Logf("run %.2g (tol %.2g, torch32 %.2g); input gradient %.2g (torch32 %.2g)", r.Run, r.RunTol, r.RunTorch32, r.Grad, r.GradTorch32)
			if within32(g.input, g.inputTorch32) && within32(g.param.Worst, g.param.Torch32Worst) {
				break
			}
			continue
		}
		r.Grad64, r.Param64 = g.input, g.param
		t.Logf("float32 input gradient %.2g (torch32 %.2g), parameters %.2g (torch32 %.2g): in float64 %.2g and %.2g", r.Grad, r.GradTorch32, r.Param.Worst, r.Param.Torch32Worst, g.input, g.param.Worst)
		if !(g.input <= 1e-5) || !(g.param.Worst <= 1e-5) {
			t.Errorf("gradients: graft float32's error %.3g on the input (PyTorch float32 %.3g), %.3g on the parameters (%s; PyTorch float32 %.3g); graft float64's %.3g and %.3g, want <= 1e-5",
				r.Grad, r.GradTorch32, r.Param.Worst, r.Param.WorstName, r.Param.Torch32Worst, g.input, g.param.Worst)
		}
	}
	r.RunSeconds = time.Since(start).Seconds()
	start = time.Now()

	// graft surgery, the checker, onnxruntime-node, graft finetune.
	s := filepath.Join(tmp, "surgered.onnx")
	if code, _, errs := graft("surgery", model, "--replace-head", "3", "--freeze", "backbone", "-o", s); code != 0 {
		t.Fatalf("graft surgery: exit %d: %s", code, errs)
	}
	onnxtest.CheckModel(t, s)
	ys := filepath.Join(tmp, "ys.pb")
	if code, _, errs := graft("run", s, "--input", ref("input.pb"), "--save-output", ys, "--json"); code != 0 {
		t.Fatalf("graft run on the surgered model: exit %d: %s", code, errs)
	}
	ort, err := onnxtest.RunORT(t, s, ref("input.pb"))[0].Float64s()
	if err != nil {
		t.Fatal(err)
	}
	mine := floats(t, ys)
	r.ORT, r.ORTTol = maxDiff(ort, mine), 1e-4+1e-5*maxAbs(ort)
	if len(ort) != 2*3 || !(r.ORT <= r.ORTTol) {
		t.Errorf("surgered model: onnxruntime-node gives %d outputs %.3g from graft's, want 6 within %.3g", len(ort), r.ORT, r.ORTTol)
	}
	ft := filepath.Join(tmp, "ft")
	if code, _, errs := graft("finetune", "--model", s, "--data", fashion, "--epochs", "4", "--optimizer", "adam", "--lr", "0.001", "--batch", "16", "--seed", "1", "-o", filepath.Join(ft, "model.onnx")); code != 0 {
		t.Fatalf("graft finetune: exit %d: %s", code, errs)
	}
	h := readHistory(t, filepath.Join(ft, "metrics.json"))
	if len(h.Epochs) != 4 {
		t.Fatalf("metrics.json has %d epochs, want 4", len(h.Epochs))
	}
	r.LossFirst, r.LossLast = h.Epochs[0].Loss, h.Epochs[3].Loss
	if !(r.LossLast < r.LossFirst) {
		t.Errorf("graft finetune: training loss %.4g in the first epoch, %.4g in the last", r.LossFirst, r.LossLast)
	}
	r.SurgeryFinetuneSecs = time.Since(start).Seconds()
	t.Logf("surgery: ORT %.2g (tol %.2g); finetune loss %.3f -> %.3f; %.1f s + %.1f s", r.ORT, r.ORTTol, r.LossFirst, r.LossLast, r.RunSeconds, r.SurgeryFinetuneSecs)
	return r
}

// gradientCheck is what familyGradients measured: distances from PyTorch
// float64, relative to the largest float64 value.
type gradientCheck struct {
	input, inputTorch32 float64
	param               paramCheck
}

// paramCheck sums up the train-mode parameter gradients.
type paramCheck struct {
	N int // parameters compared
	// Worst is the largest error of graft's gradient of a parameter, at
	// WorstName, each relative to max(its largest float64 value, 1% of the
	// largest over all parameters): a gradient that is 0 in exact
	// arithmetic (a bias before BatchNorm) is compared at the scale of the
	// others, not at its own rounding noise. Torch32Worst is the largest of
	// PyTorch float32's over the same parameters.
	Worst, Torch32Worst float64
	WorstName           string
}

// familyGradients compiles the export (in float64 when f64) and returns its
// input gradient in eval mode and, when train, every parameter's gradient
// in train mode (BatchNorm on batch statistics), against PyTorch's.
func familyGradients(t *testing.T, dir, export string, f64, train bool) gradientCheck {
	ref := func(name ...string) string { return filepath.Join(append([]string{dir, "ref"}, name...)...) }
	m, err := onnx.Load(filepath.Join(dir, export+".onnx"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := runtime.Compile(m, runtime.Options{Float64: f64})
	if err != nil {
		t.Fatal(err)
	}
	in := denseFloat32(t, ref("input.pb"))
	if f64 {
		in = tensor.New(tensor.WithShape(in.Shape()...), tensor.WithBacking(float64sOfDense(in)))
	}
	l64, err := loadTensor(t, ref("labels.pb")).Int64s()
	if err != nil {
		t.Fatal(err)
	}
	labels := make([]int, len(l64))
	for i, l := range l64 {
		labels[i] = int(l)
	}
	targets, err := p.OneHot(labels, 1000)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Step(&runtime.Request{Inputs: []*tensor.Dense{in}, Targets: targets, Loss: runtime.CrossEntropy, InputGrads: true})
	if err != nil {
		t.Fatal(err)
	}
	var c gradientCheck
	g64 := floats(t, ref(export, "grad_input64.pb"))
	c.input = maxDiff(float64sOfDense(res.InputGrads[0]), g64) / maxAbs(g64)
	c.inputTorch32 = maxDiff(floats(t, ref("grad_input32.pb")), g64) / maxAbs(g64)
	if !train {
		return c
	}

	paths64, _ := filepath.Glob(filepath.Join(dir, "ref/train/grad64/*.pb"))
	if len(paths64) == 0 {
		t.Fatalf("no train-mode gradients in %s/ref/train/grad64", dir)
	}
	var names []string
	refs := map[string][2][]float64{}
	global := 0.0
	for _, p64 := range paths64 {
		g64 := loadTensor(t, p64)
		g32 := floats(t, filepath.Join(filepath.Dir(filepath.Dir(p64)), "grad32", filepath.Base(p64)))
		v64, err := g64.Float64s()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, g64.Name)
		refs[g64.Name] = [2][]float64{v64, g32}
		global = math.Max(global, maxAbs(v64))
	}
	res, err = p.Step(&runtime.Request{Inputs: []*tensor.Dense{in}, Targets: targets, Loss: runtime.CrossEntropy, Train: true, Params: names})
	if err != nil {
		t.Fatal(err)
	}
	c.param.N = len(names)
	var rows []string
	for _, name := range names {
		g, ok := res.ParamGrads[name]
		if !ok {
			t.Errorf("no gradient for %s", name)
			continue
		}
		ref := refs[name]
		scale := math.Max(maxAbs(ref[0]), 0.01*global)
		mine, torch32 := maxDiff(float64sOfDense(g), ref[0])/scale, maxDiff(ref[1], ref[0])/scale
		rows = append(rows, fmt.Sprintf("%-60s max|g| %.2g graft %.2g torch32 %.2g", name, maxAbs(ref[0]), mine, torch32))
		c.param.Torch32Worst = math.Max(c.param.Torch32Worst, torch32)
		if mine > c.param.Worst || math.IsNaN(mine) {
			c.param.Worst, c.param.WorstName = mine, name
		}
	}
	sort.Strings(rows)
	t.Logf("float64 %v: train-mode gradients of %d parameters: worst %s %.2g (torch32's worst %.2g)\n%s", f64, len(names), c.param.WorstName, c.param.Worst, c.param.Torch32Worst, strings.Join(rows, "\n"))
	return c
}

// within32 is the gradient checks' standard, "as close as PyTorch's own
// float32": graft's distance from PyTorch float64 is at most 4 times
// PyTorch float32's, or 1e-5 (distances relative to the largest float64
// value), so a wrong gradient, off by O(1), always fails.
func within32(graft, torch32 float64) bool { return graft <= math.Max(4*torch32, 1e-5) }

// run64 runs model in float64 on the input file and returns max |y - want|.
func run64(t *testing.T, model, input string, want []float64) float64 {
	m, err := onnx.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	p, err := runtime.Compile(m, runtime.Options{Float64: true})
	if err != nil {
		t.Fatal(err)
	}
	x := denseFloat32(t, input)
	out, err := p.Run(tensor.New(tensor.WithShape(x.Shape()...), tensor.WithBacking(float64sOfDense(x))))
	if err != nil {
		t.Fatal(err)
	}
	return maxDiff(float64sOfDense(out[0]), want)
}

func floats(t *testing.T, path string) []float64 {
	t.Helper()
	v, err := loadTensor(t, path).Float64s()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func denseFloat32(t *testing.T, path string) *tensor.Dense {
	x := loadTensor(t, path)
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	shape := make([]int, len(x.Dims))
	for i, d := range x.Dims {
		shape[i] = int(d)
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
}

func float64sOfDense(d *tensor.Dense) []float64 {
	switch x := d.Data().(type) {
	case []float32:
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = float64(v)
		}
		return out
	case []float64:
		return x
	}
	return nil
}

// maxDiff is max |a - b|; NaN anywhere, or different lengths, is +Inf.
func maxDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		e := math.Abs(a[i] - b[i])
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		d = math.Max(d, e)
	}
	return d
}

func maxAbs(a []float64) float64 {
	m := 0.0
	for _, v := range a {
		m = math.Max(m, math.Abs(v))
	}
	return m
}

// writeFamiliesTable replaces the set's table in README.md, between the
// lines <!-- families:SET --> and <!-- /families:SET -->. Each row is a
// family's worst over its four exports; errors have one significant digit,
// so that the table is the same on every run of the same exports (CI fails
// when the committed one differs).
func writeFamiliesTable(t *testing.T, set string, infos map[string]*familyInfo, results map[string][]exportResult) {
	e1 := func(x float64) string { return strings.Replace(fmt.Sprintf("%.0e", x), "e-0", "e-", 1) }
	var b strings.Builder
	b.WriteString("| family | architecture, input | nodes op13 / op17 | head | run: error (tolerance) | input gradient: graft (PyTorch float32) | parameter gradients, train mode: graft (PyTorch float32) | surgered, ORT vs graft | fine-tune loss, 4 epochs |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range families {
		info, rs := infos[f.name], results[f.name]
		var w exportResult // the worst of each measure
		var run, grad, param string
		var grad64, param64 bool
		params := 0
		for _, r := range rs {
			if r.Run/r.RunTol > w.Run/math.Max(w.RunTol, 1e-300) {
				w.Run, w.RunTol, w.RunTorch32 = r.Run, r.RunTol, r.RunTorch32
			}
			w.Run64 = math.Max(w.Run64, r.Run64)
			w.Grad, w.GradTorch32 = math.Max(w.Grad, r.Grad), math.Max(w.GradTorch32, r.GradTorch32)
			w.Param.Worst, w.Param.Torch32Worst = math.Max(w.Param.Worst, r.Param.Worst), math.Max(w.Param.Torch32Worst, r.Param.Torch32Worst)
			// float64 figures only for the measures float32 did not pass
			if !within32(r.Grad, r.GradTorch32) {
				grad64 = true
				w.Grad64 = math.Max(w.Grad64, r.Grad64)
			}
			if r.Param.N > 0 && !within32(r.Param.Worst, r.Param.Torch32Worst) {
				param64 = true
				w.Param64.Worst = math.Max(w.Param64.Worst, r.Param64.Worst)
			}
			w.ORT, w.ORTTol = math.Max(w.ORT, r.ORT), math.Max(w.ORTTol, r.ORTTol)
			params = max(params, r.Param.N)
			if r.LossLast/r.LossFirst > w.LossLast/math.Max(w.LossFirst, 1e-300) {
				w.LossFirst, w.LossLast = r.LossFirst, r.LossLast
			}
		}
		run = fmt.Sprintf("%s (%s)", e1(w.Run), e1(w.RunTol))
		if w.Run64 > 0 {
			run = fmt.Sprintf("float64 %s (%s); float32 %s, PyTorch float32 %s", e1(w.Run64), e1(w.RunTol), e1(w.Run), e1(w.RunTorch32))
		}
		grad = fmt.Sprintf("%s (%s)", e1(w.Grad), e1(w.GradTorch32))
		param = fmt.Sprintf("%s (%s), %d tensors", e1(w.Param.Worst), e1(w.Param.Torch32Worst), params)
		if grad64 {
			grad += fmt.Sprintf("; float64 %s", e1(w.Grad64))
		}
		if param64 {
			param += fmt.Sprintf("; float64 %s", e1(w.Param64.Worst))
		}
		head := "?"
		if len(rs) > 0 {
			head = fmt.Sprintf("%s %d -> 1000", rs[0].Head.Op, rs[0].Head.InFeatures)
		}
		arch := info.Architecture
		if set == "small" {
			arch = "small " + arch
		}
		fmt.Fprintf(&b, "| %s | %s, %d px, %.2gM parameters | %d / %d | %s | %s | %s | %s | %s (%s) | %.3g -> %.3g |\n",
			f.title, arch, info.Input[2], float64(info.Parameters)/1e6, info.Exports["op13_eval"].Nodes, info.Exports["op17_eval"].Nodes,
			head, run, grad, param, e1(w.ORT), e1(w.ORTTol), w.LossFirst, w.LossLast)
	}
	readme := filepath.Join(onnxtest.Root(), "README.md")
	old, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "<!-- families:"+set+" -->\n", "<!-- /families:"+set+" -->"
	i, j := strings.Index(string(old), begin), strings.Index(string(old), end)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the lines %q and %q around the %s table", strings.TrimSpace(begin), end, set)
	}
	updated := string(old[:i+len(begin)]) + b.String() + string(old[j:])
	if err := os.WriteFile(readme, []byte(updated), 0o644); err != nil {
		t.Fatal(err)
	}
}
