package dataset

import (
	"fmt"
	"strconv"

	"github.com/graft-dev/graft/runtime/data"
)

// IDX reads an MNIST-style data set: gray images from an IDX images file
// and their labels from an IDX labels file (gzipped or not; see
// data.IDXLabelsPath to find the labels file from the images file's name).
// The classes are 0 to the largest label, named by number ("0", "1", ...);
// Select keeps some of them and relabels them, PerClass limits their
// examples, WithClassNames names them. The images stay in memory as bytes;
// a Loader serves them without decoding.
func IDX(imagesPath, labelsPath string) (*Dataset, error) {
	images, err := data.ReadIDXImages(imagesPath)
	if err != nil {
		return nil, err
	}
	labels, err := data.ReadIDXLabels(labelsPath)
	if err != nil {
		return nil, err
	}
	if len(labels) != images.Count {
		return nil, fmt.Errorf("IDX data set: %s holds %d images, %s %d labels", imagesPath, images.Count, labelsPath, len(labels))
	}
	ds, err := FromIDX(images, labels, imagesPath)
	if err != nil {
		return nil, err
	}
	ds.inputs = []string{imagesPath, labelsPath}
	return ds, nil
}

// FromIDX returns the data set of gray images already in memory (decoded
// with data.DecodeIDX, say, from embedded files) and their labels, as IDX
// makes it; source names them in messages.
func FromIDX(images *data.IDXImages, labels []int, source string) (*Dataset, error) {
	if images == nil || len(labels) != images.Count {
		return nil, fmt.Errorf("IDX data set %s: %d labels for the images", source, len(labels))
	}
	k := 0
	for _, l := range labels {
		k = max(k, l+1)
	}
	ds := &Dataset{source: source, images: images, labels: labels,
		classes: make([]string, k), rows: make([]int, len(labels))}
	for c := range ds.classes {
		ds.classes[c] = strconv.Itoa(c)
	}
	for i := range ds.rows {
		ds.rows[i] = i
	}
	return ds, nil
}
