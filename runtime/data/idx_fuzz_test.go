package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// FuzzIDX reads arbitrary bytes as an IDX file, plain or gzipped, from a
// stream (DecodeIDX) and from a file (ReadIDX, ReadIDXImages,
// ReadIDXLabels). It never panics; errors are one line; what it returns
// matches its header and writes back to the same array; and it allocates
// no more than the data actually present allows, whatever the header
// claims.
func FuzzIDX(f *testing.F) {
	images := &IDXArray{Type: IDXUint8, Dims: []int{2, 3, 2}, Data: []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255}}
	for _, a := range []*IDXArray{
		images,
		{Type: IDXUint8, Dims: []int{3}, Data: []byte{7, 0, 9}},
		{Type: IDXFloat32, Dims: []int{1, 2}, Data: make([]byte, 8)},
		{Type: IDXInt16, Dims: []int{0, 5}},
	} {
		plain := idxBytes(a)
		f.Add(plain)
		f.Add(gzipped(plain))
		f.Add(plain[:len(plain)-1])
	}
	// Headers that claim far more than follows.
	f.Add([]byte{0, 0, IDXUint8, 3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 28, 0, 0, 0, 28, 1, 2, 3})
	f.Add(gzipped([]byte{0, 0, IDXFloat64, 1, 0x10, 0, 0, 0, 1, 2}))
	claim64MiB := []byte{0, 0, IDXUint8, 1, 0x04, 0, 0, 0, 1, 2, 3}
	f.Add(claim64MiB)
	f.Add(gzipped(claim64MiB))
	f.Add(gzipped(append([]byte{0, 0, IDXUint8, 1, 0, 1, 0, 0}, make([]byte, 1<<16)...)))
	f.Add([]byte{0x1f, 0x8b})
	labels, err := os.ReadFile("../../testdata/models/lenet_mnist/heldout-labels-idx1-ubyte.gz")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(labels)

	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		// The data a reader can find: the input, or what it decompresses to.
		present := int64(len(b))
		if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
			present = 0
			if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
				present, _ = io.Copy(io.Discard, zr)
			}
		}
		// Buffers (bufio, gzip's window and tables) plus at most twice the
		// data read, as a growing buffer holds.
		limit := 1<<20 + 2*present
		var a *IDXArray
		if n := allocated(func() { a, err = DecodeIDX(bytes.NewReader(b)) }); n > limit {
			t.Fatalf("DecodeIDX of %d bytes (%d of data) allocated %d bytes", len(b), present, n)
		}
		checkIDX(t, a, err)

		path := filepath.Join(dir, "x-images-idx3-ubyte")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if n := allocated(func() { a, err = ReadIDX(path) }); n > limit {
			t.Fatalf("ReadIDX of %d bytes (%d of data) allocated %d bytes", len(b), present, n)
		}
		checkIDX(t, a, err)
		if err == nil {
			// What was read writes back to the same array.
			back := filepath.Join(dir, "back")
			if err := WriteIDX(back, a); err != nil {
				t.Fatalf("WriteIDX of what ReadIDX returned: %v", err)
			}
			c, err := ReadIDX(back)
			if err != nil || c.Type != a.Type || !slices.Equal(c.Dims, a.Dims) || !bytes.Equal(c.Data, a.Data) {
				t.Fatalf("written back and read again: %+v, %v", c, err)
			}
		}
		if im, err := ReadIDXImages(path); err == nil {
			if im.Count*im.Rows*im.Cols != len(im.Pixels) || im.Count == 0 {
				t.Fatalf("%d images of %dx%d hold %d pixels", im.Count, im.Rows, im.Cols, len(im.Pixels))
			}
		} else {
			oneLine(t, err)
		}
		if l, err := ReadIDXLabels(path); err == nil {
			for _, x := range l {
				if x < 0 || x > 255 {
					t.Fatalf("label %d", x)
				}
			}
		} else {
			oneLine(t, err)
		}
	})
}

// checkIDX checks a decoded array against its header.
func checkIDX(t *testing.T, a *IDXArray, err error) {
	t.Helper()
	if err != nil {
		oneLine(t, err)
		return
	}
	size := idxElemSize(a.Type)
	if size == 0 || len(a.Dims) == 0 || len(a.Dims) > 255 {
		t.Fatalf("read type 0x%02x with dimensions %v", a.Type, a.Dims)
	}
	n := size
	for _, d := range a.Dims {
		if d < 0 {
			t.Fatalf("negative dimension in %v", a.Dims)
		}
		n *= d
	}
	if n != len(a.Data) {
		t.Fatalf("dimensions %v of %d-byte elements hold %d bytes of data", a.Dims, size, len(a.Data))
	}
}

func oneLine(t *testing.T, err error) {
	t.Helper()
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line: %q", err)
	}
}

// allocated returns how many bytes f allocates.
func allocated(f func()) int64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc)
}

// idxBytes encodes a as an IDX file.
func idxBytes(a *IDXArray) []byte {
	b := []byte{0, 0, a.Type, byte(len(a.Dims))}
	for _, d := range a.Dims {
		b = binary.BigEndian.AppendUint32(b, uint32(d))
	}
	return append(b, a.Data...)
}
