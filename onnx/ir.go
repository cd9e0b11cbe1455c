package onnx

import (
	"github.com/graft-dev/graft/onnx/internal/pb"
)

// A Model is an ONNX model: a graph plus the opsets it uses and metadata.
type Model struct {
	IRVersion       int64
	Opsets          []Opset
	ProducerName    string
	ProducerVersion string
	Domain          string
	ModelVersion    int64
	DocString       string
	Metadata        []Property
	Graph           *Graph

	orig      *pb.ModelProto // training_info, functions and unknown fields, kept for saving
	dataFiles []string       // external data files read, see ExternalDataFiles
}

// An Opset names an operator set and the version the model uses. The default
// domain (ONNX's own operators) is "" (also written "ai.onnx").
type Opset struct {
	Domain  string
	Version int64
}

// A Property is one key/value pair of metadata. Order is kept.
type Property struct {
	Key, Value string
}

// OpsetVersion returns the version the model imports for domain ("" or
// "ai.onnx" for the default domain), or 0 if it imports none.
func (m *Model) OpsetVersion(domain string) int64 {
	if domain == "ai.onnx" {
		domain = ""
	}
	for _, o := range m.Opsets {
		d := o.Domain
		if d == "ai.onnx" {
			d = ""
		}
		if d == domain {
			return o.Version
		}
	}
	return 0
}

// MetadataValue returns the value of metadata key k and whether it is set.
func (m *Model) MetadataValue(k string) (string, bool) {
	for _, p := range m.Metadata {
		if p.Key == k {
			return p.Value, true
		}
	}
	return "", false
}

// SetMetadata sets metadata key k to v, replacing an existing value in place
// or appending a new pair.
func (m *Model) SetMetadata(k, v string) {
	for i := range m.Metadata {
		if m.Metadata[i].Key == k {
			m.Metadata[i].Value = v
			return
		}
	}
	m.Metadata = append(m.Metadata, Property{k, v})
}

// A Graph is a list of nodes connected by values. Nodes reference their
// inputs and outputs as *Value, so renaming a value renames it everywhere.
type Graph struct {
	Name      string
	DocString string
	Nodes     []*Node
	// Inputs are the values the caller feeds. Models from old exporters also
	// list initializers here (as optional inputs that override them).
	Inputs  []*Value
	Outputs []*Value
	// Initializers are the graph's constant values (weights); each has Const set.
	Initializers []*Value
	// ValueInfo lists the intermediate values whose type the file records.
	ValueInfo []*Value
	Metadata  []Property

	parent *Graph // the enclosing graph of a subgraph (an If or Loop body)
	orig   *pb.GraphProto
}

// A Node is one operator application.
type Node struct {
	Name      string
	OpType    string
	Domain    string
	Overload  string
	DocString string
	// Inputs and Outputs are in operator order; nil stands for an optional
	// input or output left out (an empty name in the file).
	Inputs   []*Value
	Outputs  []*Value
	Attrs    []*Attribute
	Metadata []Property

	orig *pb.NodeProto
}

// A Value is a named tensor flowing through a graph: a graph input, a node's
// output, or a constant (initializer) when Const is set.
type Value struct {
	Name      string
	Type      *Type // nil when unknown
	DocString string
	Const     *Tensor

	producer *Node
	graph    *Graph // the graph that defines it; nil if undefined
	origVI   *pb.ValueInfoProto
	// listed holds every ValueInfoProto read for the value (inputs, outputs,
	// value_info, in file order), origVI the last. asRead is set for a value
	// whose listings the IR cannot hold apart: how it encoded when read.
	listed []*pb.ValueInfoProto
	asRead *pb.ValueInfoProto
}

// Producer returns the node whose output v is, or nil for graph inputs,
// constants and undefined values.
func (v *Value) Producer() *Node { return v.producer }

// IsConst reports whether v is an initializer.
func (v *Value) IsConst() bool { return v.Const != nil }

// A Type is a value's type: for tensors, an element type and a shape.
type Type struct {
	Elem DType
	// Shape is nil when the rank is unknown. A scalar has a non-nil empty shape.
	Shape      Shape
	Denotation string

	// other holds sequence, map, optional and sparse types, which graft
	// carries through unchanged.
	other *pb.TypeProto
	orig  *pb.TypeProto
}

// IsTensor reports whether t is a dense tensor type.
func (t *Type) IsTensor() bool { return t.other == nil }

// A Shape lists a tensor's dimensions.
type Shape []Dim

// A Dim is one dimension: a fixed size, a named symbolic size (Param, e.g.
// "batch"), or unknown (neither).
type Dim struct {
	Value      int64 // the size when Known; -1 otherwise
	Param      string
	Denotation string
	orig       *pb.TensorShapeProto_Dimension
}

