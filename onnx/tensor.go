package onnx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/graft-dev/graft/onnx/internal/pb"
)

// A Tensor is a constant: an initializer, a Constant node's value or a tensor
// attribute. Its data is held as little-endian bytes whatever field of the file
// it came from, and goes back to that same field when saved.
type Tensor struct {
	Name      string
	DType     DType
	Dims      []int64
	DocString string

	raw      []byte   // element data, little-endian (all types but String)
	strs     [][]byte // String elements
	storage  storage
	external *External
	orig     *pb.TensorProto // fields graft does not model, kept for saving
}

// storage says which field of TensorProto holds the data in the file.
type storage uint8

const (
	storeRaw      storage = iota // raw_data
	storeTyped                   // float_data, int32_data, int64_data, ...
	storeExternal                // a separate file, see External
)

// External says where a tensor's data lives outside the model file.
type External struct {
	Location string // file name relative to the model's folder
	Offset   int64
	Length   int64
	entries  []*pb.StringStringEntryProto // as read, to keep key order and extra keys
}

// NewTensor returns a tensor of the given type and shape holding raw, the
// elements' little-endian bytes. It fails if raw's length does not fit the
// shape.
func NewTensor(name string, dt DType, dims []int64, raw []byte) (*Tensor, error) {
	t := &Tensor{Name: name, DType: dt, Dims: append([]int64(nil), dims...), raw: raw}
	n, err := t.checkShape()
	if err != nil {
		return nil, err
	}
	if dt == String {
		return nil, fmt.Errorf("tensor %q: NewTensor cannot hold strings", name)
	}
	if want := dt.rawSize(n); int64(len(raw)) != want {
		return nil, fmt.Errorf("tensor %q: %s%v needs %d bytes, got %d", name, dt, dims, want, len(raw))
	}
	return t, nil
}

// FromFloat32 returns a float32 tensor. It fails if len(v) does not fit dims.
func FromFloat32(name string, dims []int64, v []float32) (*Tensor, error) {
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
	}
	return NewTensor(name, Float, dims, raw)
}

// FromInt64 returns an int64 tensor. It fails if len(v) does not fit dims.
func FromInt64(name string, dims []int64, v []int64) (*Tensor, error) {
	raw := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
	}
	return NewTensor(name, Int64, dims, raw)
}

// NumElements is the product of the dimensions (1 for a scalar).
func (t *Tensor) NumElements() int64 {
	n, _ := numElements(t.Dims)
	return n
}

// Bytes is the size of the tensor's data in bytes.
func (t *Tensor) Bytes() int64 {
	if t.DType == String {
		var n int64
		for _, s := range t.strs {
			n += int64(len(s))
		}
		return n
	}
	return int64(len(t.raw))
}

// Raw returns the little-endian element bytes. The slice is the tensor's own:
// do not modify it.
func (t *Tensor) Raw() []byte { return t.raw }

// SetRaw replaces the tensor's elements with raw, their little-endian bytes,
// keeping the rest: name, type, shape, the field or file the data is stored
// in, doc string, metadata and fields graft does not know. It fails if raw's
// length does not fit the type and shape.
func (t *Tensor) SetRaw(raw []byte) error {
	n, err := t.checkShape()
	if err != nil {
		return err
	}
	if t.DType == String {
		return fmt.Errorf("tensor %q: SetRaw cannot hold strings", t.Name)
	}
	if want := t.DType.rawSize(n); int64(len(raw)) != want {
		return fmt.Errorf("tensor %q: %s%v needs %d bytes, got %d", t.Name, t.DType, t.Dims, want, len(raw))
	}
	t.dropOrigRaw()
	t.raw = raw
	return nil
}

// dropOrigRaw lets go of the raw_data bytes the tensor was decoded from,
// once its own bytes are others: encoding writes raw_data from t.raw, so
// the originals would only be kept alive. An empty field still says the
// data was stored raw.
func (t *Tensor) dropOrigRaw() {
	if t.orig != nil && t.orig.RawData != nil {
		t.orig.RawData = []byte{}
	}
}

// External returns where the tensor's data was stored outside the model file,
// or nil if it is stored inside.
func (t *Tensor) External() *External { return t.external }

