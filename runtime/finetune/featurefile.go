package finetune

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

// The features file format is safetensors (the Hugging Face format, read
// by its Python library, or by numpy in a few lines):
//
//	8 bytes      N, the header's length, unsigned little-endian
//	N bytes      the header: a JSON object, padded with spaces
//	the rest     the tensors' bytes, little-endian, one after another
//
// The header names three tensors, each {"dtype", "shape", "data_offsets":
// [begin, end)} with offsets into the rest:
//
//	index      I64 [n]          the examples held: increasing indices into the data set
//	labels     I64 [n]          their labels
//	features   F32|F64 [n, ...] their features, the extractor's output
//
// and "__metadata__", strings all:
//
//	format            "graft.features"
//	version           "1"
//	model_sha256      the model's SHA-256 (finetune.ModelSHA256)
//	split_at          the value the extractor ends in, the head's input
//	preprocessing     JSON: how images were fed (dataset.Preprocessing)
//	data              the data set's name (its path)
//	data_fingerprint  dataset.Fingerprint of the data set
//	examples          the data set's number of examples
//	classes           JSON: the class names, by label
//	batch             the batch size: the block size of the shard split
//	shard             "I/N": which shard of the data set (dataset.Shard); "0/1" all of it
const (
	featuresFormat  = "graft.features"
	featuresVersion = "1"
)

// FeaturesFile is the name of the features file graft features writes
// into its output folder.
const FeaturesFile = "features.safetensors"

// maxFeaturesHeader bounds the header a reader accepts: the class names
// are the only part that grows, and a million classes fit.
const maxFeaturesHeader = 64 << 20

type stTensor struct {
	Dtype   string  `json:"dtype"`
	Shape   []int64 `json:"shape"`
	Offsets []int64 `json:"data_offsets"`
}

// Encode returns f as a features file (see the format above). The bytes
// depend only on f: the same features give the same file.
func (f *Features) Encode() ([]byte, error) {
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	n := len(f.Index)
	classes, _ := json.Marshal(f.Classes)
	pre, _ := json.Marshal(f.Preprocessing)
	meta := map[string]string{
		"format": featuresFormat, "version": featuresVersion,
		"model_sha256": f.ModelSHA256, "split_at": f.SplitAt, "preprocessing": string(pre),
		"data": f.Data, "data_fingerprint": f.DataFingerprint, "examples": strconv.Itoa(f.Examples),
		"classes": string(classes), "batch": strconv.Itoa(f.Block), "shard": f.Shard.String(),
	}
	var body bytes.Buffer
	ints := func(v []int) {
		for _, x := range v {
			binary.Write(&body, binary.LittleEndian, int64(x))
		}
	}
	ints(f.Index)
	ints(f.Labels)
	dtype := "F32"
	switch d := f.Values.Data().(type) {
	case []float32:
		binary.Write(&body, binary.LittleEndian, d)
	case []float64:
		dtype = "F64"
		binary.Write(&body, binary.LittleEndian, d)
	default:
		return nil, fmt.Errorf("features: values of type %v", f.Values.Dtype())
	}
	shape := []int64{}
	for _, s := range f.Values.Shape() {
		shape = append(shape, int64(s))
	}
	header := map[string]any{
		"__metadata__": meta,
		"index":        stTensor{"I64", []int64{int64(n)}, []int64{0, int64(8 * n)}},
		"labels":       stTensor{"I64", []int64{int64(n)}, []int64{int64(8 * n), int64(16 * n)}},
		"features":     stTensor{dtype, shape, []int64{int64(16 * n), int64(body.Len())}},
	}
	h, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	for len(h)%8 != 0 { // the tensors start 8-byte aligned
		h = append(h, ' ')
	}
	out := make([]byte, 8, 8+len(h)+body.Len())
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	out = append(out, h...)
	return append(out, body.Bytes()...), nil
}

// WriteFile writes f as a features file at path, whole or not at all
// (fileio.WriteFile).
func (f *Features) WriteFile(path string, opts ...fileio.Option) error {
	b, err := f.Encode()
	if err != nil {
		return err
	}
	return fileio.WriteFile(path, b, opts...)
}

// ReadFeatures reads a features file: path is the file, or a folder
// holding FeaturesFile. Everything is checked before it is used (sizes
// against the file and graft's memory limit, offsets, indices, labels,
// finite values); an error names the file and what is wrong.
func ReadFeatures(path string) (*Features, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = path + string(os.PathSeparator) + FeaturesFile
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("features %s: %w", path, fileio.Reason(err))
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("features %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("features %s: not a regular file", path)
	}
	f, err := DecodeFeatures(file, st.Size())
	if err != nil {
		return nil, fmt.Errorf("features %s: %w", path, err)
	}
	return f, nil
}

