package onnx

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/onnx/internal/pb"
)

// ErrUnsafeLocation is returned for external data whose location would lead
// outside the model's folder: an absolute path, a ".." step, or a link.
var ErrUnsafeLocation = errors.New("external data location leaves the model's folder")

func parseExternal(tensor string, entries []*pb.StringStringEntryProto) (*External, error) {
	e := &External{Offset: 0, Length: -1, entries: entries}
	for _, kv := range entries {
		v := kv.GetValue()
		switch kv.GetKey() {
		case "location":
			e.Location = v
		case "offset", "length":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("tensor %q: external data %s %q is not a non-negative integer", tensor, kv.GetKey(), v)
			}
			if kv.GetKey() == "offset" {
				e.Offset = n
			} else {
				e.Length = n
			}
		}
	}
	if e.Location == "" {
		return nil, fmt.Errorf("tensor %q: external data has no location", tensor)
	}
	if err := checkLocation(e.Location); err != nil {
		return nil, fmt.Errorf("tensor %q: %w: %q", tensor, err, e.Location)
	}
	return e, nil
}

// SetExternal marks t to be stored outside the model file (external true),
// in the data file Save writes beside it, or inside the model file again
// (false). A tensor read from a data file keeps its place there until Save.
func (t *Tensor) SetExternal(external bool) error {
	if !external {
		if t.storage == storeExternal {
			t.storage, t.external = storeRaw, nil
		}
		return nil
	}
	if t.DType == String {
		return fmt.Errorf("tensor %q: string tensors cannot be stored externally", t.Name)
	}
	if t.storage != storeExternal {
		t.storage = storeExternal
		t.external = &External{Offset: -1, Length: int64(len(t.raw))}
	}
	return nil
}

// checkLocation rejects locations that are not plain relative paths inside
// the folder. Links are checked when the file is opened.
func checkLocation(loc string) error {
	if filepath.IsAbs(loc) || strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, `\`) || filepath.VolumeName(loc) != "" {
		return ErrUnsafeLocation
	}
	for _, part := range strings.FieldsFunc(loc, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return ErrUnsafeLocation
		}
	}
	return nil
}

// encode writes the entries back in the order they were read, updating
// offset and length, and adding whichever of the three keys is missing,
// except that entries read from a file without length (the shape gives it)
// or without an offset of 0 stay without. An entry whose value still holds
// ("007" for 7) is written as read.
func (e *External) encode() []*pb.StringStringEntryProto {
	vals := map[string]string{
		"location": e.Location,
		"offset":   strconv.FormatInt(e.Offset, 10),
		"length":   strconv.FormatInt(e.Length, 10),
	}
	holds := func(kv *pb.StringStringEntryProto) bool {
		switch kv.GetKey() {
		case "location":
			return kv.GetValue() == e.Location
		case "offset":
			n, err := strconv.ParseInt(kv.GetValue(), 10, 64)
			return kv.Value == nil && e.Offset == 0 || err == nil && n == e.Offset
		case "length":
			n, err := strconv.ParseInt(kv.GetValue(), 10, 64)
			return err == nil && n == e.Length
		}
		return true
	}
	var out []*pb.StringStringEntryProto
	seen := map[string]bool{}
	for _, kv := range e.entries {
		k := kv.GetKey()
		if _, ok := vals[k]; ok {
			seen[k] = true
		}
		if holds(kv) {
			out = append(out, kv)
			continue
		}
		v := vals[k]
		q := &pb.StringStringEntryProto{Key: kv.Key, Value: &v}
		keepUnknown(q, kv)
		out = append(out, q)
	}
	for _, k := range []string{"location", "offset", "length"} {
		implied := k == "length" || k == "offset" && e.Offset == 0
		if !seen[k] && !(e.entries != nil && implied) {
			k, v := k, vals[k]
			out = append(out, &pb.StringStringEntryProto{Key: &k, Value: &v})
		}
	}
	return out
}

// externalReader opens data files below one folder, refusing any whose real
// path (links resolved) is outside it, and reads checked ranges.
type externalReader struct {
	dir   string // the model's folder, links resolved
	files map[string]*os.File
	total int64 // bytes read so far
}

func newExternalReader(dir string) (*externalReader, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return nil, err
	}
	return &externalReader{dir: real, files: map[string]*os.File{}}, nil
}

func (r *externalReader) close() {
	for _, f := range r.files {
		f.Close()
	}
}

func (r *externalReader) read(t *Tensor) error {
	e := t.external
	f, ok := r.files[e.Location]
	if !ok {
		path := filepath.Join(r.dir, filepath.FromSlash(e.Location))
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return fmt.Errorf("tensor %q: external data: %w", t.Name, err)
		}
		if rel, err := filepath.Rel(r.dir, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return fmt.Errorf("tensor %q: %w: %q links to %q", t.Name, ErrUnsafeLocation, e.Location, real)
		}
		if f, err = os.Open(real); err != nil {
			return fmt.Errorf("tensor %q: external data: %w", t.Name, err)
		}
		r.files[e.Location] = f
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("tensor %q: external data: %w", t.Name, err)
	}
	want := t.DType.rawSize(t.NumElements())
	if e.Length < 0 {
		e.Length = want
	}
	if e.Length > maxTensorBytes {
		return fmt.Errorf("tensor %q: external data of %d bytes is more than graft reads (%d)", t.Name, e.Length, int64(maxTensorBytes))
	}
	if e.Offset > st.Size() || e.Length > st.Size()-e.Offset {
		return fmt.Errorf("tensor %q: external data %q: bytes [%d, %d) are past the end of the file (%d bytes)",
			t.Name, e.Location, e.Offset, e.Offset+e.Length, st.Size())
	}
	// A tensor's data fits in its file; all of them together must fit in
	// memory too.
	r.total = memlimit.Add(r.total, e.Length)
	if err := memlimit.Check(fmt.Sprintf("the external data up to tensor %q", t.Name), r.total); err != nil {
		return err
	}
	t.raw = make([]byte, e.Length)
	if _, err := f.ReadAt(t.raw, e.Offset); err != nil && err != io.EOF {
		return fmt.Errorf("tensor %q: external data %q: %w", t.Name, e.Location, err)
	}
	return nil
}
