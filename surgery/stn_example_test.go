package surgery_test

import (
	"fmt"
	"log"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/surgery"
)

// Put a spatial transformer in front of the MNIST LeNet: the model keeps
// its input and output, now reads the transformed digits, and imports
// opset 16 for GridSample.
func ExampleInsertSpatialTransformer() {
	m, err := onnx.Load("../testdata/models/lenet_mnist/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	if err := surgery.Apply(m, surgery.InsertSpatialTransformer(surgery.STNOptions{Seed: 1})); err != nil {
		log.Fatal(err)
	}
	fmt.Println("opset", m.OpsetVersion(""))
	for _, n := range m.Graph.Consumers(m.Graph.Value(surgery.STNOutput)) {
		fmt.Println(surgery.STNOutput, "is read by", n.Name)
	}
	// Output:
	// opset 16
	// stn/transformed is read by /conv1/Conv
}
