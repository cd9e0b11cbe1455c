package train_test

import (
	"context"
	"fmt"
	"log"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/train"
	"github.com/graft-dev/graft/surgery"
)

// The feature cache: with the backbone frozen, run it once over the data
// and train the new head on its features, epoch after epoch.
func ExampleFitHeadOnFeatures() {
	ctx := context.Background()
	m, _ := onnx.Load("../../cmd/graft/demo/pretrained.onnx")
	if err := surgery.Apply(m, surgery.ReplaceHead(3, surgery.HeadOptions{}), surgery.Freeze(surgery.Backbone())); err != nil {
		log.Fatal(err)
	}
	photos, _ := dataset.ImageFolder("../../testdata/images/fashion")
	cfg, _ := dataset.ForInput(1, 28, 28).Config(photos, 8, true, 0)
	src, _ := dataset.NewLoader(photos, cfg)

	params := []string{"fc.weight", "fc.bias"}
	backbone, head, err := train.SplitAtHead(m, params)
	if err != nil {
		log.Fatal(err)
	}
	full, _ := runtime.Compile(m, runtime.Options{})
	ep, _ := runtime.Compile(backbone, runtime.Options{})
	hp, _ := runtime.Compile(head, runtime.Options{})
	features, err := train.CacheFeatures(ctx, ep, src, nil) // the only pass through the backbone
	if err != nil {
		log.Fatal(err)
	}
	opt, _ := train.NewSGD(train.SGDOptions{LR: 0.01, Momentum: 0.9})
	h, err := train.FitHeadOnFeatures(ctx, full, hp, features, nil, train.Config{Epochs: 5, Optimizer: opt, Params: params})
	if err != nil {
		log.Fatal(err)
	}
	// full now holds the trained head: full.WriteBack(), then onnx.Save(m, path).
	fmt.Printf("loss %.2f -> %.2f\n", h.Epochs[0].Loss, h.Epochs[4].Loss)
	// Output: loss 1.09 -> 0.57
}
