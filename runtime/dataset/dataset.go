package dataset

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/runtime/data"
)

// A Dataset is a list of labelled images: files found by ImageFolder, or
// images held in memory, read by IDX. Examples are numbered 0..Len()-1 and
// labels run over 0..len(Classes())-1. A Dataset is not changed after it is
// made: Subset, Select, PerClass and Split return new ones (sharing the
// underlying images), and it is safe to use from several goroutines.
type Dataset struct {
	source  string   // the folder or IDX file the examples come from
	inputs  []string // the files and folders read (Inputs)
	classes []string // class names, by label
	labels  []int
	paths   []string // image files (ImageFolder)

	images *data.IDXImages // in-memory images (IDX)
	rows   []int           // the image of each example in images

	skipped []error // ImageFolder with SkipBad: the images dropped
}

// Len returns the number of examples.
func (d *Dataset) Len() int { return len(d.labels) }

// Label returns example i's label.
func (d *Dataset) Label(i int) int { return d.labels[i] }

// Labels returns every example's label, in example order.
func (d *Dataset) Labels() []int { return slices.Clone(d.labels) }

// Classes returns the class names, by label: the sub-folder names of an
// image folder, the label values ("0", "1", ...) of an IDX file unless
// renamed with WithClassNames.
func (d *Dataset) Classes() []string { return slices.Clone(d.classes) }

// ClassCounts returns the number of examples of each class, by label.
func (d *Dataset) ClassCounts() []int {
	n := make([]int, len(d.classes))
	for _, l := range d.labels {
		n[l]++
	}
	return n
}

// Source returns the image folder or IDX images file the data set was read
// from.
func (d *Dataset) Source() string { return d.source }

// Inputs returns the files and folders the data set was read from (an
// image folder; an IDX images and labels file), none for data given in
// memory: a command must not write into them.
func (d *Dataset) Inputs() []string { return slices.Clone(d.inputs) }

// Name returns a name for example i in messages: its file for an image
// folder, FILE[n] (the n-th image of the file) for IDX data.
func (d *Dataset) Name(i int) string {
	if d.images != nil {
		return fmt.Sprintf("%s[%d]", d.source, d.rows[i])
	}
	return d.paths[i]
}

// Path returns example i's image file, or "" for in-memory (IDX) data.
func (d *Dataset) Path(i int) string {
	if d.images != nil {
		return ""
	}
	return d.paths[i]
}

// Skipped returns the number of unreadable images ImageFolder left out
// with the SkipBad option. Data sets derived with Subset, Select, PerClass
// or Split report none.
func (d *Dataset) Skipped() int { return len(d.skipped) }

// SkippedErrors returns why each skipped image was left out: *data.Error
// values naming the files, in folder order.
func (d *Dataset) SkippedErrors() []error { return slices.Clone(d.skipped) }

// image returns example i as an 8-bit image: decoded from its file (by one
// of workers decoders at once), or a copy of the in-memory pixels.
func (d *Dataset) image(i, workers int) (*data.Image, error) {
	if m := d.images; m != nil {
		size := m.Rows * m.Cols
		r := d.rows[i]
		pix := slices.Clone(m.Pixels[r*size : (r+1)*size])
		return &data.Image{Width: m.Cols, Height: m.Rows, Channels: 1, Pix: pix}, nil
	}
	return data.LoadConcurrent(d.paths[i], workers)
}

// derive returns a data set of the given examples of d (indices into d),
// with d's classes.
func (d *Dataset) derive(idx []int) *Dataset {
	out := &Dataset{source: d.source, inputs: d.inputs, classes: d.classes, images: d.images,
		labels: make([]int, len(idx))}
	if d.images != nil {
		out.rows = make([]int, len(idx))
	} else {
		out.paths = make([]string, len(idx))
	}
	for k, i := range idx {
		out.labels[k] = d.labels[i]
		if d.images != nil {
			out.rows[k] = d.rows[i]
		} else {
			out.paths[k] = d.paths[i]
		}
	}
	return out
}

// Subset returns the data set of the examples idx of d, in that order,
// with d's classes. It panics if an index is out of range.
func (d *Dataset) Subset(idx []int) *Dataset {
	for _, i := range idx {
		if i < 0 || i >= d.Len() {
			panic(fmt.Sprintf("dataset: Subset index %d of %d examples", i, d.Len()))
		}
	}
	return d.derive(idx)
}

// Select keeps the examples of the given classes (labels of d) and
// relabels them 0, 1, ... in the order given: Select(5, 6, 7, 8, 9) turns
// digits 5-9 into classes 0-4, keeping the names "5" to "9". Examples keep
// their order. Every selected class must have examples.
func (d *Dataset) Select(classes ...int) (*Dataset, error) {
	if len(classes) == 0 {
		return nil, fmt.Errorf("dataset %s: select no classes", d.source)
	}
	relabel := make([]int, len(d.classes))
	for i := range relabel {
		relabel[i] = -1
	}
	names := make([]string, len(classes))
	for k, c := range classes {
		if c < 0 || c >= len(d.classes) {
			return nil, fmt.Errorf("dataset %s: select class %d, the labels run from 0 to %d", d.source, c, len(d.classes)-1)
		}
		if relabel[c] >= 0 {
			return nil, fmt.Errorf("dataset %s: class %d selected twice", d.source, c)
		}
		relabel[c] = k
		names[k] = d.classes[c]
	}
	var idx []int
	for i, l := range d.labels {
		if relabel[l] >= 0 {
			idx = append(idx, i)
		}
	}
	out := d.derive(idx)
	out.classes = names
	counts := make([]int, len(classes))
	for i, l := range out.labels {
		out.labels[i] = relabel[l]
		counts[relabel[l]]++
	}
	for k, n := range counts {
		if n == 0 {
			return nil, fmt.Errorf("dataset %s: selected class %d (%s) has no examples", d.source, classes[k], names[k])
		}
	}
	return out, nil
}