// Float32s returns a copy of the elements of a float32 tensor.
func (t *Tensor) Float32s() ([]float32, error) {
	if t.DType != Float {
		return nil, fmt.Errorf("tensor %q is %s, not float32", t.Name, t.DType)
	}
	v := make([]float32, len(t.raw)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.raw[4*i:]))
	}
	return v, nil
}

// Float64s returns the elements of a float32 or float64 tensor as float64.
func (t *Tensor) Float64s() ([]float64, error) {
	switch t.DType {
	case Float:
		f, _ := t.Float32s()
		v := make([]float64, len(f))
		for i, x := range f {
			v[i] = float64(x)
		}
		return v, nil
	case Double:
		v := make([]float64, len(t.raw)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.raw[8*i:]))
		}
		return v, nil
	}
	return nil, fmt.Errorf("tensor %q is %s, not a float type", t.Name, t.DType)
}

// Int64s returns the elements of an integer or bool tensor as int64.
func (t *Tensor) Int64s() ([]int64, error) {
	switch t.DType {
	case Int64, Int32, Uint32, Int16, Uint16, Int8, Uint8, Bool, Uint64:
	default:
		return nil, fmt.Errorf("tensor %q is %s, not an integer type", t.Name, t.DType)
	}
	// Count from the data, not Dims, so a tensor whose Dims were edited
	// cannot index past it.
	v := make([]int64, len(t.raw)/(t.DType.bits()/8))
	le := binary.LittleEndian
	for i := range v {
		switch t.DType {
		case Int64:
			v[i] = int64(le.Uint64(t.raw[8*i:]))
		case Int32:
			v[i] = int64(int32(le.Uint32(t.raw[4*i:])))
		case Uint32:
			v[i] = int64(le.Uint32(t.raw[4*i:]))
		case Int16:
			v[i] = int64(int16(le.Uint16(t.raw[2*i:])))
		case Uint16:
			v[i] = int64(le.Uint16(t.raw[2*i:]))
		case Int8:
			v[i] = int64(int8(t.raw[i]))
		case Uint8, Bool:
			v[i] = int64(t.raw[i])
		case Uint64:
			v[i] = int64(le.Uint64(t.raw[8*i:]))
		}
	}
	return v, nil
}

// Strings returns the elements of a string tensor.
func (t *Tensor) Strings() ([][]byte, error) {
	if t.DType != String {
		return nil, fmt.Errorf("tensor %q is %s, not string", t.Name, t.DType)
	}
	return t.strs, nil
}

// numElements multiplies dims, failing on a negative dimension or overflow.
func numElements(dims []int64) (int64, error) {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d", d)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("dimensions %v overflow int64", dims)
		}
		n *= d
	}
	return n, nil
}

// maxTensorBytes bounds one external tensor's data, read into memory whole.
const maxTensorBytes = 1 << 36

func (t *Tensor) checkShape() (int64, error) {
	if !t.DType.Known() {
		return 0, fmt.Errorf("tensor %q: unknown data type %d", t.Name, int32(t.DType))
	}
	n, err := numElements(t.Dims)
	if err != nil {
		return 0, fmt.Errorf("tensor %q: %v", t.Name, err)
	}
	if t.DType != String && n > math.MaxInt64/16 {
		return 0, fmt.Errorf("tensor %q: %s%v has too many elements to address", t.Name, t.DType, t.Dims)
	}
	return n, nil
}

// decodeTensor converts p, checking the data against the shape before
// converting anything, so a tensor that claims 10^12 elements fails on the
// bytes actually present. External data is not read here (see readExternal).
func decodeTensor(p *pb.TensorProto) (*Tensor, error) {
	t := &Tensor{
		Name:      p.GetName(),
		DType:     DType(p.GetDataType()),
		Dims:      p.GetDims(),
		DocString: p.GetDocString(),
		orig:      p,
	}
	n, err := t.checkShape()
	if err != nil {
		return nil, err
	}
	if p.GetDataLocation() == pb.TensorProto_EXTERNAL {
		t.storage = storeExternal
		t.external, err = parseExternal(t.Name, p.GetExternalData())
		if err != nil {
			return nil, err
		}
		if t.DType == String {
			return nil, fmt.Errorf("tensor %q: string tensors cannot be stored externally", t.Name)
		}
		want := t.DType.rawSize(n)
		if t.external.Length >= 0 && t.external.Length != want {
			return nil, fmt.Errorf("tensor %q: %s%v needs %d bytes but external length is %d", t.Name, t.DType, t.Dims, want, t.external.Length)
		}
		return t, nil
	}
	if p.RawData != nil {
		t.storage = storeRaw
		if t.DType == String {
			return nil, fmt.Errorf("tensor %q: string tensors cannot use raw_data", t.Name)
		}
		if want := t.DType.rawSize(n); int64(len(p.RawData)) != want {
			return nil, fmt.Errorf("tensor %q: %s%v needs %d bytes but raw_data has %d", t.Name, t.DType, t.Dims, want, len(p.RawData))
		}
		t.raw = p.RawData
		return t, nil
	}
	t.storage = storeTyped
	t.raw, t.strs, err = typedData(p, t.DType, n)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %s%v %w", t.Name, t.DType, t.Dims, err)
	}
	return t, nil
}

