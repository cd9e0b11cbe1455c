package data

// IDX files: the format of MNIST and Fashion-MNIST (LeCun et al.): a 4-byte
// magic number (two zero bytes, an element-type code, the number of
// dimensions), each dimension as a big-endian uint32, then the elements in
// row-major order, big-endian. Files may be gzipped (recognised by their
// magic bytes, not their name).

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/internal/memlimit"
	"gorgonia.org/tensor"
)

// MaxIDXBytes bounds the decoded payload of an IDX file: the header's
// dimensions are checked against it before anything is allocated.
const MaxIDXBytes = 1 << 30

// IDX element-type codes.
const (
	IDXUint8   = 0x08
	IDXInt8    = 0x09
	IDXInt16   = 0x0B
	IDXInt32   = 0x0C
	IDXFloat32 = 0x0D
	IDXFloat64 = 0x0E
)

func idxElemSize(code byte) int {
	switch code {
	case IDXUint8, IDXInt8:
		return 1
	case IDXInt16:
		return 2
	case IDXInt32, IDXFloat32:
		return 4
	case IDXFloat64:
		return 8
	}
	return 0
}

// IDXImages is a stack of gray images of one size, one byte a pixel
// (0 = black, 255 = white, as MNIST stores them).
type IDXImages struct {
	Count, Rows, Cols int
	Pixels            []uint8 // Count*Rows*Cols, image by image, row-major
}

// Tensor returns images [from, to) as a float32 tensor [n, 1, Rows, Cols]
// of pixel/255 in [0, 1], the scaling torchvision's ToTensor applies.
func (m *IDXImages) Tensor(from, to int) *tensor.Dense {
	if from < 0 || to > m.Count || from >= to {
		panic(fmt.Sprintf("data: IDXImages.Tensor(%d, %d) of %d images", from, to, m.Count))
	}
	size := m.Rows * m.Cols
	px := m.Pixels[from*size : to*size]
	v := make([]float32, len(px))
	for i, p := range px {
		v[i] = float32(p) / 255
	}
	return tensor.New(tensor.WithShape(to-from, 1, m.Rows, m.Cols), tensor.WithBacking(v))
}

// IDXArray is the raw content of an IDX file.
type IDXArray struct {
	Type byte  // element-type code, IDXUint8 ...
	Dims []int // at least one
	Data []byte
}

// ReadIDX reads an IDX file, gzipped or not.
func ReadIDX(path string) (*IDXArray, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, idxError(path, fileio.Reason(err))
	}
	defer f.Close()
	var size int64 = -1
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	a, err := decodeIDX(f, size)
	if err != nil {
		return nil, idxError(path, err)
	}
	return a, nil
}

// DecodeIDX reads an IDX array from r, gzipped or not.
func DecodeIDX(r io.Reader) (*IDXArray, error) { return decodeIDX(r, -1) }

