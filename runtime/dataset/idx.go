package dataset

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/graft-dev/graft/runtime/data"
)

// IDX reads an MNIST-style data set: gray images from an IDX images file
// and their labels from an IDX labels file (gzipped or not; see
// data.IDXLabelsPath to find the labels file from the images file's name).
// The images stay in memory as bytes; a Loader serves them without
// decoding.
//
// A label is a class number. Without classes, the classes are 0 to the
// largest label, named by number ("0", "1", ...), and the labels present
// must form one unbroken run: a file may hold only some of the higher
// classes (digits 5-9 leave classes 0-4 without examples, so that labels
// keep meaning what they mean to a model trained on all ten), but a label
// beyond a gap is an error naming its first example. One stray label (200
// in a file of digits) would otherwise make a 201-class data set.
//
// With classes, only the examples of those classes are kept, relabelled
// 0, 1, ... in the order given, as Select does (which see); other labels,
// gaps included, are left out. Every class named must have examples.
func IDX(imagesPath, labelsPath string, classes ...int) (*Dataset, error) {
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
	return fromIDX(images, labels, imagesPath, "IDX labels file "+labelsPath, []string{imagesPath, labelsPath}, classes)
}

// FromIDX returns the data set of gray images already in memory (decoded
// with data.DecodeIDX, say, from embedded files) and their labels, by
// IDX's rules; source names the images in messages.
func FromIDX(images *data.IDXImages, labels []int, source string, classes ...int) (*Dataset, error) {
	if images == nil || len(labels) != images.Count {
		return nil, fmt.Errorf("IDX data set %s: %d labels for the images", source, len(labels))
	}
	return fromIDX(images, labels, source, "the labels of "+source, nil, classes)
}

func fromIDX(images *data.IDXImages, labels []int, source, labelsName string, inputs []string, classes []int) (*Dataset, error) {
	if len(classes) == 0 {
		if err := checkLabelRun(labels); err != nil {
			return nil, fmt.Errorf("%s%w", labelsName, err)
		}
	}
	k := 0
	for _, l := range labels {
		k = max(k, l+1)
	}
	ds := &Dataset{source: source, inputs: inputs, images: images, labels: labels,
		classes: make([]string, k), rows: make([]int, len(labels))}
	for c := range ds.classes {
		ds.classes[c] = strconv.Itoa(c)
	}
	for i := range ds.rows {
		ds.rows[i] = i
	}
	if len(classes) > 0 {
		return ds.Select(classes...)
	}
	return ds, nil
}

// checkLabelRun returns an error, starting with the index of the example
// concerned ("[1234] is 200, ..."), if the labels present do not form one
// run from the smallest to the largest.
func checkLabelRun(labels []int) error {
	present := map[int]bool{}
	for _, l := range labels {
		present[l] = true
	}
	values := make([]int, 0, len(present))
	for l := range present {
		values = append(values, l)
	}
	slices.Sort(values)
	for k := 1; k < len(values); k++ {
		if lo, hi := values[k-1], values[k]; hi > lo+1 {
			i := slices.IndexFunc(labels, func(l int) bool { return l >= hi })
			gap := strconv.Itoa(lo + 1)
			if hi > lo+2 {
				gap = fmt.Sprintf("from %d to %d", lo+1, hi-1)
			}
			return fmt.Errorf("[%d] is %d, but no label is %s: a stray label? (the classes run from 0 to the largest label; to use only some classes, select them)", i, labels[i], gap)
		}
	}
	return nil
}

// CheckClasses reports the first example whose label is not a class of a
// model with k classes (0 to k-1), naming it (see Name).
func (d *Dataset) CheckClasses(k int) error {
	for i, l := range d.labels {
		if l >= k {
			label := strconv.Itoa(l)
			if name := d.classes[l]; name != label {
				label += fmt.Sprintf(" (%s)", strconv.Quote(name))
			}
			return fmt.Errorf("%s has label %s, but the model has %d classes (0 to %d)", d.Name(i), label, k, k-1)
		}
	}
	return nil
}
