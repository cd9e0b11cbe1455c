package onnx

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// A model file with a poisoned weight: CheckFinite names the initializer,
// the first bad element and how many more there are.
func TestCheckFiniteOnPoisonedFile(t *testing.T) {
	const path = "../testdata/models/cnn/model.onnx"
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.CheckFinite(); err != nil {
		t.Fatalf("the clean model: %v", err)
	}
	w := m.Graph.Value("fc2.weight").Const // [10, 32]
	raw := w.Raw()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(file, raw)
	if at < 0 || bytes.Index(file[at+1:], raw) >= 0 {
		t.Fatal("fc2.weight's bytes are not in the file exactly once")
	}
	binary.LittleEndian.PutUint32(file[at+4*37:], math.Float32bits(float32(math.NaN())))
	binary.LittleEndian.PutUint32(file[at+4*300:], math.Float32bits(float32(math.Inf(-1))))
	poisoned := filepath.Join(t.TempDir(), "poisoned.onnx")
	if err := os.WriteFile(poisoned, file, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err = Load(poisoned)
	if err != nil {
		t.Fatal(err)
	}
	want := `initializer "fc2.weight" holds NaN at element 37 ([1,5] of float32[10,32]), and 1 more NaN or infinite elements`
	if err := m.CheckFinite(); err == nil || err.Error() != want {
		t.Errorf("CheckFinite: %v, want %s", err, want)
	}
}

func TestCheckFiniteTypesAndAttributes(t *testing.T) {
	u16 := func(v ...uint16) []byte {
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], x)
		}
		return b
	}
	for _, c := range []struct {
		dt   DType
		dims []int64
		raw  []byte
		want string // "" for finite
	}{
		{Float16, []int64{3}, u16(0x3c00, 0x7e00, 0xfc00), "holds NaN at element 1, and 1 more NaN or infinite elements"},
		{Float16, []int64{2}, u16(0x7bff, 0xfc00), "holds -Inf at element 1"},
		{Float16, []int64{1}, u16(0x7bff), ""},
		{BFloat16, []int64{2}, u16(0x3f80, 0x7f80), "holds +Inf at element 1"},
		{BFloat16, []int64{1}, u16(0x7fc0), "holds NaN at element 0"},
		{Float8E4M3FN, []int64{2}, []byte{0x7e, 0xff}, "holds NaN at element 1"},
		{Float8E4M3FNUZ, []int64{2}, []byte{0x7f, 0x80}, "holds NaN at element 1"},
		{Float8E5M2, []int64{3}, []byte{0x7b, 0xfc, 0x7d}, "holds -Inf at element 1, and 1 more NaN or infinite elements"},
		{Float8E5M2FNUZ, []int64{1}, []byte{0xff}, ""},
		{Int32, []int64{1}, []byte{0xff, 0xff, 0xff, 0x7f}, ""},
	} {
		tt, err := NewTensor("t", c.dt, c.dims, c.raw)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if err := checkTensorFinite(tt); err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%s % x: %q, want %q", c.dt, c.raw, got, c.want)
		}
	}

	g := &Graph{Name: "g"}
	x := g.AddInput("x", TensorType(Float, 2))
	inf, _ := FromFloat32("c", nil, []float32{float32(math.Inf(1))})
	c := g.AddNode("Constant", "const", nil, []string{"c"}, &Attribute{Name: "value", Type: AttrTensor, Tensor: inf})
	y := g.AddNode("Add", "add", []*Value{x, c.Outputs[0]}, []string{"y"})
	g.Outputs = []*Value{y.Outputs[0]}
	m := &Model{IRVersion: 8, Opsets: []Opset{{Version: 13}}, Graph: g}
	want := `Constant node "const" attribute "value" holds +Inf at element 0`
	if err := m.CheckFinite(); err == nil || err.Error() != want {
		t.Errorf("constant: %v, want %s", err, want)
	}
	c.Attrs[0].Tensor, _ = FromFloat32("c", nil, []float32{1})
	y.Attrs = []*Attribute{{Name: "alpha", Type: AttrFloat, Float: float32(math.NaN())}}
	want = `Add node "add" attribute "alpha" is NaN`
	if err := m.CheckFinite(); err == nil || err.Error() != want {
		t.Errorf("float attribute: %v, want %s", err, want)
	}
	y.Attrs = nil
	sub := &Graph{Name: "then"}
	w, _ := FromFloat32("w", []int64{1}, []float32{float32(math.NaN())})
	sub.Outputs = []*Value{sub.AddInitializer(w)}
	y.Attrs = []*Attribute{{Name: "then_branch", Type: AttrGraph, Graph: sub}}
	want = `Add node "add" attribute "then_branch", subgraph "then": initializer "w" holds NaN at element 0`
	if err := m.CheckFinite(); err == nil || err.Error() != want {
		t.Errorf("subgraph: %v, want %s", err, want)
	}
}
