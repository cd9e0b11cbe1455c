package onnx

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"
)

func TestCloneIsDeepAndFaithful(t *testing.T) {
	m, err := Load("../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := Encode(m)
	c, err := m.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := Encode(c); !bytes.Equal(got, before) {
		t.Fatal("clone encodes differently from the original")
	}
	// The element bytes are shared (they are never modified in place).
	for i, v := range m.Graph.Initializers {
		if raw := v.Const.Raw(); len(raw) > 0 && &c.Graph.Initializers[i].Const.Raw()[0] != &raw[0] {
			t.Fatalf("initializer %q: the clone copied the element bytes", v.Name)
		}
	}
	// Edit the clone everywhere: names, data, structure.
	c.Graph.Outputs[0].Name = "renamed"
	raw := slices.Clone(c.Graph.Initializers[0].Const.Raw())
	raw[0] ^= 0xff
	if err := c.Graph.Initializers[0].Const.SetRaw(raw); err != nil {
		t.Fatal(err)
	}
	c.Graph.Nodes = c.Graph.Nodes[:3]
	c.ProducerName = "edited"
	if after, _ := Encode(m); !bytes.Equal(after, before) {
		t.Fatal("editing the clone changed the original")
	}
}

func TestCloneKeepsExternalData(t *testing.T) {
	m := loadCNN(t)
	if err := m.Graph.Initializers[0].Const.SetExternal(true); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := Save(m, path); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	w := m.Graph.Initializers[0].Const
	c, err := m.Clone()
	if err != nil {
		t.Fatal(err)
	}
	cw := c.Graph.Initializers[0].Const
	if e, we := cw.External(), w.External(); e == nil || e.Location != we.Location || e.Offset != we.Offset || e.Length != we.Length {
		t.Fatalf("clone's tensor external = %+v, want %+v", cw.External(), w.External())
	}
	if !slices.Equal(c.ExternalDataFiles(), m.ExternalDataFiles()) || len(c.ExternalDataFiles()) != 1 {
		t.Errorf("clone's data files %q, want %q", c.ExternalDataFiles(), m.ExternalDataFiles())
	}
	if &cw.Raw()[0] != &w.Raw()[0] {
		t.Fatal("clone's external tensor data is not the original's bytes, shared")
	}
	if c.Graph.Initializers[1].Const.External() != nil {
		t.Fatal("an inline tensor became external in the clone")
	}
}