// DecodeFeatures reads a features file of size bytes from r (see
// ReadFeatures).
func DecodeFeatures(r io.Reader, size int64) (*Features, error) {
	var lenBuf [8]byte
	if size < 8 {
		return nil, errors.New("not a features file: shorter than a safetensors header")
	}
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, fmt.Errorf("reading the header length: %w", err)
	}
	hlen := binary.LittleEndian.Uint64(lenBuf[:])
	if hlen > maxFeaturesHeader || int64(hlen) > size-8 {
		return nil, fmt.Errorf("not a features file: a header of %d bytes in a file of %d", hlen, size)
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, fmt.Errorf("reading the header: %w", err)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(hb, &header); err != nil {
		return nil, fmt.Errorf("not a features file: the header is not a JSON object: %w", err)
	}
	var meta map[string]string
	if raw, ok := header["__metadata__"]; !ok {
		return nil, errors.New("not a graft features file: no __metadata__")
	} else if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, fmt.Errorf("__metadata__: %w", err)
	}
	if meta["format"] != featuresFormat {
		return nil, fmt.Errorf("not a graft features file: format %q", meta["format"])
	}
	if meta["version"] != featuresVersion {
		return nil, fmt.Errorf("features format version %q, this graft reads version %s", meta["version"], featuresVersion)
	}
	f := &Features{ModelSHA256: meta["model_sha256"], SplitAt: meta["split_at"], Data: meta["data"], DataFingerprint: meta["data_fingerprint"]}
	var err error
	num := func(key string) int {
		v, e := strconv.Atoi(meta[key])
		if e != nil && err == nil {
			err = fmt.Errorf("__metadata__ %s %q is not a number", key, meta[key])
		}
		return v
	}
	f.Examples, f.Block = num("examples"), num("batch")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(meta["classes"]), &f.Classes); err != nil {
		return nil, fmt.Errorf("__metadata__ classes: %w", err)
	}
	if err := json.Unmarshal([]byte(meta["preprocessing"]), &f.Preprocessing); err != nil {
		return nil, fmt.Errorf("__metadata__ preprocessing: %w", err)
	}
	if f.Shard, err = dataset.ParseShard(meta["shard"]); err != nil {
		return nil, fmt.Errorf("__metadata__: %w", err)
	}
	if len(f.ModelSHA256) != 64 {
		return nil, fmt.Errorf("__metadata__ model_sha256 %q is not a SHA-256", f.ModelSHA256)
	}

	// The tensors: exactly ours, covering the rest of the file.
	body := size - 8 - int64(hlen)
	tensors := map[string]stTensor{}
	for name, raw := range header {
		if name == "__metadata__" {
			continue
		}
		if name != "index" && name != "labels" && name != "features" {
			return nil, fmt.Errorf("unexpected tensor %q (a features file holds index, labels and features)", name)
		}
		var t stTensor
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		elem := map[string]int64{"I64": 8, "F32": 4, "F64": 8}[t.Dtype]
		if elem == 0 || (name != "features" && t.Dtype != "I64") || (name == "features" && t.Dtype == "I64") {
			return nil, fmt.Errorf("tensor %s: dtype %q", name, t.Dtype)
		}
		count := int64(1)
		for _, s := range t.Shape {
			if s < 1 || count > body/s {
				return nil, fmt.Errorf("tensor %s: shape %v does not fit in the file's %d bytes", name, t.Shape, body)
			}
			count *= s
		}
		if len(t.Offsets) != 2 || t.Offsets[0] < 0 || t.Offsets[1] < t.Offsets[0] || t.Offsets[1] > body || t.Offsets[1]-t.Offsets[0] != count*elem {
			return nil, fmt.Errorf("tensor %s: data offsets %v for %d bytes of shape %v in %d bytes", name, t.Offsets, count*elem, t.Shape, body)
		}
		tensors[name] = t
	}
	for _, name := range []string{"index", "labels", "features"} {
		if _, ok := tensors[name]; !ok {
			return nil, fmt.Errorf("no tensor %s", name)
		}
	}
	idx, lab, ft := tensors["index"], tensors["labels"], tensors["features"]
	if len(idx.Shape) != 1 || len(lab.Shape) != 1 || len(ft.Shape) < 2 || idx.Shape[0] != lab.Shape[0] || ft.Shape[0] != idx.Shape[0] {
		return nil, fmt.Errorf("shapes: index %v, labels %v, features %v; want [n], [n] and [n, ...]", idx.Shape, lab.Shape, ft.Shape)
	}
	order := []stTensor{idx, lab, ft}
	sort.Slice(order, func(i, j int) bool { return order[i].Offsets[0] < order[j].Offsets[0] })
	at := int64(0)
	for _, t := range order {
		if t.Offsets[0] != at {
			return nil, fmt.Errorf("the tensors' bytes leave a gap or overlap at byte %d", at)
		}
		at = t.Offsets[1]
	}
	if at != body {
		return nil, fmt.Errorf("the tensors take %d bytes, the file holds %d after the header", at, body)
	}
	if err := memlimit.Check(fmt.Sprintf("features of shape %v", ft.Shape), memlimit.Mul(2, body)); err != nil {
		return nil, err
	}
	data := make([]byte, body)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("reading the tensors: %w", err)
	}
	ints := func(t stTensor) []int {
		out := make([]int, t.Shape[0])
		for i := range out {
			out[i] = int(int64(binary.LittleEndian.Uint64(data[t.Offsets[0]+8*int64(i):])))
		}
		return out
	}
	f.Index, f.Labels = ints(idx), ints(lab)
	shape := make([]int, len(ft.Shape))
	for i, s := range ft.Shape {
		shape[i] = int(s)
	}
	raw := data[ft.Offsets[0]:ft.Offsets[1]]
	if ft.Dtype == "F32" {
		v := make([]float32, len(raw)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			if math.IsNaN(float64(v[i])) || math.IsInf(float64(v[i]), 0) {
				return nil, nonFinite(i, shape)
			}
		}
		f.Values = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
	} else {
		v := make([]float64, len(raw)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
			if math.IsNaN(v[i]) || math.IsInf(v[i], 0) {
				return nil, nonFinite(i, shape)
			}
		}
		f.Values = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	return f, nil
}

func nonFinite(i int, shape []int) error {
	size := 1
	for _, s := range shape[1:] {
		size *= s
	}
	return fmt.Errorf("the features of row %d are not finite (element %d)", i/size, i%size)
}
