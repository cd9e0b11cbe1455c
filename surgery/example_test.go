package surgery_test

import (
	"fmt"
	"log"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/surgery"
)

// Find a model's classifier head.
func ExampleFindHead() {
	m, err := onnx.Load("../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	h, err := surgery.FindHead(m.Graph)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s %d -> %d\n", h.Node.Name, h.Node.OpType, h.InFeatures, h.OutFeatures)
	// Output: /fc/Gemm: Gemm 64 -> 10
}

// Prepare a pretrained model for transfer learning: a new 3-class head,
// everything else frozen, all in one transaction. Save the result with
// onnx.Save; graft finetune then trains just the head.
func ExampleApply() {
	m, err := onnx.Load("../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	err = surgery.Apply(m,
		surgery.ReplaceHead(3, surgery.HeadOptions{Seed: 1}),
		surgery.Freeze(surgery.Backbone()))
	if err != nil {
		log.Fatal(err)
	}
	trainable, _ := surgery.Trainable(m)
	fmt.Println("output:", m.Graph.Outputs[0].Type)
	fmt.Println("trainable:", trainable)
	// Output:
	// output: float32[batch,3]
	// trainable: [fc.weight fc.bias]
}

// A failed transaction leaves the model as it was.
func ExampleApply_rollback() {
	m, err := onnx.Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	err = surgery.Apply(m,
		surgery.ReplaceHead(4, surgery.HeadOptions{}),
		surgery.Freeze(surgery.Glob("no.such.layer.*")))
	fmt.Println(err)
	h, _ := surgery.FindHead(m.Graph)
	fmt.Println("head still has", h.OutFeatures, "outputs")
	// Output:
	// surgery: edit 2 of 2: the selector matches no parameter
	// head still has 10 outputs
}

// Initialise a model the DCGAN way: Conv weights N(0, 0.02), BatchNorm
// scale N(1, 0.02) and bias 0; the seed makes it reproducible.
func ExampleInitialize() {
	m, err := onnx.Load("../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	if err := surgery.Apply(m, surgery.Initialize(surgery.DCGAN(), surgery.All(), 42)); err != nil {
		log.Fatal(err)
	}
	for _, p := range surgery.Params(m)[:3] {
		fmt.Println(p.Name, p.Op, p.Role)
	}
	// Output:
	// conv1.weight Conv weight
	// bn1.weight BatchNormalization scale
	// bn1.bias BatchNormalization bias
}

// Put the input normalisation inside the model, so it takes pixels in [0, 1]
// (what attacks and hardening need).
func ExampleNormalize() {
	m, err := onnx.Load("../testdata/models/resnet_tiny_op13_folded/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	mean, std := []float32{0.485, 0.456, 0.406}, []float32{0.229, 0.224, 0.225}
	if err := surgery.Apply(m, surgery.Normalize("input", mean, std)); err != nil {
		log.Fatal(err)
	}
	for _, n := range m.Graph.Nodes[:2] {
		fmt.Println(n.OpType, n.Name)
	}
	// Output:
	// Sub graft_normalize_sub
	// Div graft_normalize_div
}
