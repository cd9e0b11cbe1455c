package finetune

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/internal/safetensors"
	"github.com/graft-dev/graft/runtime/dataset"
	"gorgonia.org/tensor"
)

// The features file format is safetensors (the Hugging Face format, read
// by its Python library, or by numpy in a few lines; internal/safetensors):
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
//	model_sha256      the model's SHA-256 (onnx.SHA256)
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

// Encode returns f as a features file (see the format above). The bytes
// depend only on f: the same features give the same file.
func (f *Features) Encode() ([]byte, error) {
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("features: %w", err)
	}
	classes, _ := json.Marshal(f.Classes)
	pre, _ := json.Marshal(f.Preprocessing)
	file := &safetensors.File{Metadata: map[string]string{
		"format": featuresFormat, "version": featuresVersion,
		"model_sha256": f.ModelSHA256, "split_at": f.SplitAt, "preprocessing": string(pre),
		"data": f.Data, "data_fingerprint": f.DataFingerprint, "examples": strconv.Itoa(f.Examples),
		"classes": string(classes), "batch": strconv.Itoa(f.Block), "shard": f.Shard.String(),
	}}
	ints := func(v []int) []byte {
		b := make([]byte, 0, 8*len(v))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint64(b, uint64(int64(x)))
		}
		return b
	}
	n := int64(len(f.Index))
	var values []byte
	dtype := "F32"
	switch d := f.Values.Data().(type) {
	case []float32:
		for _, v := range d {
			values = binary.LittleEndian.AppendUint32(values, math.Float32bits(v))
		}
	case []float64:
		dtype = "F64"
		for _, v := range d {
			values = binary.LittleEndian.AppendUint64(values, math.Float64bits(v))
		}
	default:
		return nil, fmt.Errorf("features: values of type %v", f.Values.Dtype())
	}
	var shape []int64
	for _, s := range f.Values.Shape() {
		shape = append(shape, int64(s))
	}
	file.Tensors = []safetensors.Tensor{
		{Name: "index", Dtype: "I64", Shape: []int64{n}, Data: ints(f.Index)},
		{Name: "labels", Dtype: "I64", Shape: []int64{n}, Data: ints(f.Labels)},
		{Name: "features", Dtype: dtype, Shape: shape, Data: values},
	}
	return safetensors.Encode(file)
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
	file, err := safetensors.Decode(r, size)
	if err != nil {
		return nil, err
	}
	meta := file.Metadata
	if meta["format"] != featuresFormat {
		return nil, fmt.Errorf("not a graft features file: format %q", meta["format"])
	}
	if meta["version"] != featuresVersion {
		return nil, fmt.Errorf("features format version %q, this graft reads version %s", meta["version"], featuresVersion)
	}
	f := &Features{ModelSHA256: meta["model_sha256"], SplitAt: meta["split_at"], Data: meta["data"], DataFingerprint: meta["data_fingerprint"]}
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

	// The tensors: exactly ours.
	for _, t := range file.Tensors {
		if t.Name != "index" && t.Name != "labels" && t.Name != "features" {
			return nil, fmt.Errorf("unexpected tensor %q (a features file holds index, labels and features)", t.Name)
		}
	}
	idx, lab, ft := file.Tensor("index"), file.Tensor("labels"), file.Tensor("features")
	switch {
	case idx == nil || lab == nil || ft == nil:
		return nil, errors.New("a features file holds the tensors index, labels and features")
	case idx.Dtype != "I64" || lab.Dtype != "I64" || (ft.Dtype != "F32" && ft.Dtype != "F64"):
		return nil, fmt.Errorf("dtypes: index %s, labels %s, features %s; want I64, I64 and F32 or F64", idx.Dtype, lab.Dtype, ft.Dtype)
	case len(idx.Shape) != 1 || len(lab.Shape) != 1 || len(ft.Shape) < 2 || idx.Shape[0] != lab.Shape[0] || ft.Shape[0] != idx.Shape[0] || idx.Shape[0] < 1:
		return nil, fmt.Errorf("shapes: index %v, labels %v, features %v; want [n], [n] and [n, ...], n at least 1", idx.Shape, lab.Shape, ft.Shape)
	}
	shape := make([]int, len(ft.Shape))
	for i, s := range ft.Shape {
		if s < 1 {
			return nil, fmt.Errorf("features of shape %v", ft.Shape)
		}
		shape[i] = int(s)
	}
	ints := func(t *safetensors.Tensor) []int {
		out := make([]int, t.Shape[0])
		for i := range out {
			out[i] = int(int64(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
		return out
	}
	f.Index, f.Labels = ints(idx), ints(lab)
	raw := ft.Data
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