// typedData converts the typed field that holds a tensor of type dt with n
// elements (float_data, int32_data, ...) to little-endian bytes, or returns
// the string elements.
func typedData(p *pb.TensorProto, dt DType, n int64) (raw []byte, strs [][]byte, err error) {
	have := func(field string, got, want int64) error {
		if got != want {
			return fmt.Errorf("has %d elements but %s holds %d", n, field, got)
		}
		return nil
	}
	le := binary.LittleEndian
	switch dt {
	case Float, Complex64:
		per := map[DType]int64{Float: 1, Complex64: 2}[dt]
		if err := have("float_data", int64(len(p.FloatData)), n*per); err != nil {
			return nil, nil, err
		}
		raw = make([]byte, 4*len(p.FloatData))
		for i, x := range p.FloatData {
			le.PutUint32(raw[4*i:], math.Float32bits(x))
		}
	case Double, Complex128:
		per := map[DType]int64{Double: 1, Complex128: 2}[dt]
		if err := have("double_data", int64(len(p.DoubleData)), n*per); err != nil {
			return nil, nil, err
		}
		raw = make([]byte, 8*len(p.DoubleData))
		for i, x := range p.DoubleData {
			le.PutUint64(raw[8*i:], math.Float64bits(x))
		}
	case Int64:
		if err := have("int64_data", int64(len(p.Int64Data)), n); err != nil {
			return nil, nil, err
		}
		raw = make([]byte, 8*len(p.Int64Data))
		for i, x := range p.Int64Data {
			le.PutUint64(raw[8*i:], uint64(x))
		}
	case Uint32, Uint64:
		if err := have("uint64_data", int64(len(p.Uint64Data)), n); err != nil {
			return nil, nil, err
		}
		size := dt.bits() / 8
		raw = make([]byte, size*len(p.Uint64Data))
		for i, x := range p.Uint64Data {
			if size == 4 {
				le.PutUint32(raw[4*i:], uint32(x))
			} else {
				le.PutUint64(raw[8*i:], x)
			}
		}
	case Int32, Int16, Uint16, Int8, Uint8, Bool, Float16, BFloat16,
		Float8E4M3FN, Float8E4M3FNUZ, Float8E5M2, Float8E5M2FNUZ:
		// ONNX stores each of these in one int32_data entry per element.
		if err := have("int32_data", int64(len(p.Int32Data)), n); err != nil {
			return nil, nil, err
		}
		size := dt.bits() / 8
		raw = make([]byte, size*len(p.Int32Data))
		for i, x := range p.Int32Data {
			switch size {
			case 1:
				raw[i] = byte(x)
			case 2:
				le.PutUint16(raw[2*i:], uint16(x))
			case 4:
				le.PutUint32(raw[4*i:], uint32(x))
			}
		}
	case String:
		if err := have("string_data", int64(len(p.StringData)), n); err != nil {
			return nil, nil, err
		}
		strs = p.StringData
	default:
		if n != 0 {
			return nil, nil, errors.New("data must be in raw_data")
		}
	}
	return raw, strs, nil
}

