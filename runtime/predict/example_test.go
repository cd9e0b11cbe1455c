package predict_test

import (
	"context"
	"fmt"
	"log"
	"path/filepath"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/predict"
)

// Classify two held-out MNIST digits stored as a tensor file. The LeNet
// ends in LogSoftmax: its contract says so, and the probabilities are the
// exp of its outputs.
func Example() {
	dir := "../../testdata/models/lenet_mnist/"
	m, err := onnx.Load(dir + "model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	p, err := predict.New(m, predict.Options{TopK: 1})
	if err != nil {
		log.Fatal(err)
	}
	r, err := p.Path(context.Background(), dir+"test_data_set_0/input_0.pb")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("output:", r.Contract.Output.Kind)
	for _, ex := range r.Examples {
		fmt.Printf("%s: class %d, probability %.3f\n", filepath.Base(ex.Source), ex.Top[0].Class, ex.Top[0].Probability)
	}
	// Output:
	// output: log_probabilities
	// input_0.pb[0]: class 1, probability 0.999
	// input_0.pb[1]: class 0, probability 1.000
}

// Classify a photo: the model's contract decides the preprocessing
// (torchvision's, pixel-identical to PIL's), here the defaults for a
// 3-channel 64x64 input, since the model stores none.
func ExamplePredictor_Path() {
	m, err := onnx.Load("../../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	p, err := predict.New(m, predict.Options{TopK: 1})
	if err != nil {
		log.Fatal(err)
	}
	r, err := p.Path(context.Background(), "../data/testdata/shapes_317x211.jpg")
	if err != nil {
		log.Fatal(err)
	}
	pre := r.Preprocessing
	fmt.Printf("resize %d, center crop %dx%d, mean %v, std %v\n", pre.Resize, pre.Width, pre.Height, pre.Mean, pre.Std)
	top := r.Examples[0].Top[0]
	fmt.Printf("class %d, probability %.2f\n", top.Class, top.Probability)
	// Output:
	// resize 73, center crop 64x64, mean [0.485 0.456 0.406], std [0.229 0.224 0.225]
	// class 8, probability 0.28
}