// Fixed returns a dimension of size n.
func Fixed(n int64) Dim { return Dim{Value: n} }

// Symbolic returns a dimension named name.
func Symbolic(name string) Dim { return Dim{Value: -1, Param: name} }

// UnknownDim returns a dimension of unknown size.
func UnknownDim() Dim { return Dim{Value: -1} }

// Known reports whether d has a fixed size.
func (d Dim) Known() bool { return d.Value >= 0 && d.Param == "" }

// String prints a fixed size, a symbolic name, or "?".
func (d Dim) String() string {
	switch {
	case d.Param != "":
		return d.Param
	case d.Value >= 0:
		return itoa(d.Value)
	}
	return "?"
}

// String prints the shape as [batch,3,224,224].
func (s Shape) String() string {
	if s == nil {
		return "[?...]"
	}
	out := "["
	for i, d := range s {
		if i > 0 {
			out += ","
		}
		out += d.String()
	}
	return out + "]"
}

// Ints returns the sizes, or false if any is not fixed.
func (s Shape) Ints() ([]int64, bool) {
	out := make([]int64, len(s))
	for i, d := range s {
		if !d.Known() {
			return nil, false
		}
		out[i] = d.Value
	}
	return out, s != nil
}

// TensorType returns a tensor type with fixed dimensions.
func TensorType(elem DType, dims ...int64) *Type {
	s := make(Shape, len(dims))
	for i, d := range dims {
		s[i] = Fixed(d)
	}
	return &Type{Elem: elem, Shape: s}
}

// AttrType is the type of an attribute's value; its values are the wire
// values of AttributeProto.AttributeType.
type AttrType int32

// The attribute types graft reads and writes. Sparse tensors and type protos
// are carried through unchanged.
const (
	AttrUndefined AttrType = 0
	AttrFloat     AttrType = 1
	AttrInt       AttrType = 2
	AttrString    AttrType = 3
	AttrTensor    AttrType = 4
	AttrGraph     AttrType = 5
	AttrFloats    AttrType = 6
	AttrInts      AttrType = 7
	AttrStrings   AttrType = 8
	AttrTensors   AttrType = 9
	AttrGraphs    AttrType = 10
)

// An Attribute is a named operator parameter. Only the field matching Type
// is meaningful.
type Attribute struct {
	Name        string
	Type        AttrType
	Float       float32
	Int         int64
	String      []byte
	Tensor      *Tensor
	Graph       *Graph
	Floats      []float32
	Ints        []int64
	Strings     [][]byte
	Tensors     []*Tensor
	Graphs      []*Graph
	RefAttrName string
	DocString   string

	orig *pb.AttributeProto
}

// Attr returns the node's attribute called name, or nil.
func (n *Node) Attr(name string) *Attribute {
	for _, a := range n.Attrs {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// AttrInt returns an int attribute's value, or def if absent.
func (n *Node) AttrInt(name string, def int64) int64 {
	if a := n.Attr(name); a != nil && a.Type == AttrInt {
		return a.Int
	}
	return def
}

// AttrFloat returns a float attribute's value, or def if absent.
func (n *Node) AttrFloat(name string, def float32) float32 {
	if a := n.Attr(name); a != nil && a.Type == AttrFloat {
		return a.Float
	}
	return def
}

// AttrInts returns an ints attribute's value, or def if absent.
func (n *Node) AttrInts(name string, def []int64) []int64 {
	if a := n.Attr(name); a != nil && a.Type == AttrInts {
		return a.Ints
	}
	return def
}

// AttrString returns a string attribute's value, or def if absent.
func (n *Node) AttrString(name string, def string) string {
	if a := n.Attr(name); a != nil && a.Type == AttrString {
		return string(a.String)
	}
	return def
}

// SetAttr replaces the attribute of the same name or appends a.
func (n *Node) SetAttr(a *Attribute) {
	for i, b := range n.Attrs {
		if b.Name == a.Name {
			n.Attrs[i] = a
			return
		}
	}
	n.Attrs = append(n.Attrs, a)
}

// Input returns input i, or nil if the node has fewer inputs or it is omitted.
func (n *Node) Input(i int) *Value {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return nil
}

// String names the node for error messages: its name and op type.
func (n *Node) String() string {
	op := n.OpType
	if q := quote(op); q[1:len(q)-1] != op || op == "" {
		op = q // unprintable characters must not break a one-line error
	}
	if n.Name == "" {
		return "unnamed " + op + " node"
	}
	return op + " node " + quote(n.Name)
}
