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
	chunk("IHDR", append(ihdr, 16, 2, 0, 0, 0))     // 16-bit RGB
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

// writeGzipIDXZeros writes a gzipped IDX file of unsigned bytes with the
// given dimensions, all zero: a megabyte or so however large it declares.
func writeGzipIDXZeros(t *testing.T, path string, dims ...uint32) {
	t.Helper()
	head := []byte{0, 0, IDXUint8, byte(len(dims))}
	n := int64(1)
	for _, d := range dims {
		head = binary.BigEndian.AppendUint32(head, d)
		n *= int64(d)
	}
	var out bytes.Buffer
	out.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}) // gzip header, no name
	var hb bytes.Buffer
	fw, _ := flate.NewWriter(&hb, flate.BestCompression)
	fw.Write(head)
	fw.Flush()
	out.Write(hb.Bytes())
	z := zlibZeros(n)
	out.Write(z[2 : len(z)-4]) // the raw deflate blocks
	crc := crc32.Update(0, crc32.IEEETable, head)
	zero := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(zero)) {
		crc = crc32.Update(crc, crc32.IEEETable, zero[:min(left, int64(len(zero)))])
	}
	out.Write(binary.LittleEndian.AppendUint32(nil, crc))
	out.Write(binary.LittleEndian.AppendUint32(nil, uint32(n+int64(len(head)))))
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A gzipped IDX file of about 1 MB declaring a gigabyte of images is
// refused from its header under a 256 MiB limit.
func TestIDXBombMemory(t *testing.T) {
	path := os.Getenv("GRAFT_TEST_IDX")
	if path == "" {
		path = filepath.Join(t.TempDir(), "bomb-images-idx3-ubyte.gz")
		writeGzipIDXZeros(t, path, 1000, 1000, 1000)
		if st, _ := os.Stat(path); st.Size() > 2<<20 {
			t.Fatalf("the bomb takes %d bytes", st.Size())
		}
	}
	r := memtest.Run(t, func() error {
		_, err := ReadIDXImages(path)
		return err
	}, memlimit.EnvVar+"=256MiB", "GRAFT_TEST_IDX="+path)
	r.Want(t, "IDX file "+path+": the data of dimensions [1000 1000 1000] needs 953.7 MiB, over graft's memory limit of 256.0 MiB (set by GRAFT_MEMORY_LIMIT); set GRAFT_MEMORY_LIMIT or --memory-limit to change it", 300<<20)
}

// The same kind of file, small enough, reads whole: the stream is valid and
// the buffer grows in steps to the declared size.
func TestIDXGzipZerosRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zeros-images-idx3-ubyte.gz")
	writeGzipIDXZeros(t, path, 3000, 28, 28)
	im, err := ReadIDXImages(path)
	if err != nil || im.Count != 3000 || len(im.Pixels) != 3000*28*28 || cap(im.Pixels) != len(im.Pixels) {
		t.Fatalf("%v (%d bytes, capacity %d)", err, len(im.Pixels), cap(im.Pixels))
	}
}
