package onnx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/graft-dev/graft/onnx/internal/pb"
	"google.golang.org/protobuf/proto"
)

// ErrNotONNX is returned (wrapped, with the reason) for input that is not an
// ONNX model at all: an empty file, a zip archive, bytes that are not a
// protobuf.
var ErrNotONNX = errors.New("not an ONNX model")

// maxModelBytes is protobuf's limit on one message; larger models keep their
// weights in external data files.
const maxModelBytes = 2<<30 - 1

// DecodeOptions control how a model is read.
type DecodeOptions struct {
	// Dir is the folder that external data locations are relative to. With
	// Dir empty, a model with external data is refused.
	Dir string
	// SkipValidation returns the model without running Validate.
	SkipValidation bool
}

// Load reads the model at path, with any external data beside it, and
// validates it.
func Load(path string) (*Model, error) {
	m, err := DecodeOptions{Dir: filepath.Dir(path)}.Load(path)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Load reads the model at path. External data is read relative to o.Dir, or
// the file's folder if o.Dir is empty.
func (o DecodeOptions) Load(path string) (*Model, error) {
	if o.Dir == "" {
		o.Dir = filepath.Dir(path)
	}
	b, err := modelMessage.readFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, unwrapPath(err))
	}
	m, err := o.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return m, nil
}

// Read reads a whole model from r, only as far as the protobuf's framing
// allows and within protobuf's 2 GiB limit and graft's memory limit.
func (o DecodeOptions) Read(r io.Reader) (*Model, error) {
	b, err := modelMessage.read(r)
	if err != nil {
		return nil, err
	}
	return o.Decode(b)
}

// Decode decodes a model without external data and validates it.
func Decode(b []byte) (*Model, error) { return DecodeOptions{}.Decode(b) }

// Decode decodes the bytes of a model file.
func (o DecodeOptions) Decode(b []byte) (*Model, error) {
	switch {
	case len(b) == 0:
		return nil, fmt.Errorf("%w: the file is empty", ErrNotONNX)
	case bytes.HasPrefix(b, zipMagic):
		return nil, fmt.Errorf("%w: %s", ErrNotONNX, zipAdvice)
	}
	p := &pb.ModelProto{}
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("%w: the protobuf does not decode (truncated or corrupt file?): %v", ErrNotONNX, err)
	}
	if p.Graph == nil && p.IrVersion == nil && len(p.OpsetImport) == 0 {
		return nil, fmt.Errorf("%w: no ONNX model fields found (random or foreign data?)", ErrNotONNX)
	}
	m, err := decodeModel(p)
	if err != nil {
		return nil, err
	}
	if err := m.readExternal(o.Dir); err != nil {
		return nil, err
	}
	if !o.SkipValidation {
		if err := m.Validate(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Model) readExternal(dir string) error {
	var ext []*Tensor
	m.eachTensor(func(t *Tensor) {
		if t.storage == storeExternal {
			ext = append(ext, t)
		}
	})
	if len(ext) == 0 {
		return nil
	}
	if dir == "" {
		return fmt.Errorf("tensor %q has external data (%q) but the model was not read from a file, so there is no folder to find it in", ext[0].Name, ext[0].external.Location)
	}
	r, err := newExternalReader(dir)
	if err != nil {
		return fmt.Errorf("external data: %w", err)
	}
	defer r.close()
	for _, t := range ext {
		if err := r.read(t); err != nil {
			return err
		}
	}
	return nil
}

// Encode returns the model's protobuf bytes. Tensors stored externally are
// referenced as they were read; Save writes their data files.
func Encode(m *Model) ([]byte, error) {
	var unplaced *Tensor
	m.eachTensor(func(t *Tensor) {
		if t.storage == storeExternal && t.external.Offset < 0 && unplaced == nil {
			unplaced = t
		}
	})
	if unplaced != nil {
		return nil, fmt.Errorf("tensor %q is to be stored in %q but has no place there yet: use Save, which writes the data file", unplaced.Name, unplaced.external.Location)
	}
	b, err := proto.Marshal(encodeModel(m))
	if err != nil {
		return nil, err
	}
	if len(b) > maxModelBytes {
		return nil, fmt.Errorf("encoded model is %d bytes, over protobuf's 2 GiB limit: store large tensors as external data", len(b))
	}
	return b, nil
}

// Save validates m and writes it to path, and the data files of externally
// stored tensors beside it. Every file is written to a temporary name and
// renamed into place, so a failed save leaves no partial file behind.
func Save(m *Model, path string) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	files, err := m.layoutExternal()
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	b, err := Encode(m)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	// Write every file to a temporary name first, and rename them into place
	// (the model last) only once all are written and no target is a folder,
	// so a failure leaves the existing files as they were.
	type pending struct{ tmp, path string }
	var written []pending
	removeTemps := func() {
		for _, p := range written {
			os.Remove(p.tmp)
		}
	}
	locs := make([]string, 0, len(files))
	for loc := range files {
		locs = append(locs, loc)
	}
	sort.Strings(locs)
	for _, loc := range locs {
		target := filepath.Join(dir, filepath.FromSlash(loc))
		tmp, err := writeTemp(target, files[loc])
		if err != nil {
			removeTemps()
			return fmt.Errorf("save %s: external data %q: %w", path, loc, err)
		}
		written = append(written, pending{tmp, target})
	}
	tmp, err := writeTemp(path, b)
	if err != nil {
		removeTemps()
		return fmt.Errorf("save %s: %w", path, err)
	}
	written = append(written, pending{tmp, path})
	for _, p := range written {
		if st, err := os.Stat(p.path); err == nil && st.IsDir() {
			removeTemps()
			return fmt.Errorf("save %s: %s is a folder", path, p.path)
		}
	}
	for i, p := range written {
		if err := os.Rename(p.tmp, p.path); err != nil {
			for _, q := range written[i:] {
				os.Remove(q.tmp)
			}
			return fmt.Errorf("save %s: %w", path, err)
		}
	}
	return nil
}

