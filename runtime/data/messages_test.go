package data

import (
	"bytes"
	"image"
	"image/color/palette"
	"image/gif"
	"os"
	"path/filepath"
	"testing"
)

// Broken real files give one-line errors naming the file and the format
// once ("png: png: ..." was issue 8 §4).
func TestBrokenImageMessages(t *testing.T) {
	png := readFile(t, "testdata/noise_64x97.png")
	jpg := readFile(t, "testdata/shapes_317x211.jpg")
	m := image.NewPaletted(image.Rect(0, 0, 40, 30), palette.Plan9)
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 13)
	}
	var gb bytes.Buffer
	if err := gif.Encode(&gb, m, nil); err != nil {
		t.Fatal(err)
	}
	gf := gb.Bytes()
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"header.png", png[:20], "png: truncated file (20 bytes)"},
		{"half.png", png[:len(png)/2], "png: invalid format: not enough pixel data"},
		{"noend.png", png[:len(png)-4], "png: truncated file (18785 bytes)"},
		{"pixels.png", flip(png, 100), "png: invalid format: zlib: invalid checksum"},
		{"ihdr.png", flip(png, 37), "png: invalid format: invalid checksum"},
		{"text.png", []byte("hello, world"), "not a PNG, JPEG or GIF image"},
		{"header.jpg", jpg[:50], "jpeg: truncated file (50 bytes)"},
		{"half.jpg", jpg[:len(jpg)/2], "truncated JPEG: the scan data ends early"},
		{"header.gif", gf[:10], "gif: truncated file (10 bytes): reading header"},
		{"half.gif", gf[:len(gf)/2], "gif: not enough image data"},
		{"lzw.gif", flip(gf, 800), "gif: reading image data: lzw: invalid code"},
		{"width.gif", flip(gf, 7), "gif: decoded 40x30 pixels, the header declares 65320x30"},
	} {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if want := "image " + path + ": " + c.want; err == nil || err.Error() != want {
			t.Errorf("%s: %v\nwant %s", c.name, err, want)
		}
	}
}

// Broken real IDX files (the committed held-out digits) and missing ones.
func TestBrokenIDXMessages(t *testing.T) {
	const labels = "../../testdata/models/lenet_mnist/heldout-labels-idx1-ubyte.gz"
	gz := readFile(t, labels)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"gzheader.gz", gz[:5], "gzip header: truncated"},
		{"badgzip.gz", flip(gz, 2), "gzip header: invalid header"},
		{"half.gz", gz[:len(gz)/2], "reading data: truncated"},
		{"crc.gz", flip(gz, len(gz)-6), "at the end of the data: invalid checksum"},
		{"notrailer.gz", gz[:len(gz)-8], "at the end of the data: truncated"},
	} {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadIDXLabels(path)
		if want := "IDX file " + path + ": " + c.want; err == nil || err.Error() != want {
			t.Errorf("%s: %v\nwant %s", c.name, err, want)
		}
	}
	if _, err := ReadIDX(dir); err == nil || err.Error() != "IDX file "+dir+": reading the header: is a directory" {
		t.Errorf("a folder: %v", err)
	}
	// A missing path is missing, whatever its name.
	for _, p := range []string{filepath.Join(dir, "digits"), filepath.Join(dir, "train-images-idx3-ubyte")} {
		if _, err := IDXLabelsPath(p); err == nil || err.Error() != "IDX file "+p+": no such file or directory" {
			t.Errorf("IDXLabelsPath(%s): %v", p, err)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0xff
	return c
}
