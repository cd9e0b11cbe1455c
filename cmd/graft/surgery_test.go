package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
	"github.com/graft-dev/graft/onnx/onnxtest"
	"github.com/graft-dev/graft/runtime"
)

// graft surgery's output passes onnx.checker and runs in onnxruntime-node
// with outputs equal to graft's own runtime; inspect shows the new head and
// the trainable set.
func TestSurgeryOutputRunsInORT(t *testing.T) {
	src := "../../testdata/models/resnet_tiny_op13_bn"
	out := filepath.Join(t.TempDir(), "surgered.onnx")
	code, stdout, errs := graft("surgery", filepath.Join(src, "model.onnx"), "--replace-head", "3", "--freeze", "backbone",
		"--normalize", "0.485,0.456,0.406/0.229,0.224,0.225", "-o", out)
	if code != 0 {
		t.Fatalf("graft surgery: %s", errs)
	}
	if !strings.Contains(stdout, "64 -> 3") || !strings.Contains(stdout, "trainable:  2 of") {
		t.Errorf("surgery report:\n%s", stdout)
	}
	code, js, errs := graft("inspect", "--json", out)
	if code != 0 {
		t.Fatal(errs)
	}
	var r Report
	json.Unmarshal([]byte(js), &r)
	if r.Head == nil || r.Head.OutFeatures != 3 || strings.Join(r.Trainable, ",") != "fc.weight,fc.bias" {
		t.Errorf("inspect after surgery: head %+v, trainable %v", r.Head, r.Trainable)
	}
	if len(r.Outputs) != 1 || strings.Join(r.Outputs[0].Shape, ",") != "batch,3" {
		t.Errorf("output %+v", r.Outputs)
	}

	onnxtest.CheckModel(t, out)
	input := filepath.Join(src, "test_data_set_0/input_0.pb")
	ort := onnxtest.RunORT(t, out, input)
	m, err := onnx.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	x, _ := onnx.LoadTensor(input)
	xv, _ := x.Float32s()
	mine, err := p.Run(denseF32(xv, x.Dims))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := onnx.FromFloat32("graft", ort[0].Dims, mine[0].Data().([]float32))
	if d, err := onnxtest.MaxAbsDiff(ort[0], want); err != nil || d > 1e-5 {
		t.Errorf("ORT and graft differ on the surgered model by %g (%v)", d, err)
	}
}

func TestSurgeryBadInput(t *testing.T) {
	dir := t.TempDir()
	model := "../../testdata/models/cnn/model.onnx"
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"surgery", model, "--replace-head", "0", "-o", filepath.Join(dir, "a.onnx")}, 2, "at least 1 class"},
		{[]string{"surgery", model, "-o", filepath.Join(dir, "a.onnx")}, 2, "nothing to do"},
		{[]string{"surgery", model, "--replace-head", "3"}, 2, "-o OUT.onnx is required"},
		{[]string{"surgery", model, "--replace-head", "3", "-o", filepath.Join(dir, "no/such/dir/a.onnx")}, 1, "does not exist"},
		{[]string{"surgery", model, "--replace-head", "3", "-o", model}, 1, "is the same file as the model"},
		{[]string{"surgery", model, "--replace-head", "3", "-o", "/dev/null"}, 1, "/dev/null is a character device"},
		{[]string{"surgery", model, "--freeze", "nothing*", "-o", filepath.Join(dir, "a.onnx")}, 1, "--freeze nothing*: the selector matches no parameter"},
		{[]string{"surgery", model, "--replace-head", "3", "--head", "nope", "-o", filepath.Join(dir, "a.onnx")}, 1, `no node named "nope"`},
		{[]string{"surgery", model, "--init", "bogus", "-o", filepath.Join(dir, "a.onnx")}, 2, "unknown rule"},
	} {
		code, _, errs := graft(c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: code %d, stderr %q; want %d and %q", c.args[2:], code, errs, c.code, c.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed surgery left files: %v", entries)
	}
}

