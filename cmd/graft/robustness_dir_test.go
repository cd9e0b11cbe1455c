package main

import (
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/attacks"
	"github.com/graft-dev/graft/runtime/data"
)

// An image folder of the held-out digits, written as PNG (lossless, already
// 28x28), gives the same sweep as the IDX files they came from.
func TestRobustnessOnImageFolderEqualsIDX(t *testing.T) {
	images, err := data.ReadIDXImages(filepath.Join(lenetDir, "heldout-images-idx3-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	labels, err := data.ReadIDXLabels(filepath.Join(lenetDir, "heldout-labels-idx1-ubyte.gz"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	dir := t.TempDir()
	folder := filepath.Join(dir, "digits")
	// Write the first n digits into class folders 0..9; the IDX side uses
	// the same digits in the folder's order (class by class, by name).
	var order []int
	for class := 0; class < 10; class++ {
		os.MkdirAll(filepath.Join(folder, fmt.Sprint(class)), 0o755)
		for i := 0; i < n; i++ {
			if labels[i] != class {
				continue
			}
			order = append(order, i)
			im := image.NewGray(image.Rect(0, 0, 28, 28))
			copy(im.Pix, images.Pixels[i*784:(i+1)*784])
			f, err := os.Create(filepath.Join(folder, fmt.Sprint(class), fmt.Sprintf("%04d.png", i)))
			if err != nil {
				t.Fatal(err)
			}
			png.Encode(f, im)
			f.Close()
		}
	}
	sub := &data.IDXImages{Count: len(order), Rows: 28, Cols: 28}
	var subLabels []byte
	for _, i := range order {
		sub.Pixels = append(sub.Pixels, images.Pixels[i*784:(i+1)*784]...)
		subLabels = append(subLabels, byte(labels[i]))
	}
	idxImages := filepath.Join(dir, "sub-images-idx3-ubyte")
	if err := data.WriteIDXImages(idxImages, sub); err != nil {
		t.Fatal(err)
	}
	if err := data.WriteIDX(filepath.Join(dir, "sub-labels-idx1-ubyte"), &data.IDXArray{Type: data.IDXUint8, Dims: []int{len(subLabels)}, Data: subLabels}); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(lenetDir, "model.onnx")
	report := func(dataArg, out string) *attacks.Report {
		code, stdout, errs := graft("robustness", "--model", model, "--data", dataArg, "--eps", "0,0.1,0.2", "-o", out)
		if code != 0 {
			t.Fatalf("graft robustness --data %s: %s\n%s", dataArg, errs, stdout)
		}
		b, err := os.ReadFile(filepath.Join(out, "report.json"))
		if err != nil {
			t.Fatal(err)
		}
		var r attacks.Report
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	a := report(folder, filepath.Join(dir, "folder-report"))
	b := report(idxImages, filepath.Join(dir, "idx-report"))
	if a.Examples != len(order) || a.Examples != b.Examples {
		t.Fatalf("examples: folder %d, IDX %d, want %d", a.Examples, b.Examples, len(order))
	}
	for i := range a.Points {
		if a.Points[i].Correct != b.Points[i].Correct {
			t.Errorf("eps %g: %d right from the folder, %d from IDX", a.Points[i].Eps, a.Points[i].Correct, b.Points[i].Correct)
		}
	}
	t.Logf("eps 0, 0.1, 0.2: %d, %d, %d of %d right", a.Points[0].Correct, a.Points[1].Correct, a.Points[2].Correct, a.Examples)
}