// decodeIDX reads from r; fileSize, when known (>= 0), is the size of an
// uncompressed file, checked against the header before allocating.
func decodeIDX(r io.Reader, fileSize int64) (*IDXArray, error) {
	br := bufio.NewReader(r)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip header: %w", idxTruncated(err))
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
		fileSize = -1
	}
	var head [4]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return nil, fmt.Errorf("reading the header: %w", idxTruncated(err))
	}
	if head[0] != 0 || head[1] != 0 {
		return nil, fmt.Errorf("not an IDX file (magic % x)", head)
	}
	a := &IDXArray{Type: head[2]}
	elem := idxElemSize(a.Type)
	if elem == 0 {
		return nil, fmt.Errorf("unknown element type 0x%02x", a.Type)
	}
	nd := int(head[3])
	if nd == 0 {
		return nil, errors.New("no dimensions")
	}
	dims := make([]byte, 4*nd)
	if _, err := io.ReadFull(br, dims); err != nil {
		return nil, fmt.Errorf("reading %d dimensions: %w", nd, idxTruncated(err))
	}
	total := int64(elem)
	for i := 0; i < nd; i++ {
		d := int64(binary.BigEndian.Uint32(dims[4*i:]))
		a.Dims = append(a.Dims, int(d))
		if d == 0 {
			total = 0
		} else if total > 0 && total > MaxIDXBytes/d {
			return nil, fmt.Errorf("dimensions %v exceed the %d-byte limit", idxHeaderDims(dims, nd), MaxIDXBytes)
		} else {
			total *= d
		}
	}
	if err := memlimit.Check(fmt.Sprintf("the data of dimensions %v", a.Dims), total); err != nil {
		return nil, err
	}
	if fileSize >= 0 {
		switch have := fileSize - int64(4+4*nd); {
		case have < total:
			return nil, fmt.Errorf("dimensions %v need %d bytes of data, the file has %d: truncated", a.Dims, total, have)
		case have > total:
			return nil, fmt.Errorf("data continues past the %d bytes dimensions %v need (the file has %d)", total, a.Dims, have)
		}
		a.Data = make([]byte, total)
		if _, err := io.ReadFull(br, a.Data); err != nil {
			return nil, fmt.Errorf("reading %d bytes of data: %w", total, idxTruncated(err))
		}
		return a, nil
	}
	// Compressed or streamed: the size is unknown, so memory grows with
	// the data actually read rather than with what the header claims, in
	// steps that never take the buffer past the declared size.
	data := make([]byte, 0, min(total, 64<<10))
	for int64(len(data)) < total {
		if len(data) == cap(data) { // double, up to the declared size exactly
			grown := make([]byte, len(data), min(2*int64(cap(data)), total))
			copy(grown, data)
			data = grown
		}
		n, err := br.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF && int64(len(data)) < total {
			return nil, fmt.Errorf("dimensions %v need %d bytes of data, the file has %d: truncated", a.Dims, total, len(data))
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading data: %w", idxTruncated(err))
		}
	}
	// Reading on to the end also checks a gzip file's checksum and length.
	switch extra, err := io.ReadFull(br, make([]byte, 1)); {
	case extra > 0:
		return nil, fmt.Errorf("data continues past the %d bytes dimensions %v need", total, a.Dims)
	case err != io.EOF:
		return nil, fmt.Errorf("at the end of the data: %w", idxTruncated(err))
	}
	a.Data = data
	return a, nil
}

func idxHeaderDims(dims []byte, nd int) []uint32 {
	out := make([]uint32, nd)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(dims[4*i:])
	}
	return out
}

// idxTruncated words a read error: "truncated" for an early end, the
// decompressor's error without its "gzip: " prefix, or the system's
// without the path the caller names already.
func idxTruncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated")
	}
	if msg, ok := strings.CutPrefix(err.Error(), "gzip: "); ok {
		return errors.New(msg)
	}
	return fileio.Reason(err)
}

func idxError(path string, err error) error {
	return fmt.Errorf("IDX file %s: %w", path, err)
}

// ReadIDXImages reads an IDX file of unsigned bytes with 3 dimensions
// [count, rows, cols], as MNIST's image files are.
func ReadIDXImages(path string) (*IDXImages, error) {
	a, err := ReadIDX(path)
	if err != nil {
		return nil, err
	}
	if a.Type != IDXUint8 || len(a.Dims) != 3 {
		return nil, idxError(path, fmt.Errorf("want images (unsigned bytes, 3 dimensions), got %s", a.describe()))
	}
	if a.Dims[0] == 0 || a.Dims[1] == 0 || a.Dims[2] == 0 {
		return nil, idxError(path, fmt.Errorf("no images: dimensions %v", a.Dims))
	}
	return &IDXImages{Count: a.Dims[0], Rows: a.Dims[1], Cols: a.Dims[2], Pixels: a.Data}, nil
}

// ReadIDXLabels reads an IDX file of unsigned bytes with 1 dimension, as
// MNIST's label files are.
func ReadIDXLabels(path string) ([]int, error) {
	a, err := ReadIDX(path)
	if err != nil {
		return nil, err
	}
	if a.Type != IDXUint8 || len(a.Dims) != 1 {
		return nil, idxError(path, fmt.Errorf("want labels (unsigned bytes, 1 dimension), got %s", a.describe()))
	}
	labels := make([]int, len(a.Data))
	for i, b := range a.Data {
		labels[i] = int(b)
	}
	return labels, nil
}

