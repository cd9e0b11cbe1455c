package onnx_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/graft-dev/graft/onnx"
)

// Load a model, look at its interface, rename its output and save it.
func Example() {
	m, err := onnx.Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	in, out := m.Graph.Inputs[0], m.Graph.Outputs[0]
	fmt.Println(in.Name, in.Type)
	fmt.Println(out.Name, out.Type, "made by", out.Producer())

	out.Name = "logits" // the node writing it now writes "logits"
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	if err := onnx.Save(m, filepath.Join(dir, "renamed.onnx")); err != nil {
		log.Fatal(err)
	}
	again, err := onnx.Load(filepath.Join(dir, "renamed.onnx"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(again.Graph.Outputs[0].Name, "made by", again.Graph.Outputs[0].Producer())
	// Output:
	// input float32[batch,1,28,28]
	// output float32[batch,10] made by Gemm node "/fc2/Gemm"
	// logits made by Gemm node "/fc2/Gemm"
}

// Validation names the node and the value at fault.
func ExampleModel_Validate() {
	m, err := onnx.Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	m.Graph.Nodes[2].Inputs[0] = &onnx.Value{Name: "nowhere"}
	fmt.Println(m.Validate())
	// Output:
	// invalid model: graph "torch_jit": MaxPool node "/MaxPool": input 0 "nowhere" is not defined (not a graph input, initializer or node output)
}
