package dataset_test

import (
	"fmt"
	"log"

	"github.com/graft-dev/graft/runtime/dataset"
)

// Read an image folder, hold out a fifth of each class, and serve the
// training part in shuffled batches preprocessed for a 1x28x28 model.
func Example() {
	all, err := dataset.ImageFolder("../../testdata/images/fashion") // bag/, sandal/, sneaker/
	if err != nil {
		log.Fatal(err)
	}
	train, val, err := dataset.Split(all, 0.2, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(all.Classes(), train.ClassCounts(), val.ClassCounts())
	cfg, err := dataset.ForInput(1, 28, 28).Config(train, 16, true, 1) // shuffled by seed 1
	if err != nil {
		log.Fatal(err)
	}
	loader, err := dataset.NewLoader(train, cfg)
	if err != nil {
		log.Fatal(err)
	}
	for b, err := range loader.Batches(0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(b.X.Shape(), len(b.Labels))
	}
	// Output:
	// [bag sandal sneaker] [19 19 19] [5 5 5]
	// (16, 1, 28, 28) 16
	// (16, 1, 28, 28) 16
	// (16, 1, 28, 28) 16
	// (9, 1, 28, 28) 9
}
