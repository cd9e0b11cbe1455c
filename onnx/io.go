package onnx

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"

	"github.com/graft-dev/graft/internal/fileio"
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
		return nil, fmt.Errorf("load %s: %w", path, fileio.Reason(err))
	}
	m, err := o.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if len(b) >= bigFile {
		// The file's bytes, as large as the model's weights, are garbage
		// now: collected here, they do not sit beside the parameters a
		// program compiles next (ViT-B/16: 346 MB).
		b = nil
		goruntime.GC()
	}
	return m, nil
}

// bigFile is the size from which Load collects the file's bytes at once.
const bigFile = 64 << 20

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
		f := filepath.Join(dir, filepath.FromSlash(t.external.Location))
		if !slices.Contains(m.dataFiles, f) {
			m.dataFiles = append(m.dataFiles, f)
		}
	}
	slices.Sort(m.dataFiles)
	return nil
}

// ExternalDataFiles returns the paths of the external data files the model's
// tensors were read from (the folder they were read relative to, joined with
// each location), sorted, for a command to declare as inputs. It is nil for
// a model read without external data or built in memory.
func (m *Model) ExternalDataFiles() []string { return slices.Clone(m.dataFiles) }

// Encode returns the model's protobuf bytes. Tensors stored externally are
// referenced as they were read (or last saved); Save writes their data file.
func Encode(m *Model) ([]byte, error) {
	var unplaced *Tensor
	m.eachTensor(func(t *Tensor) {
		if t.storage == storeExternal && t.external.Offset < 0 && unplaced == nil {
			unplaced = t
		}
	})
	if unplaced != nil {
		return nil, fmt.Errorf("tensor %q is to be stored in a data file that does not exist yet: use Save, which writes it", unplaced.Name)
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

// SaveOptions control how a model is written.
type SaveOptions struct {
	// Force replaces a read-only file at the path (see internal/fileio).
	Force bool
	// NoSync skips flushing the files to disk: they are still written
	// whole (a killed process leaves the old or the new model), but a crash
	// of the machine may lose them. For models rewritten after every epoch.
	NoSync bool
}

// Save validates m and writes it to path with SaveOptions{}.
func Save(m *Model, path string) error { return SaveOptions{}.Save(m, path) }

// Save validates m and writes it to path by graft's rule for outputs
// (internal/fileio): atomically, keeping an existing file's mode, through a
// symlink to the file it points to, and never over a device, pipe or folder.
//
// Tensors marked external (SetExternal) go to one data file beside the model
// file, named after it and its own content: OUT.HASH.data, HASH being 16 hex
// digits of the data's SHA-256. Since the name changes with the content,
// Save never rewrites a data file that another model, such as the one the
// tensors were read from, still reads; and since the data file is written
// first and the model file, which names it, last, a kill at any instant
// leaves the old model with its old data or the new model with its new
// data. Then the data files of the same output that the new model no longer
// names (OUT.*.data, in our naming only) are removed; Saves into one folder
// take turns, so that two Saves to one path at once leave one model whole.
// A reader that read the old model file an instant before may then miss its
// data file, and must load again.
//
// After Save, m's external tensors describe the data file written.
func (o SaveOptions) Save(m *Model, path string) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	var opts []fileio.Option
	if o.Force {
		opts = append(opts, fileio.Force())
	}
	if o.NoSync {
		opts = append(opts, fileio.NoSync())
	}
	// The model's own path first, so that a refused output leaves no data
	// file behind.
	real, err := fileio.Resolve(path, opts...)
	if err != nil {
		return err
	}
	dir, base := filepath.Dir(real), filepath.Base(real)
	dataName, data, restore := m.placeExternal(base)
	b, err := Encode(m)
	if err != nil {
		restore()
		return fmt.Errorf("save %s: %w", path, err)
	}
	// One Save at a time in a folder: otherwise a concurrent Save to the same
	// path could remove, as stale, the data file our model is about to name.
	err = fileio.InFolder(dir, func() error {
		var created string // a data file this Save created, removed if the model cannot follow
		if dataName != "" {
			dataPath := filepath.Join(dir, dataName)
			if !sameContent(dataPath, data) {
				if _, err := os.Lstat(dataPath); errors.Is(err, fs.ErrNotExist) {
					created = dataPath
				}
				if err := fileio.WriteFile(dataPath, data, append(opts, fileio.ModeOf(real))...); err != nil {
					return fmt.Errorf("save %s: external data: %w", path, err)
				}
			}
		}
		if err := fileio.WriteFile(path, b, opts...); err != nil {
			if created != "" {
				os.Remove(created)
			}
			return err
		}
		removeStaleData(dir, base, dataName)
		return nil
	})
	if err != nil {
		restore()
	}
	return err
}

// dataFileName returns the name of the data file of the model file base
// holding data.
func dataFileName(base string, data []byte) string {
	sum := sha256.Sum256(data)
	return base + "." + hex.EncodeToString(sum[:8]) + ".data"
}

// isDataFileOf reports whether name is a data file Save would write for the
// model file base.
func isDataFileOf(name, base string) bool {
	hash, ok := strings.CutPrefix(name, base+".")
	if !ok {
		return false
	}
	hash, ok = strings.CutSuffix(hash, ".data")
	if !ok || len(hash) != 16 {
		return false
	}
	_, err := hex.DecodeString(hash)
	return err == nil && strings.ToLower(hash) == hash
}

// removeStaleData removes the data files of the model file base in dir
// other than keep: the new model does not name them.
func removeStaleData(dir, base, keep string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Type().IsRegular() && e.Name() != keep && isDataFileOf(e.Name(), base) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// sameContent reports whether path is a regular file holding exactly data.
func sameContent(path string, data []byte) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len(data)) {
		return false
	}
	b, err := os.ReadFile(path)
	return err == nil && bytes.Equal(b, data)
}