// encodeTensor converts t back to a TensorProto. External data is described
// by t.external, whose offset and length the caller has already set.
func encodeTensor(t *Tensor) *pb.TensorProto {
	o := t.orig
	if o == nil {
		o = &pb.TensorProto{}
	}
	p := cloneTensorShell(o)
	p.Dims = t.Dims
	p.DataType = optInt32(o.DataType, int32(t.DType))
	p.Name = optString(o.Name, t.Name)
	p.DocString = optString(o.DocString, t.DocString)
	// While a tensor keeps the type and storage it was read with, the data
	// fields graft does not read stay as they were (ONNX ignores them too),
	// and typed data the bytes still match is written as read: int32_data
	// may hold values outside the element type's range, which graft's bytes
	// cannot.
	kept := t.orig != nil && t.DType == DType(o.GetDataType()) && t.storage == readStorage(o)
	if kept {
		p.FloatData, p.Int32Data, p.StringData, p.Int64Data = o.FloatData, o.Int32Data, o.StringData, o.Int64Data
		p.DoubleData, p.Uint64Data, p.RawData = o.DoubleData, o.Uint64Data, o.RawData
		p.ExternalData, p.DataLocation = o.ExternalData, o.DataLocation
		if t.storage == storeTyped {
			raw, strs, err := typedData(o, t.DType, t.NumElements())
			if err == nil && bytes.Equal(raw, t.raw) && sameStrings(strs, t.strs) {
				return p
			}
		}
	}
	switch t.storage {
	case storeExternal:
		loc := pb.TensorProto_EXTERNAL
		p.DataLocation = &loc
		p.ExternalData = t.external.encode()
	case storeRaw:
		p.RawData = t.raw
		if p.RawData == nil {
			p.RawData = []byte{}
		}
	case storeTyped:
		le := binary.LittleEndian
		switch t.DType {
		case Float, Complex64:
			p.FloatData = make([]float32, len(t.raw)/4)
			for i := range p.FloatData {
				p.FloatData[i] = math.Float32frombits(le.Uint32(t.raw[4*i:]))
			}
		case Double, Complex128:
			p.DoubleData = make([]float64, len(t.raw)/8)
			for i := range p.DoubleData {
				p.DoubleData[i] = math.Float64frombits(le.Uint64(t.raw[8*i:]))
			}
		case Int64:
			p.Int64Data = make([]int64, len(t.raw)/8)
			for i := range p.Int64Data {
				p.Int64Data[i] = int64(le.Uint64(t.raw[8*i:]))
			}
		case Uint32:
			p.Uint64Data = make([]uint64, len(t.raw)/4)
			for i := range p.Uint64Data {
				p.Uint64Data[i] = uint64(le.Uint32(t.raw[4*i:]))
			}
		case Uint64:
			p.Uint64Data = make([]uint64, len(t.raw)/8)
			for i := range p.Uint64Data {
				p.Uint64Data[i] = le.Uint64(t.raw[8*i:])
			}
		case String:
			p.StringData = t.strs
		default:
			size := t.DType.bits() / 8
			if size == 0 {
				// 4-bit types are read from typed fields only when empty.
				break
			}
			p.Int32Data = make([]int32, len(t.raw)/size)
			for i := range p.Int32Data {
				switch {
				case size == 1 && t.DType == Int8:
					p.Int32Data[i] = int32(int8(t.raw[i]))
				case size == 1:
					p.Int32Data[i] = int32(t.raw[i])
				case t.DType == Int16:
					p.Int32Data[i] = int32(int16(le.Uint16(t.raw[2*i:])))
				case size == 2:
					p.Int32Data[i] = int32(le.Uint16(t.raw[2*i:]))
				default:
					p.Int32Data[i] = int32(le.Uint32(t.raw[4*i:]))
				}
			}
		}
	}
	return p
}

// readStorage is the field a TensorProto holds its data in.
func readStorage(p *pb.TensorProto) storage {
	switch {
	case p.GetDataLocation() == pb.TensorProto_EXTERNAL:
		return storeExternal
	case p.RawData != nil:
		return storeRaw
	}
	return storeTyped
}

func sameStrings(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// cloneTensorShell copies the fields of p that graft does not model (segment,
// metadata, unknown fields), leaving out the data fields that encodeTensor
// rewrites.
func cloneTensorShell(p *pb.TensorProto) *pb.TensorProto {
	q := &pb.TensorProto{
		Segment:       p.Segment,
		MetadataProps: p.MetadataProps,
	}
	q.ProtoReflect().SetUnknown(p.ProtoReflect().GetUnknown())
	return q
}
