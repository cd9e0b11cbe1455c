package runtime_test

import (
	"fmt"
	"log"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"gorgonia.org/tensor"
)

// Run a model, then take the gradient of its loss with respect to the input
// (what FGSM steps along) and to the head's weight.
func Example() {
	m, err := onnx.Load("../testdata/models/cnn/model.onnx")
	if err != nil {
		log.Fatal(err)
	}
	p, err := runtime.Compile(m, runtime.Options{})
	if err != nil {
		log.Fatal(err)
	}
	x := tensor.New(tensor.WithShape(2, 1, 28, 28), tensor.Of(tensor.Float32))
	out, err := p.Run(x)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("scores", out[0].Shape())

	targets, _ := p.OneHot([]int{3, 7}, 10)
	res, err := p.Step(&runtime.Request{
		Inputs: []*tensor.Dense{x}, Targets: targets, Loss: runtime.CrossEntropy,
		Params: []string{"fc2.weight"}, InputGrads: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("d loss / d input", res.InputGrads[0].Shape())
	fmt.Println("d loss / d fc2.weight", res.ParamGrads["fc2.weight"].Shape())
	// Output:
	// scores (2, 10)
	// d loss / d input (2, 1, 28, 28)
	// d loss / d fc2.weight (10, 32)
}
