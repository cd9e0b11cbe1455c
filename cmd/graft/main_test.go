package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/bench"
	"github.com/graft-dev/graft/surgery"
	"gorgonia.org/tensor"
)

// graft runs one command line in-process and returns exit code and output.
func graft(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	code, out, _ := graft("help")
	if code != 0 || !strings.Contains(out, "inspect") {
		t.Errorf("graft help: code %d, output %q", code, out)
	}
	// One line a command.
	_, list, _ := strings.Cut(out, "Commands:\n")
	list, _, _ = strings.Cut(list, "\n\n")
	if lines := strings.Split(list, "\n"); len(lines) != len(commands) {
		t.Errorf("graft help lists %d lines for %d commands:\n%s", len(lines), len(commands), list)
	}
	// A bad flag is one line and the hint, not the whole usage.
	if code, out, errs := graft("inspect", "--bogus", "m.onnx"); code != 2 || out != "" || strings.Count(errs, "\n") != 2 {
		t.Errorf("a bad flag: code %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = graft("inspect", "--help")
	if code != 0 || !strings.Contains(out, "--json") && !strings.Contains(out, "-json") {
		t.Errorf("graft inspect --help: code %d, output %q", code, out)
	}
	if code, _, errs := graft("frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: code %d, stderr %q", code, errs)
	}
	if code, _, errs := graft("inspect"); code != 2 || !strings.Contains(errs, "want exactly one model file") {
		t.Errorf("inspect without a file: code %d, stderr %q", code, errs)
	}
}

func TestInspectTestModels(t *testing.T) {
	code, out, errs := graft("inspect", "../../testdata/models/resnet_tiny_op17_bn/model.onnx", "--json")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errs)
	}
	var r Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Head == nil || r.Head.Node != "/fc/Gemm" || r.Head.InFeatures != 64 || r.Head.OutFeatures != 10 {
		t.Errorf("head = %+v", r.Head)
	}
	if r.Ops["BatchNormalization"] != 20 || r.Ops["Conv"] != 20 || r.Nodes != 69 {
		t.Errorf("ops = %v, nodes %d", r.Ops, r.Nodes)
	}
	if len(r.Inputs) != 1 || strings.Join(r.Inputs[0].Shape, ",") != "batch,3,64,64" {
		t.Errorf("inputs = %+v", r.Inputs)
	}
	if len(r.Opsets) != 1 || r.Opsets[0].Version != 17 {
		t.Errorf("opsets = %+v", r.Opsets)
	}
	code, out, _ = graft("inspect", "../../testdata/models/cnn/model.onnx")
	if code != 0 || !strings.Contains(out, "head:        /fc2/Gemm (Gemm) 32 -> 10") {
		t.Errorf("text report:\n%s", out)
	}
}

// The full-size torchvision exports: the head is fc 512 -> 1000, and the
// parameter count equals the initializer sum computed by Python's onnx.
func TestInspectFullSizeResNet18(t *testing.T) {
	paths := testenv.Big.Glob(t, "resnet18_*/model.onnx", 4)
	onnxtest.NeedPython(t, "onnx", "numpy")
	for _, p := range paths {
		code, out, errs := graft("inspect", "--json", p)
		if code != 0 {
			t.Fatalf("%s: %s", p, errs)
		}
		var r Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if r.Head == nil || r.Head.InFeatures != 512 || r.Head.OutFeatures != 1000 || r.Head.Op != "Gemm" {
			t.Errorf("%s: head %+v", p, r.Head)
		}
		py, err := exec.Command(onnxtest.Python, "-c",
			"import sys, onnx, numpy; m = onnx.load(sys.argv[1]); print(sum(int(numpy.prod(t.dims)) for t in m.graph.initializer))", p).Output()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := strconv.ParseInt(strings.TrimSpace(string(py)), 10, 64)
		if r.Parameters != want {
			t.Errorf("%s: %d parameters, Python's onnx counts %d", p, r.Parameters, want)
		}
	}
}

