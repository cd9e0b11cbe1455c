package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pngHeader returns a PNG signature and IHDR chunk declaring w×h RGB pixels,
// and nothing else.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := make([]byte, 4+13)
	copy(chunk, "IHDR")
	binary.BigEndian.PutUint32(chunk[4:], w)
	binary.BigEndian.PutUint32(chunk[8:], h)
	chunk[12], chunk[13] = 8, 2 // 8-bit RGB
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

// jpegHeader returns SOI, a JFIF APP0 and a baseline SOF0 declaring w×h, 3 components.
func jpegHeader(w, h uint16) []byte {
	b := []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0}
	b = append(b, 0xFF, 0xC0, 0, 17, 8, byte(h>>8), byte(h), byte(w>>8), byte(w), 3)
	for id := byte(1); id <= 3; id++ {
		b = append(b, id, 0x11, 0)
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	dir := t.TempDir()
	png := readFile(t, "testdata/shapes_317x211.png")
	jpg := readFile(t, "testdata/shapes_317x211.jpg")
	cases := []struct {
		name string
		data []byte
		is   error  // wrapped error, if any
		msg  string // part of the message
	}{
		{"text.png", []byte("hello, world"), ErrFormat, "not a PNG, JPEG or GIF"},
		{"empty.jpg", nil, ErrFormat, ""},
		{"truncated.png", png[:len(png)/2], nil, "truncated"},
		{"truncated.jpg", jpg[:len(jpg)*2/3], nil, "truncated"},
		{"headeronly.jpg", jpg[:700], nil, "truncated"},
		{"garbage.jpg", append([]byte{0xFF, 0xD8, 0xFF, 0xDA, 0, 8}, bytes.Repeat([]byte{0x55}, 100)...), nil, ""},
		{"huge.png", pngHeader(20000, 20000), ErrTooLarge, "20000x20000"},
		{"huge.jpg", jpegHeader(65000, 65000), ErrTooLarge, "65000x65000"},
	}
	for _, c := range cases {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		im, err := Load(path)
		if err == nil {
			t.Errorf("%s: decoded a %dx%d image", c.name, im.Width, im.Height)
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.File != path || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q (%T) does not name the file", c.name, err, err)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: error %q is not %v", c.name, err, c.is)
		}
		if !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q, want one line containing %q", c.name, err, c.msg)
		}
	}
	_, err := Load(filepath.Join(dir, "missing.png"))
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, os.ErrNotExist) || strings.Count(err.Error(), "missing.png") != 1 {
		t.Errorf("missing file: %v", err)
	}
}

func TestIsImageFile(t *testing.T) {
	for name, want := range map[string]bool{"a.png": true, "b.JPG": true, "c.jpeg": true, "d.gif": true, "e.pb": false, "f": false} {
		if IsImageFile(name) != want {
			t.Errorf("IsImageFile(%q) = %v", name, !want)
		}
	}
}

func TestResizedSize(t *testing.T) {
	// Values computed with torchvision 0.14's _compute_resized_output_size.
	for _, c := range []struct{ w, h, size, ww, wh int }{
		{317, 211, 256, 384, 256},
		{211, 317, 256, 256, 384},
		{64, 97, 40, 40, 60},
		{640, 427, 256, 383, 256},
		{100, 100, 7, 7, 7},
		{3, 1000, 1, 1, 333},
	} {
		if w, h := ResizedSize(c.w, c.h, c.size); w != c.ww || h != c.wh {
			t.Errorf("ResizedSize(%d, %d, %d) = %d, %d, want %d, %d", c.w, c.h, c.size, w, h, c.ww, c.wh)
		}
	}
}

// ramp returns a w×h gray image whose pixel (x, y) is x + 16*y.
func ramp(w, h int) *Image {
	im := NewImage(w, h, 1)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			im.Pix[y*w+x] = uint8(x + 16*y)
		}
	}
	return im
}

