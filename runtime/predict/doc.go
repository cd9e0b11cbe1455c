// Package predict classifies images and tensors with an ONNX model and
// reports the most probable classes of each example: what graft run does,
// as a library.
//
// A Predictor follows the model's contract (package contract): images are
// preprocessed as the contract says (dataset.PreprocessingFor: torchvision's
// Resize, CenterCrop, ToTensor and Normalize, pixel-identical to PIL's),
// so a model that normalises its input itself gets pixels and nothing
// more; probabilities come from the contract's output kind
// (contract.Output.Probabilities: the softmax of logits, the exp of
// log-probabilities, probabilities as they are); labels are the class
// names the model stores, unless Options.Overrides names them.
//
//	m, _ := onnx.Load("model.onnx")
//	p, _ := predict.New(m, predict.Options{TopK: 3})
//	r, _ := p.Path(ctx, "photos/") // an image, a folder of images, or a .pb tensor
//	for _, ex := range r.Examples {
//		fmt.Println(ex.Source, ex.Top[0].Label, ex.Top[0].Probability)
//	}
//
// Examples run in batches of Options.Batch (the model's own batch size when
// its input fixes one); a tensor file [N, ...] is split into such batches
// too. Result.Scores holds the first output of every example, raw, for
// saving (onnx.SaveTensor). A score that is NaN or infinite is an error
// naming the example.
//
// The package is called predict rather than run (graft's command) because
// it is the inference side of the library: runtime runs graphs, predict
// turns files into class predictions.
package predict
