package data

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/internal/memtest"
)

// writeBlackPNG writes a valid black RGB PNG of 16-bit samples: a few
// hundred kilobytes however large the image, as zeros compress to almost
// nothing.
func writeBlackPNG(t *testing.T, path string, w, h int) {
	t.Helper()
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&out, binary.BigEndian, uint32(len(data)))
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		out.WriteString(typ)
		out.Write(data)
		binary.Write(&out, binary.BigEndian, crc.Sum32())
	}
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	chunk("IHDR", append(ihdr, 16, 2, 0, 0, 0)) // 16-bit RGB
	chunk("IDAT", zlibZeros(int64(h)*int64(1+6*w))) // each row: filter type 0, then zero samples

	chunk("IEND", nil)
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// zlibZeros returns a zlib stream of n zero bytes, quickly: one deflate
// block of zeros, ended by a sync flush so it is byte-aligned and refers to
// nothing before it, repeated.
func zlibZeros(n int64) []byte {
	const chunk = 1 << 20
	var blk bytes.Buffer
	fw, _ := flate.NewWriter(&blk, flate.BestCompression)
	fw.Write(make([]byte, chunk))
	fw.Flush()
	out := []byte{0x78, 0xda}
	for range n / chunk {
		out = append(out, blk.Bytes()...)
	}
	var tail bytes.Buffer
	fw, _ = flate.NewWriter(&tail, flate.BestCompression)
	fw.Write(make([]byte, n%chunk))
	fw.Close()
	out = append(out, tail.Bytes()...)
	// Adler-32 of n zeros: a stays 1, b adds 1 a byte.
	return binary.BigEndian.AppendUint32(out, uint32(n%65521)<<16|1)
}

// A 16-bit 10000x10000 PNG decodes to 800 MB in Go's decoder: with two
// workers and a 1 GiB limit, it is refused from its header.
func TestPNG16Memory(t *testing.T) {
	path := os.Getenv("GRAFT_TEST_PNG")
	if path == "" {
		path = filepath.Join(t.TempDir(), "black-16bit-10000.png")
		writeBlackPNG(t, path, 10000, 10000)
		if st, _ := os.Stat(path); st.Size() > 1<<20 {
			t.Fatalf("the PNG takes %d bytes", st.Size())
		}
	}
	r := memtest.Run(t, func() error {
		_, err := LoadConcurrent(path, 2)
		return err
	}, memlimit.EnvVar+"=1GiB", "GRAFT_TEST_PNG="+path)
	r.Want(t, "image "+path+": decoding this 10000x10000 png image (8 bytes a pixel, 1.0 GiB) in each of 2 workers at once needs 2.1 GiB, over graft's memory limit of 1.0 GiB (set by GRAFT_MEMORY_LIMIT); set GRAFT_MEMORY_LIMIT or --memory-limit to change it", 300<<20)
}

// PNGs of the same kind decode when they fit: the stream is valid.
func TestPNG16Decodes(t *testing.T) {
	for _, side := range []int{20, 1000} {
		path := filepath.Join(t.TempDir(), "black.png")
		writeBlackPNG(t, path, side, side+1)
		im, err := LoadConcurrent(path, 2)
		if err != nil || im.Width != side || im.Height != side+1 || im.Channels != 3 || bytes.Count(im.Pix, []byte{0}) != len(im.Pix) {
			t.Fatalf("%dx%d: %v", side, side+1, err)
		}
	}
}

// /dev/zero is refused from its first bytes, not read up to a gigabyte.
func TestDevZeroImageMemory(t *testing.T) {
	r := memtest.Run(t, func() error {
		_, err := Load("/dev/zero")
		return err
	})
	r.Want(t, "image /dev/zero: not a PNG, JPEG or GIF image", 300<<20)
}