func TestCenterCrop(t *testing.T) {
	// torchvision: int(round((w - size) / 2.0)), Python rounding halves to even.
	for _, c := range []struct{ w, h, size, left, top int }{
		{7, 7, 2, 2, 2},   // 2.5 -> 2
		{6, 9, 3, 2, 3},   // 1.5 -> 2, 3
		{10, 12, 5, 2, 4}, // 2.5 -> 2, 3.5 -> 4
		{4, 4, 4, 0, 0},
	} {
		out, err := CenterCrop(c.size)(ramp(c.w, c.h))
		if err != nil {
			t.Fatal(err)
		}
		if out.Width != c.size || out.Height != c.size || out.Pix[0] != uint8(c.left+16*c.top) {
			t.Errorf("CenterCrop(%d) of %dx%d: %dx%d starting at %d, want offset (%d, %d)",
				c.size, c.w, c.h, out.Width, out.Height, out.Pix[0], c.left, c.top)
		}
	}
	// A 3x2 image cropped to 5 is padded: 1 column left, 1 right; 1 row
	// above, 2 below (torchvision pads floor(d/2) before, ceil(d/2) after).
	out, _ := CenterCrop(5)(ramp(3, 2))
	want := []uint8{
		0, 0, 0, 0, 0,
		0, 0, 1, 2, 0,
		0, 16, 17, 18, 0,
		0, 0, 0, 0, 0,
		0, 0, 0, 0, 0,
	}
	if !bytes.Equal(out.Pix, want) {
		t.Errorf("padded crop = %v", out.Pix)
	}
	if out, _ := CenterCropTo(4, 2)(ramp(7, 5)); out.Width != 4 || out.Height != 2 || out.Pix[0] != 2+16*2 {
		t.Errorf("CenterCropTo(4, 2) of 7x5: %dx%d from %d", out.Width, out.Height, out.Pix[0])
	}
	if _, err := CenterCrop(0)(ramp(3, 3)); err == nil {
		t.Error("CenterCrop(0) succeeded")
	}
	if _, err := Resize(-1)(ramp(3, 3)); err == nil {
		t.Error("Resize(-1) succeeded")
	}
}

func TestGrayAndRGB(t *testing.T) {
	// PIL's convert("L") of pure red, green, blue, white and a mix.
	im := &Image{Width: 5, Height: 1, Channels: 3, Pix: []uint8{255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 10, 200, 30}}
	if g := im.Gray(); !bytes.Equal(g.Pix, []uint8{76, 150, 29, 255, 124}) || g.Channels != 1 {
		t.Errorf("Gray = %v", g.Pix)
	}
	g := &Image{Width: 2, Height: 1, Channels: 1, Pix: []uint8{7, 9}}
	if c := g.RGB(); !bytes.Equal(c.Pix, []uint8{7, 7, 7, 9, 9, 9}) || c.Channels != 3 {
		t.Errorf("RGB = %v", c.Pix)
	}
	if out, _ := Channels(3)(g); out.Channels != 3 {
		t.Error("Channels(3) kept one channel")
	}
	if _, err := Channels(2)(g); err == nil {
		t.Error("Channels(2) succeeded")
	}
}

func TestResizeKeepsConstant(t *testing.T) {
	im := NewImage(97, 61, 3)
	for i := range im.Pix {
		im.Pix[i] = 200
	}
	for _, s := range [][2]int{{13, 7}, {97, 200}, {300, 5}, {1, 1}} {
		out := im.ResizeTo(s[0], s[1])
		for _, v := range out.Pix {
			if v != 200 {
				t.Fatalf("resize to %v: value %d", s, v)
			}
		}
	}
}

func TestRandomResizedCrop(t *testing.T) {
	src := ramp(120, 80).RGB()
	run := func(seed int64) []*Image {
		rng := rand.New(rand.NewSource(seed))
		tr := Compose(RandomResizedCrop(24, rng), RandomHorizontalFlip(rng))
		var out []*Image
		for range 5 {
			im, err := tr(src)
			if err != nil {
				t.Fatal(err)
			}
			if im.Width != 24 || im.Height != 24 || im.Channels != 3 {
				t.Fatalf("got %dx%dx%d", im.Width, im.Height, im.Channels)
			}
			out = append(out, im)
		}
		return out
	}
	a, b := run(1), run(1)
	for i := range a {
		if !bytes.Equal(a[i].Pix, b[i].Pix) {
			t.Fatal("the same seed gave different crops")
		}
	}
	rng := rand.New(rand.NewSource(2))
	for range 1000 {
		x, y, w, h := randomCropBox(120, 80, rng)
		area := float64(w*h) / (120 * 80)
		ratio := float64(w) / float64(h)
		if x < 0 || y < 0 || w <= 0 || h <= 0 || x+w > 120 || y+h > 80 || area < 0.07 || area > 1 || ratio < 0.7 || ratio > 1.4 {
			t.Fatalf("box %d,%d %dx%d", x, y, w, h)
		}
	}
	// Too elongated for any try: the central crop of ratio 4/3.
	if x, y, w, h := randomCropBox(1000, 10, rng); x != 493 || y != 0 || w != 13 || h != 10 {
		t.Errorf("fallback box %d,%d %dx%d", x, y, w, h)
	}
	if x, y, w, h := randomCropBox(10, 1000, rng); x != 0 || y != 493 || w != 10 || h != 13 {
		t.Errorf("fallback box %d,%d %dx%d", x, y, w, h)
	}
}