// Each bad input gives one line on stderr naming the problem, exit code 1,
// and no Go panic trace.
func TestInspectBadInput(t *testing.T) {
	dir := t.TempDir()
	cnn, err := os.ReadFile("../../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	random := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(random)
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("archive/data.pkl")
	w.Write([]byte("\x80\x02}q\x00."))
	zw.Close()

	// Edited models, encoded without validation as a broken tool would.
	edit := func(name string, f func(m *onnx.Model)) string {
		m, err := onnx.Decode(cnn)
		if err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := onnx.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, b)
	}
	g := func(m *onnx.Model) *onnx.Graph { return m.Graph }
	cases := []struct {
		path string
		want string
	}{
		{write("empty.onnx", nil), "the file is empty"},
		{write("truncated.onnx", cnn[:len(cnn)/2]), "does not decode"},
		{write("random.onnx", random), "not an ONNX model"},
		{write("model.pth", zbuf.Bytes()), "zip archive"},
		{filepath.Join(dir, "missing.onnx"), "no such file"},
		{edit("cycle.onnx", func(m *onnx.Model) {
			first, last := g(m).Nodes[0], g(m).Nodes[len(g(m).Nodes)-1]
			first.Inputs[0] = last.Outputs[0]
		}), "cycle"},
		{edit("undefined.onnx", func(m *onnx.Model) {
			g(m).Nodes[2].Inputs[0] = &onnx.Value{Name: "nowhere"}
		}), `input 0 "nowhere" is not defined`},
		{edit("duplicate.onnx", func(m *onnx.Model) {
			g(m).Nodes[1].Outputs[0].Name = g(m).Nodes[0].Outputs[0].Name
		}), "duplicate name"},
		{edit("huge.onnx", func(m *onnx.Model) {
			g(m).Initializers[0].Const.Dims = []int64{1000000, 1000000}
		}), "needs 4000000000000 bytes"},
	}
	for _, c := range cases {
		code, out, errs := graft("inspect", c.path)
		if code != 1 {
			t.Errorf("%s: exit code %d, want 1 (stdout %q)", filepath.Base(c.path), code, out)
		}
		if !strings.Contains(errs, c.want) {
			t.Errorf("%s: stderr %q lacks %q", filepath.Base(c.path), errs, c.want)
		}
		if strings.Count(strings.TrimSpace(errs), "\n") != 0 || strings.Contains(errs, "goroutine") || strings.Contains(errs, "panic") {
			t.Errorf("%s: stderr is not one clean line: %q", filepath.Base(c.path), errs)
		}
	}
}

func denseF32(v []float32, dims []int64) *tensor.Dense {
	shape := make([]int, len(dims))
	for i, d := range dims {
		shape[i] = int(d)
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
}

// inspectModel runs graft inspect and graft inspect --json on a model.
func inspectModel(t *testing.T, m *onnx.Model) (text string, r *Report) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := onnx.Save(m, path); err != nil {
		t.Fatal(err)
	}
	code, text, errs := graft("inspect", path)
	if code != 0 {
		t.Fatalf("inspect: code %d: %s", code, errs)
	}
	code, out, errs := graft("inspect", "--json", path)
	if code != 0 {
		t.Fatalf("inspect --json: code %d: %s", code, errs)
	}
	r = &Report{}
	if err := json.Unmarshal([]byte(out), r); err != nil {
		t.Fatal(err)
	}
	return text, r
}

