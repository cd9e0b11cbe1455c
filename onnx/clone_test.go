package onnx

import (
	"bytes"
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
	// Edit the clone everywhere: names, data, structure.
	c.Graph.Outputs[0].Name = "renamed"
	c.Graph.Initializers[0].Const.Raw()[0] ^= 0xff
	c.Graph.Nodes = c.Graph.Nodes[:3]
	c.ProducerName = "edited"
	if after, _ := Encode(m); !bytes.Equal(after, before) {
		t.Fatal("editing the clone changed the original")
	}
}

func TestCloneKeepsExternalData(t *testing.T) {
	m, err := Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	w := m.Graph.Initializers[0].Const
	if err := w.SetExternal("weights.bin"); err != nil {
		t.Fatal(err)
	}
	c, err := m.Clone()
	if err != nil {
		t.Fatal(err)
	}
	cw := c.Graph.Initializers[0].Const
	if cw.External() == nil || cw.External().Location != "weights.bin" {
		t.Fatalf("clone's tensor external = %+v, want weights.bin", cw.External())
	}
	if !bytes.Equal(cw.Raw(), w.Raw()) || &cw.Raw()[0] == &w.Raw()[0] {
		t.Fatal("clone's external tensor data is not an equal, separate copy")
	}
	if c.Graph.Initializers[1].Const.External() != nil {
		t.Fatal("an inline tensor became external in the clone")
	}
}