// Bad --normalize values are command-line errors, caught before any work.
func TestSurgeryNormalizeFlag(t *testing.T) {
	dir := t.TempDir()
	model := "../../testdata/models/resnet_tiny_op13_bn/model.onnx"
	for _, c := range []struct{ value, want string }{
		{"0.5", "want MEAN/STD"},
		{"0.5/NaN", `--std "NaN": "NaN" is not a number`},
		{"0.5/0", "--std values must not be 0"},
		{"x/0.5", `--mean "x": "x" is not a number`},
	} {
		code, _, errs := graft("surgery", model, "--normalize", c.value, "-o", filepath.Join(dir, "a.onnx"))
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("--normalize %s: code %d, %q; want 2 and %q", c.value, code, errs, c.want)
		}
	}
	code, out, errs := graft("surgery", model, "--normalize", "0.5/0.25", "-o", filepath.Join(dir, "a.onnx"))
	if code != 0 {
		t.Fatalf("%s %s", errs, out)
	}
	m, err := onnx.Load(filepath.Join(dir, "a.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := contract.Derive(m)
	if err != nil || !c.Input.NormalizedInside || !slices.Equal(c.Input.Mean, []float32{0.5, 0.5, 0.5}) {
		t.Errorf("the surgered model's contract: %+v, %v", c.Input, err)
	}
}

// A read-only output is replaced only with --force, and keeps its mode; an
// output that is the model itself likewise.
func TestSurgeryForce(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "a.onnx")
	if err := os.WriteFile(out, []byte("old"), 0o444); err != nil {
		t.Fatal(err)
	}
	model := "../../testdata/models/cnn/model.onnx"
	code, _, errs := graft("surgery", model, "--replace-head", "3", "-o", out)
	if b, _ := os.ReadFile(out); code != 1 || !strings.Contains(errs, "is read-only") || !strings.Contains(errs, "--force") || string(b) != "old" {
		t.Errorf("read-only output: code %d, %q, file %q", code, errs, b)
	}
	if code, _, errs := graft("surgery", model, "--replace-head", "3", "-o", out, "--force"); code != 0 {
		t.Fatalf("--force: %s", errs)
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o444 {
		t.Errorf("forced output: %v, mode %v", err, st.Mode())
	}
	if _, err := onnx.Load(out); err != nil {
		t.Errorf("forced output does not load: %v", err)
	}
	// Surgery on a copy of the model, in place, only when forced.
	copyPath := filepath.Join(dir, "m.onnx")
	raw, _ := os.ReadFile(model)
	os.WriteFile(copyPath, raw, 0o644)
	if code, _, errs := graft("surgery", copyPath, "--replace-head", "3", "-o", copyPath); code != 1 || !strings.Contains(errs, "is the same file as the model") {
		t.Errorf("in place: code %d, %q", code, errs)
	}
	if b, _ := os.ReadFile(copyPath); !bytes.Equal(b, raw) {
		t.Error("the model changed")
	}
	if code, _, errs := graft("surgery", copyPath, "--replace-head", "3", "-o", copyPath, "--force"); code != 0 {
		t.Errorf("in place with --force: %s", errs)
	}
}

// --insert-stn comes after --init: the transformer starts at the identity
// and the classifier's weights are those the same --init and seed give
// without it, so the two train from the same start. A second insertion is
// a one-line error.
func TestSurgeryInsertSTN(t *testing.T) {
	dir := t.TempDir()
	model := "../../testdata/models/lenet_mnist/model.onnx"
	plain, stn := filepath.Join(dir, "plain.onnx"), filepath.Join(dir, "stn.onnx")
	if code, _, errs := graft("surgery", model, "--init", "pytorch", "--seed", "3", "-o", plain); code != 0 {
		t.Fatal(errs)
	}
	code, out, errs := graft("surgery", model, "--init", "pytorch", "--seed", "3", "--insert-stn", "-o", stn)
	if code != 0 {
		t.Fatal(errs)
	}
	if !strings.Contains(out, "head:       /fc2/Gemm (Gemm) 50 -> 10") || !strings.Contains(out, "trainable:  16 of 16") {
		t.Errorf("surgery report:\n%s", out)
	}
	pm, err := onnx.Load(plain)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := onnx.Load(stn)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range pm.Graph.Initializers {
		if w := sm.Graph.Value(v.Name); w == nil || !bytes.Equal(w.Const.Raw(), v.Const.Raw()) {
			t.Errorf("classifier parameter %q differs with --insert-stn", v.Name)
		}
	}
	if b, err := sm.Graph.Value("stn.fc_loc.2.bias").Const.Float32s(); err != nil || !slices.Equal(b, []float32{1, 0, 0, 0, 1, 0}) {
		t.Errorf("theta's bias %v (%v), want the identity", b, err)
	}
	onnxtest.CheckModel(t, stn)
	code, _, errs = graft("surgery", stn, "--insert-stn", "-o", filepath.Join(dir, "twice.onnx"))
	if code != 1 || !strings.Contains(errs, "--insert-stn: insert spatial transformer: the model already has") || strings.Count(errs, "\n") != 1 {
		t.Errorf("second insertion: code %d, %q", code, errs)
	}
}