// layoutExternal builds the contents of each external data file. A tensor
// keeps its offset when that range is free, so an unedited model's data file
// is rewritten unchanged; others are appended at 4 KiB boundaries.
func (m *Model) layoutExternal() (map[string][]byte, error) {
	byLoc := map[string][]*Tensor{}
	var locs []string
	m.eachTensor(func(t *Tensor) {
		if t.storage == storeExternal {
			if byLoc[t.external.Location] == nil {
				locs = append(locs, t.external.Location)
			}
			byLoc[t.external.Location] = append(byLoc[t.external.Location], t)
		}
	})
	files := map[string][]byte{}
	for _, loc := range locs {
		if err := checkLocation(loc); err != nil {
			return nil, fmt.Errorf("%w: %q", err, loc)
		}
		type span struct{ lo, hi int64 }
		var used []span
		free := func(lo, hi int64) bool {
			for _, s := range used {
				if lo < s.hi && s.lo < hi {
					return false
				}
			}
			return true
		}
		var end int64
		ts := byLoc[loc]
		var moved []*Tensor
		for _, t := range ts {
			e := t.external
			e.Length = int64(len(t.raw))
			if e.Offset >= 0 && free(e.Offset, e.Offset+e.Length) {
				used = append(used, span{e.Offset, e.Offset + e.Length})
				end = max(end, e.Offset+e.Length)
			} else {
				moved = append(moved, t)
			}
		}
		for _, t := range moved {
			off := (end + 4095) &^ 4095
			t.external.Offset = off
			used = append(used, span{off, off + t.external.Length})
			end = off + t.external.Length
		}
		sort.Slice(used, func(i, j int) bool { return used[i].lo < used[j].lo })
		data := make([]byte, end)
		for _, t := range ts {
			copy(data[t.external.Offset:], t.raw)
		}
		files[loc] = data
	}
	return files, nil
}

// WriteFileAtomic writes data to a temporary file in path's folder and renames
// it to path, so readers never see a partial file.
func WriteFileAtomic(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writeTemp writes data to a new temporary file beside path and returns its
// name; on failure it leaves no file.
func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// eachTensor calls f on every tensor of the model: initializers and tensor
// attributes, in subgraphs too.
func (m *Model) eachTensor(f func(*Tensor)) {
	if m.Graph != nil {
		m.Graph.eachTensor(f)
	}
}

func (g *Graph) eachTensor(f func(*Tensor)) {
	for _, v := range g.Initializers {
		f(v.Const)
	}
	for _, n := range g.Nodes {
		for _, a := range n.Attrs {
			if a.Tensor != nil {
				f(a.Tensor)
			}
			for _, t := range a.Tensors {
				f(t)
			}
			for _, sg := range a.subgraphs() {
				sg.eachTensor(f)
			}
		}
	}
}

func (a *Attribute) subgraphs() []*Graph {
	if a.Graph != nil {
		return append([]*Graph{a.Graph}, a.Graphs...)
	}
	return a.Graphs
}

// DecodeTensor decodes a serialized TensorProto, such as the input_0.pb and
// output_0.pb files of ONNX test data. External data is refused.
func DecodeTensor(b []byte) (*Tensor, error) {
	p := &pb.TensorProto{}
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("not a TensorProto: %v", err)
	}
	t, err := decodeTensor(p)
	if err != nil {
		return nil, err
	}
	if t.storage == storeExternal {
		return nil, fmt.Errorf("tensor %q: external data is not supported in a standalone tensor file", t.Name)
	}
	return t, nil
}

// EncodeTensor serializes t as a TensorProto.
func EncodeTensor(t *Tensor) ([]byte, error) {
	if err := checkTensorData(t); err != nil {
		return nil, err
	}
	if t.storage == storeExternal {
		t2 := *t
		t2.storage, t2.external = storeRaw, nil
		t = &t2
	}
	return proto.Marshal(encodeTensor(t))
}

// LoadTensor reads a TensorProto file: a regular file's size is checked
// against graft's memory limit before reading, and special files are read
// only as far as the protobuf's framing allows.
func LoadTensor(path string) (*Tensor, error) {
	b, err := tensorMessage.readFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, unwrapPath(err))
	}
	t, err := DecodeTensor(b)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return t, nil
}

// SaveTensor writes t to path as a TensorProto, atomically.
func SaveTensor(t *Tensor, path string) error {
	b, err := EncodeTensor(t)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := WriteFileAtomic(path, b); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