func TestRandomHorizontalFlip(t *testing.T) {
	src := ramp(5, 3)
	flipped := src.FlipHorizontal()
	if flipped.Pix[0] != 4 || flipped.Pix[5] != 20 || !bytes.Equal(flipped.FlipHorizontal().Pix, src.Pix) {
		t.Errorf("flip = %v", flipped.Pix)
	}
	rng := rand.New(rand.NewSource(3))
	tr := RandomHorizontalFlip(rng)
	n := 0
	for range 1000 {
		out, _ := tr(src)
		if out.Pix[0] == 4 {
			n++
		}
	}
	if n < 430 || n > 570 {
		t.Errorf("flipped %d of 1000", n)
	}
}

func TestToTensorNormalize(t *testing.T) {
	im := &Image{Width: 2, Height: 1, Channels: 3, Pix: []uint8{255, 0, 51, 0, 255, 102}}
	x := ToTensor(im)
	want := []float32{1, 0, 0, 1, 0.2, 0.4}
	for i := range want {
		if x.Data[i] != want[i] {
			t.Fatalf("ToTensor = %v, want %v (CHW)", x.Data, want)
		}
	}
	if err := x.Normalize([]float32{0.5}, []float32{0.5, 0.25, 2}); err != nil {
		t.Fatal(err)
	}
	f2, f4 := float32(0.2), float32(0.4)
	want = []float32{1, -1, -2, 2, (f2 - 0.5) / 2, (f4 - 0.5) / 2}
	for i := range want {
		if x.Data[i] != want[i] {
			t.Fatalf("Normalize = %v, want %v", x.Data, want)
		}
	}
	if err := x.Normalize([]float32{0, 0}, []float32{1}); err == nil {
		t.Error("2 means for 3 channels accepted")
	}
	if err := x.Normalize([]float32{0}, []float32{0}); err == nil {
		t.Error("std 0 accepted")
	}
}

func TestBatch(t *testing.T) {
	paths := []string{"testdata/shapes_317x211.jpg", "testdata/rings_211x149_gray.png", "testdata/alpha_33x29.png"}
	imagenet := &Pipeline{Channels: 3, Transform: Compose(Resize(40), CenterCrop(32)),
		Mean: []float32{0.485, 0.456, 0.406}, Std: []float32{0.229, 0.224, 0.225}}
	b, err := imagenet.Batch(paths)
	if err != nil {
		t.Fatal(err)
	}
	if s := b.Shape(); len(s) != 4 || s[0] != 3 || s[1] != 3 || s[2] != 32 || s[3] != 32 {
		t.Errorf("batch shape %v", s)
	}
	b, err = (&Pipeline{Channels: 1, Transform: Compose(Resize(40), CenterCrop(32))}).Batch(paths[:2])
	if err != nil || b.Shape()[1] != 1 {
		t.Errorf("gray batch: %v, %v", err, b)
	}
	// Without a crop the sizes differ.
	_, err = (&Pipeline{Channels: 3, Transform: Resize(20)}).Batch(paths[:2])
	var e *Error
	if !errors.As(err, &e) || e.File != paths[1] || !strings.Contains(err.Error(), "one size") {
		t.Errorf("mixed sizes: %v", err)
	}
	if _, err := Stack(nil); err == nil {
		t.Error("empty stack accepted")
	}
}

// FuzzDecodeJPEG checks that the JPEG decoder never panics (a recovered
// panic shows as a "decoder fault" error) on mutations of the test images.
func FuzzDecodeJPEG(f *testing.F) {
	jpgs, _ := filepath.Glob("testdata/*.jpg")
	for _, p := range jpgs {
		f.Add(readFile(f, p))
	}
	f.Add(jpegHeader(8, 8))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := decodeJPEG(b, 1<<20); err != nil && strings.Contains(err.Error(), "decoder fault") {
			t.Fatal(err)
		}
	})
}
