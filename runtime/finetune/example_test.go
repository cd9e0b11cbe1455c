package finetune_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/dataset"
	"github.com/graft-dev/graft/runtime/finetune"
)

// Move a small ResNet pretrained on clothes to a folder of sandals,
// sneakers and bags: a new 3-class head trains on the frozen backbone's
// features, computed once.
func Example() {
	m, err := onnx.Load("../../cmd/graft/demo/pretrained.onnx")
	if err != nil {
		log.Fatal(err)
	}
	photos, err := dataset.ImageFolder("../../testdata/images/fashion") // bag/, sandal/, sneaker/
	if err != nil {
		log.Fatal(err)
	}
	out, _ := os.MkdirTemp("", "graft-example")
	defer os.RemoveAll(out)
	opts := finetune.DefaultOptions()
	opts.Freeze = []string{"backbone"}
	opts.Epochs, opts.LR, opts.Batch = 10, 0.01, 8
	opts.Out = filepath.Join(out, "model.onnx")
	res, err := finetune.Run(context.Background(), m, photos, nil, opts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("head %d -> %d, features cached: %v, trained %v\n", res.Head.InFeatures, res.Head.OutFeatures, res.Cached, res.Trainable)
	fmt.Printf("best validation accuracy %.2f (epoch %d)\n", res.History.BestAccuracy, res.History.BestEpoch+1)
	// Output:
	// head 64 -> 3, features cached: true, trained [fc.weight fc.bias]
	// best validation accuracy 0.87 (epoch 9)
}