// graft inspect shows the model contract: what the model expects and
// outputs, where that came from, and the notes and warnings.
func TestInspectContract(t *testing.T) {
	lenet := "../../testdata/models/lenet_mnist/model.onnx"
	m, err := onnx.Load(lenet)
	if err != nil {
		t.Fatal(err)
	}
	text, r := inspectModel(t, m)
	c := r.Contract
	if c == nil || c.Stored || c.Input.Layout != "NCHW" || c.Input.Channels != 1 || c.Input.Height != 28 || c.Input.Resize != 28 ||
		c.Input.Mean != nil || c.Input.NormalizedInside || c.Output.Kind != "log_probabilities" || c.Output.Activation != "LogSoftmax" ||
		c.Output.NumClasses != 10 || len(c.Notes) == 0 {
		t.Errorf("contract %+v", c)
	}
	for _, want := range []string{
		"contract:    derived from the graph and defaults",
		`expects:   "input": NCHW images, 1 channel (gray), 28x28 (resize 28, center crop), pixels in [0, 1], no normalisation`,
		`outputs:   "output": log-probabilities (a final LogSoftmax), 10 classes`,
		"note:      no normalisation stored in the model",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}

	// Normalised inside (graft surgery --normalize), class names stored.
	m, _ = onnx.Load("../../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err := surgery.Apply(m, surgery.Normalize("input", contract.ImageNetMean, contract.ImageNetStd)); err != nil {
		t.Fatal(err)
	}
	dc, err := contract.Derive(m)
	if err != nil {
		t.Fatal(err)
	}
	dc.Output.Classes = strings.Split("a,b,c,d,e,f,g,h,i,j", ",")
	if err := contract.Store(m, dc); err != nil {
		t.Fatal(err)
	}
	text, r = inspectModel(t, m)
	if c := r.Contract; c == nil || !c.Stored || !c.Input.NormalizedInside || len(c.Input.Mean) != 3 || c.Output.Kind != "logits" || len(c.Output.Classes) != 10 {
		t.Errorf("contract %+v", c)
	}
	if _, ok := r.Metadata[contract.Key]; ok {
		t.Errorf("the stored contract is listed as metadata too")
	}
	for _, want := range []string{"contract:    stored by graft", "normalised inside the model (mean [0.485 0.456 0.406] std [0.229 0.224 0.225])", "10 classes: a, b, c"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}

	// Names stored for another class count: a warning. An input without a
	// shape: "shape unknown".
	m, _ = onnx.Load(lenet)
	m.SetMetadata(contract.Key, `{"version":1,"input":{"layout":"NCHW","channels":1,"height":28,"width":28,"resize":28,"pixel_scale":1},"output":{"kind":"logits","classes":["x","y"]}}`)
	m.Graph.Inputs[0].Type.Shape = nil
	text, r = inspectModel(t, m)
	if c := r.Contract; c == nil || len(c.Warnings) != 1 || r.Inputs[0].Shape != nil {
		t.Errorf("contract %+v, inputs %+v", c, r.Inputs)
	}
	for _, want := range []string{"input:       input float32, shape unknown\n", "warning:   metadata graft.contract names 2 classes"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}

// --memory-limit (or GRAFT_MEMORY_LIMIT) bounds every command: a bad size
// is a command-line error, and work over the limit is refused before it
// starts, naming the tensor and the limit.
func TestMemoryLimitFlag(t *testing.T) {
	defer runtime.SetMemoryLimit(0) // the flag sets the process's limit
	model := "../../testdata/models/cnn/model.onnx"
	img := "../../testdata/images/fashion/bag/0001.png"
	if code, _, errs := graft("inspect", model, "--memory-limit", "lots"); code != 2 || !strings.Contains(errs, "not a size") {
		t.Errorf("--memory-limit lots: code %d, %q", code, errs)
	}
	t.Setenv("GRAFT_MEMORY_LIMIT", "lots")
	if code, _, errs := graft("inspect", model); code != 2 || !strings.Contains(errs, `GRAFT_MEMORY_LIMIT="lots": not a size`) {
		t.Errorf("GRAFT_MEMORY_LIMIT=lots: code %d, %q", code, errs)
	}
	t.Setenv("GRAFT_MEMORY_LIMIT", "")
	code, out, errs := graft("run", model, "--input", img, "--memory-limit", "1MiB")
	if code != 1 || out != "" || !strings.Contains(errs, `largest tensor: the output of Conv node "/conv1/Conv"`) ||
		!strings.Contains(errs, "over graft's memory limit of 1.0 MiB (--memory-limit)") {
		t.Errorf("run under 1 MiB: code %d, %q %q", code, out, errs)
	}
	runtime.SetMemoryLimit(0)
	if code, out, errs := graft("run", model, "--input", img); code != 0 {
		t.Errorf("run under the default limit: %d %s %s", code, out, errs)
	}
}

// graft bench maps its flags to bench.Options and reports the run.
func TestBenchFlags(t *testing.T) {
	model := "../../testdata/models/cnn/model.onnx"
	code, out, errs := graft("bench", model, "--mode", "fgsm", "--batch", "2", "--iters", "2", "--warmup", "0", "--threads", "1", "--json")
	if code != 0 {
		t.Fatalf("%d %s", code, errs)
	}
	var r bench.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Mode != bench.FGSM || r.Batch != 2 || len(r.Times) != 2 || r.Threads != 1 {
		t.Errorf("%v: %+v", err, r)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{model, "--mode", "sing"}, `--mode "sing"`},
		{[]string{model, "--iters", "0"}, "--iters must be at least 1"},
		{nil, "want exactly one model file"},
	} {
		if code, _, errs := graft(append([]string{"bench"}, c.args...)...); code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: code %d, %q", c.args, code, errs)
		}
	}
}