func (a *IDXArray) describe() string {
	names := map[byte]string{IDXUint8: "unsigned bytes", IDXInt8: "signed bytes", IDXInt16: "int16",
		IDXInt32: "int32", IDXFloat32: "float32", IDXFloat64: "float64"}
	return fmt.Sprintf("%s with dimensions %v", names[a.Type], a.Dims)
}

// WriteIDX writes a as an IDX file, gzipped when path ends in ".gz",
// by graft's rule for outputs (internal/fileio): atomically, never over a
// device, pipe or folder.
func WriteIDX(path string, a *IDXArray) error {
	elem := idxElemSize(a.Type)
	if elem == 0 {
		return idxError(path, fmt.Errorf("unknown element type 0x%02x", a.Type))
	}
	if len(a.Dims) == 0 || len(a.Dims) > 255 {
		return idxError(path, fmt.Errorf("%d dimensions, want 1 to 255", len(a.Dims)))
	}
	total := elem
	for _, d := range a.Dims {
		if d < 0 || d > math.MaxUint32 {
			return idxError(path, fmt.Errorf("dimension %d out of range", d))
		}
		total *= d
	}
	if total != len(a.Data) {
		return idxError(path, fmt.Errorf("dimensions %v need %d bytes of data, got %d", a.Dims, total, len(a.Data)))
	}
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if strings.HasSuffix(path, ".gz") {
		zw, _ = gzip.NewWriterLevel(&buf, gzip.BestCompression)
		w = zw
	}
	head := []byte{0, 0, a.Type, byte(len(a.Dims))}
	for _, d := range a.Dims {
		head = binary.BigEndian.AppendUint32(head, uint32(d))
	}
	w.Write(head)
	w.Write(a.Data)
	if zw != nil {
		if err := zw.Close(); err != nil {
			return idxError(path, err)
		}
	}
	// The error names path and says what refused it.
	return fileio.WriteFile(path, buf.Bytes())
}

// WriteIDXImages writes images as an IDX file of unsigned bytes [count,
// rows, cols], gzipped when path ends in ".gz".
func WriteIDXImages(path string, m *IDXImages) error {
	return WriteIDX(path, &IDXArray{Type: IDXUint8, Dims: []int{m.Count, m.Rows, m.Cols}, Data: m.Pixels})
}

// WriteIDXLabels writes labels (0 to 255) as an IDX file of unsigned bytes,
// gzipped when path ends in ".gz".
func WriteIDXLabels(path string, labels []int) error {
	b := make([]byte, len(labels))
	for i, l := range labels {
		if l < 0 || l > 255 {
			return idxError(path, fmt.Errorf("label %d at %d does not fit in a byte", l, i))
		}
		b[i] = byte(l)
	}
	return WriteIDX(path, &IDXArray{Type: IDXUint8, Dims: []int{len(labels)}, Data: b})
}

// IDXLabelsPath returns the label file that goes with an image file under
// MNIST's naming: train-images-idx3-ubyte -> train-labels-idx1-ubyte, with
// or without ".gz" (the one that exists, the image file's form first), and
// the same for names with "images.idx3" (train-images.idx3-ubyte). The
// image file must exist.
func IDXLabelsPath(images string) (string, error) {
	if _, err := os.Stat(images); err != nil {
		return "", idxError(images, fileio.Reason(err))
	}
	dir, base := filepath.Split(images)
	if !strings.Contains(base, "images") || !strings.Contains(base, "idx3") {
		return "", fmt.Errorf("IDX file %s: cannot derive the labels file from the name (want ...images...idx3...): give it explicitly", images)
	}
	lb := strings.Replace(strings.Replace(base, "images", "labels", 1), "idx3", "idx1", 1)
	stem := strings.TrimSuffix(lb, ".gz")
	cands := []string{lb}
	if stem == lb {
		cands = append(cands, lb+".gz")
	} else {
		cands = append(cands, stem)
	}
	for _, c := range cands {
		p := filepath.Join(dir, c)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("IDX file %s: no labels file %s beside it: give it explicitly", images, strings.Join(cands, " or "))
}