// placeExternal lays the external tensors out in one data file for the
// model file base, points them at it, and returns its name and bytes (""
// and nil with no external tensor) and a function that puts the tensors
// back where they were. Tensors read from one data file keep their offsets
// when those ranges are free and leave no more of the file unused than they
// use plus a 4 KiB alignment gap each, so that an unedited model's data is
// rewritten byte for byte; others are appended at 4 KiB boundaries.
func (m *Model) placeExternal(base string) (string, []byte, func()) {
	var ts []*Tensor
	m.eachTensor(func(t *Tensor) {
		if t.storage == storeExternal {
			ts = append(ts, t)
		}
	})
	if len(ts) == 0 {
		return "", nil, func() {}
	}
	oneSource := true
	var used int64
	for _, t := range ts {
		used += int64(len(t.raw))
		if t.external.Offset >= 0 && t.external.Location != ts[0].external.Location {
			oneSource = false
		}
	}
	var places []External
	var end int64
	for _, keep := range []bool{oneSource, false} {
		places, end = layout(ts, keep)
		if end-used <= used+4096*int64(len(ts)) {
			break
		}
	}
	data := make([]byte, end)
	for i, t := range ts {
		copy(data[places[i].Offset:], t.raw)
	}
	name := dataFileName(base, data)
	old := make([]*External, len(ts))
	for i, t := range ts {
		old[i] = t.external
		places[i].Location = name
		t.external = &places[i]
	}
	return name, data, func() {
		for i, t := range ts {
			t.external = old[i]
		}
	}
}

// layout places ts in one file, keeping their offsets where free if keep,
// and returns each one's place and the file's size.
func layout(ts []*Tensor, keep bool) ([]External, int64) {
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
	places := make([]External, len(ts))
	var end int64
	for i, t := range ts {
		e := External{Offset: -1, Length: int64(len(t.raw)), entries: t.external.entries}
		if keep && t.external.Offset >= 0 && free(t.external.Offset, t.external.Offset+e.Length) {
			e.Offset = t.external.Offset
			used = append(used, span{e.Offset, e.Offset + e.Length})
			end = max(end, e.Offset+e.Length)
		}
		places[i] = e
	}
	for i := range places {
		if places[i].Offset < 0 {
			places[i].Offset = (end + 4095) &^ 4095
			end = places[i].Offset + places[i].Length
		}
	}
	return places, end
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
		return nil, fmt.Errorf("load %s: %w", path, fileio.Reason(err))
	}
	t, err := DecodeTensor(b)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return t, nil
}

// SaveTensor writes t to path as a TensorProto, atomically.
func SaveTensor(t *Tensor, path string) error { return SaveOptions{}.SaveTensor(t, path) }

// SaveTensor writes t to path as a TensorProto, by the same rule as Save.
func (o SaveOptions) SaveTensor(t *Tensor, path string) error {
	b, err := EncodeTensor(t)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	var opts []fileio.Option
	if o.Force {
		opts = append(opts, fileio.Force())
	}
	if o.NoSync {
		opts = append(opts, fileio.NoSync())
	}
	return fileio.WriteFile(path, b, opts...)
}
