// Package safetensors reads and writes the safetensors format (Hugging
// Face's; https://github.com/huggingface/safetensors): named tensors and
// string metadata in one file, readable from Python and numpy.
//
//	8 bytes    N, the header's length, unsigned little-endian
//	N bytes    the header, a JSON object: "__metadata__" (strings) and, for
//	           each tensor, {"dtype", "shape", "data_offsets": [begin, end)}
//	the rest   the tensors' bytes, little-endian, without gaps
//
// It is graft's own (a few pages) rather than a library because a reader
// of untrusted files must check every size against the file and graft's
// memory limit before allocating, and say in one line what is wrong.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/graft-dev/graft/internal/memlimit"
)

// MaxHeader bounds the header a reader accepts.
const MaxHeader = 64 << 20

// Sizes are the bytes per element of each dtype.
var Sizes = map[string]int64{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// A Tensor is a named tensor: its dtype, shape and little-endian bytes.
type Tensor struct {
	Name  string
	Dtype string
	Shape []int64
	Data  []byte
}

// A File is a safetensors file's contents: tensors in the order of their
// bytes.
type File struct {
	Metadata map[string]string
	Tensors  []Tensor
}

// Tensor returns the tensor of that name, or nil.
func (f *File) Tensor(name string) *Tensor {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i]
		}
	}
	return nil
}

type entry struct {
	Dtype   string  `json:"dtype"`
	Shape   []int64 `json:"shape"`
	Offsets []int64 `json:"data_offsets"`
}

// elements returns the number of elements of shape, or an error when a
// dimension is negative or the product exceeds limit.
func elements(shape []int64, limit int64) (int64, error) {
	n := int64(1)
	for _, s := range shape {
		if s < 0 {
			return 0, fmt.Errorf("shape %v", shape)
		}
		if s > 0 && n > limit/s {
			return 0, fmt.Errorf("shape %v is larger than the file", shape)
		}
		n *= s
	}
	return n, nil
}

// Encode returns the file holding f's metadata and tensors, their bytes in
// the order given. The header's keys are sorted and it is padded with
// spaces to a multiple of 8 bytes, so the tensors start aligned and the
// same contents give the same bytes.
func Encode(f *File) ([]byte, error) {
	header := map[string]any{}
	if f.Metadata != nil {
		header["__metadata__"] = f.Metadata
	}
	var at int64
	for _, t := range f.Tensors {
		size, ok := Sizes[t.Dtype]
		if !ok {
			return nil, fmt.Errorf("tensor %s: dtype %q", t.Name, t.Dtype)
		}
		n, err := elements(t.Shape, int64(len(t.Data)+1))
		if err != nil || n*size != int64(len(t.Data)) {
			return nil, fmt.Errorf("tensor %s: %d bytes for shape %v of %s", t.Name, len(t.Data), t.Shape, t.Dtype)
		}
		if _, dup := header[t.Name]; dup || t.Name == "__metadata__" {
			return nil, fmt.Errorf("tensor name %q used twice", t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[t.Name] = entry{t.Dtype, shape, []int64{at, at + int64(len(t.Data))}}
		at += int64(len(t.Data))
	}
	h, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := make([]byte, 8, 8+int64(len(h))+at)
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	out = append(out, h...)
	for _, t := range f.Tensors {
		out = append(out, t.Data...)
	}
	return out, nil
}

// Decode reads a safetensors file of size bytes from r. Every size is
// checked against the file and graft's memory limit before anything is
// allocated; the tensors' bytes must cover the rest of the file exactly.
func Decode(r io.Reader, size int64) (*File, error) {
	var lenBuf [8]byte
	if size < 8 {
		return nil, errors.New("not a safetensors file: shorter than its header length")
	}
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, fmt.Errorf("reading the header length: %w", err)
	}
	hlen := binary.LittleEndian.Uint64(lenBuf[:])
	if hlen > MaxHeader || int64(hlen) > size-8 {
		return nil, fmt.Errorf("not a safetensors file: a header of %d bytes in a file of %d", hlen, size)
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, fmt.Errorf("reading the header: %w", err)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(hb, &header); err != nil {
		return nil, fmt.Errorf("not a safetensors file: the header is not a JSON object: %w", err)
	}
	f := &File{}
	body := size - 8 - int64(hlen)
	type placed struct {
		name string
		e    entry
	}
	var list []placed
	for name, raw := range header {
		if name == "__metadata__" {
			if err := json.Unmarshal(raw, &f.Metadata); err != nil {
				return nil, fmt.Errorf("__metadata__ is not an object of strings: %w", err)
			}
			continue
		}
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		esize, ok := Sizes[e.Dtype]
		if !ok {
			return nil, fmt.Errorf("tensor %q: unknown dtype %q", name, e.Dtype)
		}
		n, err := elements(e.Shape, body)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if len(e.Offsets) != 2 || e.Offsets[0] < 0 || e.Offsets[1] < e.Offsets[0] || e.Offsets[1] > body || e.Offsets[1]-e.Offsets[0] != n*esize {
			return nil, fmt.Errorf("tensor %q: data offsets %v for %d bytes (shape %v of %s) in %d bytes", name, e.Offsets, n*esize, e.Shape, e.Dtype, body)
		}
		list = append(list, placed{name, e})
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i].e.Offsets, list[j].e.Offsets
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		return a[1] < b[1]
	})
	var at int64
	for _, p := range list {
		if p.e.Offsets[0] != at {
			return nil, fmt.Errorf("the tensors' bytes leave a gap or overlap at byte %d (tensor %q)", at, p.name)
		}
		at = p.e.Offsets[1]
	}
	if at != body {
		return nil, fmt.Errorf("the tensors take %d bytes; the file holds %d after the header", at, body)
	}
	if err := memlimit.Check(fmt.Sprintf("safetensors data of %d tensors", len(list)), body); err != nil {
		return nil, err
	}
	data := make([]byte, body)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("reading the tensors: %w", err)
	}
	for _, p := range list {
		f.Tensors = append(f.Tensors, Tensor{Name: p.name, Dtype: p.e.Dtype, Shape: p.e.Shape, Data: data[p.e.Offsets[0]:p.e.Offsets[1]:p.e.Offsets[1]]})
	}
	return f, nil
}