// PerClass keeps at most n examples of each class: the first n of a
// permutation of the class's examples drawn from seed (all of a class with
// n or fewer). Examples keep their order.
func (d *Dataset) PerClass(n int, seed int64) (*Dataset, error) {
	if n < 1 {
		return nil, fmt.Errorf("dataset %s: %d examples per class", d.source, n)
	}
	var keep []int
	for c, members := range d.byClass() {
		if len(members) > n {
			shuffle(members, classRand(seed, streamLimit, c))
			members = members[:n]
		}
		keep = append(keep, members...)
	}
	slices.Sort(keep)
	return d.derive(keep), nil
}

// WithClassNames returns the data set with its classes renamed, by label
// (for example Fashion-MNIST's "T-shirt/top", "Trouser", ...).
func (d *Dataset) WithClassNames(names ...string) (*Dataset, error) {
	if len(names) != len(d.classes) {
		return nil, fmt.Errorf("dataset %s: %d class names for %d classes", d.source, len(names), len(d.classes))
	}
	out := *d
	out.classes = slices.Clone(names)
	out.skipped = nil
	return &out, nil
}

// byClass returns the examples of each class, in order.
func (d *Dataset) byClass() [][]int {
	out := make([][]int, len(d.classes))
	for i, l := range d.labels {
		out[l] = append(out[l], i)
	}
	return out
}

// Split divides d into a training and a validation set, per class (the
// split is stratified): of a class's n examples, round(valFraction*n) go
// to validation, but at least 1 when n >= 2 and never all of them, so every
// class keeps an example to train on. Which examples go is drawn from seed;
// the same seed gives the same split. Both sets keep d's example order and
// classes. It is StratifiedSplit over d's labels.
func Split(d *Dataset, valFraction float64, seed int64) (train, val *Dataset, err error) {
	tr, va, err := StratifiedSplit(d.labels, len(d.classes), valFraction, seed)
	if err != nil {
		return nil, nil, fmt.Errorf("dataset %s: %w", d.source, err)
	}
	return d.derive(tr), d.derive(va), nil
}

// StratifiedSplit is Split over labels alone (each in [0, classes)): the
// indices of the training and of the validation examples, each in
// increasing order. Precomputed features (finetune.Features) are split
// with it as their data set would be.
func StratifiedSplit(labels []int, classes int, valFraction float64, seed int64) (train, val []int, err error) {
	if !(valFraction > 0 && valFraction < 1) {
		return nil, nil, fmt.Errorf("validation fraction %v, want one between 0 and 1", valFraction)
	}
	byClass := make([][]int, classes)
	for i, l := range labels {
		if l < 0 || l >= classes {
			return nil, nil, fmt.Errorf("label %d of example %d is not one of the %d classes", l, i, classes)
		}
		byClass[l] = append(byClass[l], i)
	}
	for c, members := range byClass {
		n := len(members)
		k := int(math.Round(valFraction * float64(n)))
		if n >= 2 {
			k = min(max(k, 1), n-1)
		} else {
			k = 0
		}
		shuffle(members, classRand(seed, streamSplit, c))
		val = append(val, members[:k]...)
		train = append(train, members[k:]...)
	}
	if len(val) == 0 {
		return nil, nil, fmt.Errorf("too few examples (%d) to split off a validation set", len(labels))
	}
	slices.Sort(train)
	slices.Sort(val)
	return train, val, nil
}

// SameClasses checks that a validation set has the training set's classes,
// in the same order; the error lists the differences.
func SameClasses(train, val *Dataset) error {
	if slices.Equal(train.classes, val.classes) {
		return nil
	}
	in := func(s []string) map[string]bool {
		m := make(map[string]bool, len(s))
		for _, x := range s {
			m[x] = true
		}
		return m
	}
	inTrain, inVal := in(train.classes), in(val.classes)
	var onlyTrain, onlyVal []string
	for _, c := range train.classes {
		if !inVal[c] {
			onlyTrain = append(onlyTrain, strconv.Quote(c))
		}
	}
	for _, c := range val.classes {
		if !inTrain[c] {
			onlyVal = append(onlyVal, strconv.Quote(c))
		}
	}
	var diff []string
	if len(onlyTrain) > 0 {
		diff = append(diff, fmt.Sprintf("only in %s: %s", train.source, strings.Join(onlyTrain, ", ")))
	}
	if len(onlyVal) > 0 {
		diff = append(diff, fmt.Sprintf("only in %s: %s", val.source, strings.Join(onlyVal, ", ")))
	}
	if len(diff) == 0 { // same names, another order
		diff = append(diff, fmt.Sprintf("%s has them in the order %s, %s in the order %s",
			train.source, strings.Join(train.classes, ", "), val.source, strings.Join(val.classes, ", ")))
	}
	return fmt.Errorf("the validation classes differ from the training classes: %s", strings.Join(diff, "; "))
}
