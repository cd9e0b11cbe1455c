package data

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIDXRoundTrip(t *testing.T) {
	dir := t.TempDir()
	im := &IDXImages{Count: 3, Rows: 2, Cols: 4, Pixels: make([]uint8, 24)}
	for i := range im.Pixels {
		im.Pixels[i] = uint8(i * 11)
	}
	labels := []int{7, 0, 255}
	for _, name := range []string{"x-images-idx3-ubyte", "x-images-idx3-ubyte.gz"} {
		p := filepath.Join(dir, name)
		if err := WriteIDXImages(p, im); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(p)
		if gz := len(raw) > 1 && raw[0] == 0x1f && raw[1] == 0x8b; gz != strings.HasSuffix(name, ".gz") {
			t.Errorf("%s: gzipped = %v", name, gz)
		}
		got, err := ReadIDXImages(p)
		if err != nil {
			t.Fatal(err)
		}
		if got.Count != 3 || got.Rows != 2 || got.Cols != 4 || !bytes.Equal(got.Pixels, im.Pixels) {
			t.Errorf("%s: read back %+v", name, got)
		}
		lp := strings.Replace(strings.Replace(p, "images", "labels", 1), "idx3", "idx1", 1)
		if err := WriteIDXLabels(lp, labels); err != nil {
			t.Fatal(err)
		}
		found, err := IDXLabelsPath(p)
		if err != nil || found != lp {
			t.Errorf("IDXLabelsPath(%s) = %s, %v; want %s", p, found, err, lp)
		}
		l, err := ReadIDXLabels(found)
		if err != nil || len(l) != 3 || l[0] != 7 || l[2] != 255 {
			t.Errorf("labels %v, %v", l, err)
		}
		os.Remove(lp)
	}
	// The gzip form is found for a plain image name, and the other way round.
	p := filepath.Join(dir, "train-images.idx3-ubyte")
	lp := filepath.Join(dir, "train-labels.idx1-ubyte.gz")
	os.WriteFile(p, nil, 0o644)
	if err := WriteIDXLabels(lp, labels); err != nil {
		t.Fatal(err)
	}
	if found, err := IDXLabelsPath(p); err != nil || found != lp {
		t.Errorf("IDXLabelsPath(%s) = %s, %v", p, found, err)
	}
	digits, y := filepath.Join(dir, "digits.bin"), filepath.Join(dir, "y-images-idx3-ubyte")
	os.WriteFile(digits, nil, 0o644)
	os.WriteFile(y, nil, 0o644)
	if _, err := IDXLabelsPath(digits); err == nil || err.Error() != "IDX file "+digits+": cannot derive the labels file from the name (want ...images...idx3...): give it explicitly" {
		t.Errorf("underivable name: %v", err)
	}
	if _, err := IDXLabelsPath(y); err == nil || err.Error() != "IDX file "+y+": no labels file y-labels-idx1-ubyte or y-labels-idx1-ubyte.gz beside it: give it explicitly" {
		t.Errorf("missing labels: %v", err)
	}

	x := im.Tensor(1, 3)
	if s := x.Shape(); len(s) != 4 || s[0] != 2 || s[1] != 1 || s[2] != 2 || s[3] != 4 {
		t.Fatalf("tensor shape %v", s)
	}
	if v := x.Data().([]float32); v[0] != float32(im.Pixels[8])/255 || v[15] != float32(im.Pixels[23])/255 {
		t.Errorf("tensor values %v", v)
	}
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestIDXErrors(t *testing.T) {
	dir := t.TempDir()
	head := func(typ byte, dims ...uint32) []byte {
		b := []byte{0, 0, typ, byte(len(dims))}
		for _, d := range dims {
			b = append(b, byte(d>>24), byte(d>>16), byte(d>>8), byte(d))
		}
		return b
	}
	huge := head(IDXUint8, 1<<20, 1<<10, 1<<10) // 1 TiB claimed, nothing allocated
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"magic", []byte("\x89PNG\r\n\x1a\n"), "not an IDX file"},
		{"type", head(0x42, 1), "unknown element type 0x42"},
		{"nodims", head(IDXUint8), "no dimensions"},
		{"shortdims", head(IDXUint8, 3, 4)[:9], "truncated"},
		{"huge", huge, "exceed"},
		{"huge.gz", gzipped(huge), "exceed"},
		{"short", append(head(IDXUint8, 2, 2, 2), 1, 2, 3), "need 8 bytes of data, the file has 3: truncated"},
		{"long", append(head(IDXUint8, 1, 1, 1), 1, 2), "continues past the 1 bytes dimensions [1 1 1] need (the file has 2)"},
		{"short.gz", gzipped(append(head(IDXUint8, 2, 2, 2), 1, 2, 3)), "truncated"},
		{"long.gz", gzipped(append(head(IDXUint8, 1, 1, 1), 1, 2)), "continues past"},
		{"badgz", []byte{0x1f, 0x8b, 1, 2, 3}, "gzip"},
		{"labels", append(head(IDXUint8, 2), 1, 2), "want images"},
		{"float", append(head(IDXFloat32, 1, 1, 1), 0, 0, 0, 0), "want images (unsigned bytes, 3 dimensions), got float32"},
		{"zero", head(IDXUint8, 0, 28, 28), "no images"},
	} {
		p := filepath.Join(dir, c.name)
		os.WriteFile(p, c.data, 0o644)
		_, err := ReadIDXImages(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming the file and containing %q", c.name, err, c.want)
		}
	}
	if _, err := ReadIDXLabels(filepath.Join(dir, "zero")); err == nil || !strings.Contains(err.Error(), "want labels") {
		t.Errorf("images as labels: %v", err)
	}
	if _, err := ReadIDXImages(filepath.Join(dir, "absent")); err == nil || !strings.Contains(err.Error(), "absent: no such file") {
		t.Errorf("missing file: %v", err)
	}
	if err := WriteIDXLabels(filepath.Join(dir, "l"), []int{3, 256}); err == nil || !strings.Contains(err.Error(), "label 256") {
		t.Errorf("label 256: %v", err)
	}
	if err := WriteIDXImages(filepath.Join(dir, "nodir", "x"), &IDXImages{Count: 1, Rows: 1, Cols: 1, Pixels: []byte{1}}); err == nil || !strings.Contains(err.Error(), "nodir") {
		t.Errorf("write into a missing folder: %v", err)
	}
}

// The committed held-out MNIST digits of testdata/models/lenet_mnist.
func TestIDXHeldOutMNIST(t *testing.T) {
	p := "../../testdata/models/lenet_mnist/heldout-images-idx3-ubyte.gz"
	im, err := ReadIDXImages(p)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := IDXLabelsPath(p)
	if err != nil {
		t.Fatal(err)
	}
	labels, err := ReadIDXLabels(lp)
	if err != nil {
		t.Fatal(err)
	}
	if im.Count != 2000 || im.Rows != 28 || im.Cols != 28 || len(labels) != 2000 {
		t.Fatalf("%d images of %dx%d, %d labels", im.Count, im.Rows, im.Cols, len(labels))
	}
	var counts [10]int
	for _, l := range labels {
		counts[l]++
	}
	for d, n := range counts {
		if n < 150 || n > 260 {
			t.Errorf("digit %d appears %d times in 2000", d, n)
		}
	}
}
