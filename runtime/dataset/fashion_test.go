package dataset

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/runtime/data"
)

var fashionNames = []string{"T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

// TestFashionMNIST writes real Fashion-MNIST images as an image folder and
// checks that folder and IDX data sets of the same images give the same
// tensors.
func TestFashionMNIST(t *testing.T) {
	files := testenv.FashionMNIST.Files(t, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
	imagesPath := files[0]
	labelsPath, err := data.IDXLabelsPath(imagesPath)
	if err != nil || labelsPath != files[1] {
		t.Fatalf("labels of %s: %s, %v; want %s", imagesPath, labelsPath, err, files[1])
	}
	all, err := IDX(imagesPath, labelsPath)
	if err != nil {
		t.Fatal(err)
	}
	if all.Len() != 10000 || !slices.Equal(all.ClassCounts(), slices.Repeat([]int{1000}, 10)) {
		t.Fatalf("%d examples, %v", all.Len(), all.ClassCounts())
	}
	// Classes 5, 7, 9 (sandal, sneaker, ankle boot) as 0-2, 12 of each.
	sel, err := all.Select(5, 7, 9)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := sel.PerClass(12, 1)
	if err != nil {
		t.Fatal(err)
	}
	if sub, err = sub.WithClassNames(fashionNames[5], fashionNames[7], fashionNames[9]); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sub.ClassCounts(), []int{12, 12, 12}) {
		t.Fatalf("counts %v", sub.ClassCounts())
	}

	// The same images as PNG files, one folder per class, named so the
	// folder order is the IDX order.
	root := t.TempDir()
	for i := range sub.Len() {
		im, _ := sub.image(i, 1)
		g := &image.Gray{Pix: im.Pix, Stride: im.Width, Rect: image.Rect(0, 0, im.Width, im.Height)}
		path := filepath.Join(root, sub.Classes()[sub.Label(i)], filepath.Base(sub.Name(i))+".png")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		err = png.Encode(f, g)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	folder, err := ImageFolder(root, SkipBad())
	if err != nil {
		t.Fatal(err)
	}
	// Sorted names: "Ankle boot" < "Sandal" < "Sneaker", labels 0, 1, 2.
	if want := []string{"Ankle boot", "Sandal", "Sneaker"}; !slices.Equal(folder.Classes(), want) || folder.Skipped() != 0 {
		t.Fatalf("classes %q, %d skipped", folder.Classes(), folder.Skipped())
	}
	byName := map[string]int{} // folder example of each IDX image
	for i := range folder.Len() {
		byName[filepath.Base(folder.Path(i))] = i
	}

	pp := ForInput(1, 28, 28)
	pp.Mean, pp.Std = []float32{0.2860}, []float32{0.3530}
	idxCfg, err := pp.Config(sub, 8, true, 11)
	if err != nil {
		t.Fatal(err)
	}
	folderCfg, err := pp.Config(folder, 8, true, 11)
	if err != nil {
		t.Fatal(err)
	}
	idxLoader, _ := NewLoader(sub, idxCfg)
	folderLoader, _ := NewLoader(folder, folderCfg)
	if !idxLoader.direct || folderLoader.direct {
		t.Fatal("fast path not taken for IDX data, or taken for files")
	}
	want := map[int][]float32{} // by folder example
	for k, b := range collect(t, idxLoader, 0) {
		for j, i := range idxLoader.Order(0)[k] {
			want[byName[filepath.Base(sub.Name(i))+".png"]] = tensorOf(b, j)
			if fashionNames[[]int{5, 7, 9}[b.Labels[j]]] != sub.Classes()[sub.Label(i)] {
				t.Fatal("label and class name disagree")
			}
		}
	}
	for k, b := range collect(t, folderLoader, 0) {
		for j, i := range folderLoader.Order(0)[k] {
			if !slices.Equal(tensorOf(b, j), want[i]) {
				t.Fatalf("%s: folder and IDX tensors differ", folder.Path(i))
			}
		}
	}

	// A stratified split of the real data, deterministic.
	tr, va, err := Split(sel, 0.1, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(va.ClassCounts(), []int{100, 100, 100}) || !slices.Equal(tr.ClassCounts(), []int{900, 900, 900}) {
		t.Errorf("split %v / %v", tr.ClassCounts(), va.ClassCounts())
	}
}
