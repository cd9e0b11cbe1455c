package onnx

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/graft-dev/graft/onnx/internal/pb"
	"google.golang.org/protobuf/proto"
)

// decodeModel converts the protobuf model to the IR. It fails on what the IR
// cannot represent (no graph, a value defined twice, a malformed tensor);
// other defects are left for Validate, which names them all.
func decodeModel(p *pb.ModelProto) (*Model, error) {
	m := &Model{
		IRVersion:       p.GetIrVersion(),
		ProducerName:    p.GetProducerName(),
		ProducerVersion: p.GetProducerVersion(),
		Domain:          p.GetDomain(),
		ModelVersion:    p.GetModelVersion(),
		DocString:       p.GetDocString(),
		Metadata:        decodeProps(p.GetMetadataProps()),
		orig:            p,
	}
	for _, o := range p.GetOpsetImport() {
		m.Opsets = append(m.Opsets, Opset{Domain: o.GetDomain(), Version: o.GetVersion()})
	}
	if p.Graph == nil {
		return nil, fmt.Errorf("%w: the model has no graph (truncated file?)", ErrNotONNX)
	}
	g, err := decodeGraph(p.Graph, nil)
	if err != nil {
		return nil, err
	}
	m.Graph = g
	return m, nil
}

func decodeProps(ps []*pb.StringStringEntryProto) []Property {
	var out []Property
	for _, kv := range ps {
		out = append(out, Property{kv.GetKey(), kv.GetValue()})
	}
	return out
}

// scope resolves value names in a graph and then in its enclosing graphs.
type scope struct {
	graph  *Graph
	defs   map[string]*Value
	parent *scope
	depth  int // 0 for the main graph, 1 for an If or Loop body in it, ...
}

// MaxNesting is how deeply graft lets subgraphs (If, Loop and Scan bodies)
// nest inside each other. ONNX's own tools stop near 32 levels (C++
// protobuf's recursion limit of 100 messages); the checks on a graph cost
// more the deeper it nests, so deeper models are refused when read.
const MaxNesting = 64

// A nestingError reports subgraphs nested beyond MaxNesting. It names the
// first graph too deep and is passed up unchanged: wrapping it with every
// enclosing graph and node would make a message as long as the nesting.
type nestingError struct{ graph string }

func (e *nestingError) Error() string {
	return fmt.Sprintf("subgraph %s is nested %d deep (If, Loop or Scan bodies within each other); graft reads at most %d levels",
		quote(e.graph), MaxNesting+1, MaxNesting)
}

func (s *scope) lookup(name string) *Value {
	for ; s != nil; s = s.parent {
		if v, ok := s.defs[name]; ok {
			return v
		}
	}
	return nil
}

// graphsDecoded counts decodeGraph calls, so tests can check that a deeply
// nested model is refused after a bounded amount of work.
var graphsDecoded atomic.Int64

func decodeGraph(p *pb.GraphProto, parent *scope) (*Graph, error) {
	graphsDecoded.Add(1)
	g := &Graph{
		Name:      p.GetName(),
		DocString: p.GetDocString(),
		Metadata:  decodeProps(p.GetMetadataProps()),
		orig:      p,
	}
	sc := &scope{graph: g, defs: map[string]*Value{}, parent: parent}
	if parent != nil {
		g.parent = parent.graph
		sc.depth = parent.depth + 1
		if sc.depth > MaxNesting {
			return nil, &nestingError{graph: g.Name}
		}
	}
	where := "graph " + quote(g.Name)

	for _, tp := range p.GetInitializer() {
		t, err := decodeTensor(tp)
		if err != nil {
			return nil, fmt.Errorf("%s: initializer: %w", where, err)
		}
		if sc.defs[t.Name] != nil {
			return nil, fmt.Errorf("%s: initializer %q is defined twice", where, t.Name)
		}
		v := &Value{Name: t.Name, Const: t, graph: g}
		v.Type = TensorType(t.DType, t.Dims...)
		sc.defs[t.Name] = v
		g.Initializers = append(g.Initializers, v)
	}
	seenInput := map[string]bool{}
	for _, vi := range p.GetInput() {
		name := vi.GetName()
		if seenInput[name] {
			return nil, fmt.Errorf("%s: input %q is listed twice", where, name)
		}
		seenInput[name] = true
		v := sc.defs[name] // an initializer also listed as an input
		if v == nil {
			v = &Value{Name: name, graph: g}
			sc.defs[name] = v
		}
		applyValueInfo(v, vi)
		g.Inputs = append(g.Inputs, v)
	}
	// Outputs first, so that inputs may name values produced further down
	// (an unsorted graph, sorted later) and a cycle is visible to Validate.
	for _, np := range p.GetNode() {
		n := &Node{
			Name:      np.GetName(),
			OpType:    np.GetOpType(),
			Domain:    np.GetDomain(),
			Overload:  np.GetOverload(),
			DocString: np.GetDocString(),
			Metadata:  decodeProps(np.GetMetadataProps()),
			orig:      np,
		}
		if strings.ContainsFunc(n.OpType, func(r rune) bool { return !unicode.IsPrint(r) }) {
			// Errors name nodes by op type; keep them on one line.
			return nil, fmt.Errorf("%s: node %q: op_type %q is not an operator name", where, n.Name, n.OpType)
		}
		for _, name := range np.GetOutput() {
			if name == "" {
				n.Outputs = append(n.Outputs, nil)
				continue
			}
			if old := sc.defs[name]; old != nil {
				what := "a graph input"
				switch {
				case old.producer != nil:
					what = "the output of " + old.producer.String()
				case old.Const != nil:
					what = "an initializer"
				}
				return nil, fmt.Errorf("%s: %s: output %q is already defined as %s (duplicate name)", where, n, name, what)
			}
			v := &Value{Name: name, producer: n, graph: g}
			sc.defs[name] = v
			n.Outputs = append(n.Outputs, v)
		}
		g.Nodes = append(g.Nodes, n)
	}
	undefined := func(name string) *Value {
		if v := sc.lookup(name); v != nil {
			return v
		}
		// Keep the reference so Validate can report it; graph stays nil.
		v := &Value{Name: name}
		sc.defs[name] = v
		return v
	}
	for i, np := range p.GetNode() {
		n := g.Nodes[i]
		for _, name := range np.GetInput() {
			if name == "" {
				n.Inputs = append(n.Inputs, nil)
				continue
			}
			n.Inputs = append(n.Inputs, undefined(name))
		}
		for _, ap := range np.GetAttribute() {
			a, err := decodeAttr(ap, sc)
			var deep *nestingError
			if errors.As(err, &deep) {
				return nil, err
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %s: attribute %q: %w", where, n, ap.GetName(), err)
			}
			n.Attrs = append(n.Attrs, a)
		}
	}
	for _, vi := range p.GetOutput() {
		v := undefined(vi.GetName())
		applyValueInfo(v, vi)
		g.Outputs = append(g.Outputs, v)
	}
	for _, vi := range p.GetValueInfo() {
		v := undefined(vi.GetName())
		applyValueInfo(v, vi)
		g.ValueInfo = append(g.ValueInfo, v)
	}
	for _, list := range [][]*Value{g.Inputs, g.Outputs, g.ValueInfo} {
		for _, v := range list {
			if v.asRead == nil && (len(v.listed) > 1 || v.listed[0].Type == nil && v.Type != nil) {
				v.asRead = encodeValueInfo(v, v.origVI)
			}
		}
	}
	return g, nil
}

// applyValueInfo sets the type and doc string of v from one of its
// listings; a value listed more than once takes the last doc string and
// type given.
func applyValueInfo(v *Value, vi *pb.ValueInfoProto) {
	v.origVI = vi
	v.listed = append(v.listed, vi)
	v.DocString = vi.GetDocString()
	if vi.Type != nil {
		v.Type = decodeType(vi.Type)
	}
}

func decodeType(p *pb.TypeProto) *Type {
	t := &Type{Denotation: p.GetDenotation(), orig: p}
	// Sequence, map, optional and sparse types, and a type that sets more
	// than one kind (ONNX's oneof, a plain field in graft's schema), are
	// carried through unchanged.
	tt := p.TensorType
	if tt == nil || p.SequenceType != nil || p.MapType != nil || p.SparseTensorType != nil || p.OptionalType != nil {
		t.other = p
		return t
	}
	t.Elem = DType(tt.GetElemType())
	if tt.Shape != nil {
		t.Shape = Shape{}
		for _, d := range tt.Shape.GetDim() {
			dim := decodeDim(d)
			dim.orig = d
			t.Shape = append(t.Shape, dim)
		}
	}
	return t
}

// decodeDim reads a dimension: a size, a name, or unknown (neither, -1 or
// an empty name). A name wins over a size when a file sets both.
func decodeDim(p *pb.TensorShapeProto_Dimension) Dim {
	d := Dim{Value: -1, Denotation: p.GetDenotation()}
	switch {
	case p.GetDimParam() != "":
		d.Param = p.GetDimParam()
	case p.DimValue != nil:
		d.Value = p.GetDimValue()
	}
	return d
}

func decodeAttr(p *pb.AttributeProto, sc *scope) (*Attribute, error) {
	a := &Attribute{
		Name:        p.GetName(),
		Float:       p.GetF(),
		Int:         p.GetI(),
		String:      p.GetS(),
		Floats:      p.GetFloats(),
		Ints:        p.GetInts(),
		Strings:     p.GetStrings(),
		RefAttrName: p.GetRefAttrName(),
		DocString:   p.GetDocString(),
		orig:        p,
	}
	a.Type = readType(p)
	if p.T != nil {
		t, err := decodeTensor(p.T)
		if err != nil {
			return nil, err
		}
		a.Tensor = t
	}
	for _, tp := range p.GetTensors() {
		t, err := decodeTensor(tp)
		if err != nil {
			return nil, err
		}
		a.Tensors = append(a.Tensors, t)
	}
	if p.G != nil {
		g, err := decodeGraph(p.G, sc)
		if err != nil {
			return nil, err
		}
		a.Graph = g
	}
	for _, gp := range p.GetGraphs() {
		g, err := decodeGraph(gp, sc)
		if err != nil {
			return nil, err
		}
		a.Graphs = append(a.Graphs, g)
	}
	return a, nil
}

// readType is the type of an attribute as read: its type field, or when
// that is absent or UNDEFINED, the type its value fields imply.
func readType(p *pb.AttributeProto) AttrType {
	if t := AttrType(p.GetType()); t != AttrUndefined {
		return t
	}
	return guessAttrType(p)
}

// guessAttrType reads the type of an attribute from IR version 1, which had no
// type field, from whichever value field is set.
func guessAttrType(p *pb.AttributeProto) AttrType {
	switch {
	case p.F != nil:
		return AttrFloat
	case p.I != nil:
		return AttrInt
	case p.S != nil:
		return AttrString
	case p.T != nil:
		return AttrTensor
	case p.G != nil:
		return AttrGraph
	case len(p.Floats) > 0:
		return AttrFloats
	case len(p.Ints) > 0:
		return AttrInts
	case len(p.Strings) > 0:
		return AttrStrings
	case len(p.Tensors) > 0:
		return AttrTensors
	case len(p.Graphs) > 0:
		return AttrGraphs
	}
	return AttrUndefined
}

// encodeModel converts the IR back to protobuf. Fields graft does not model
// come from the decoded original, so an unedited model encodes to the bytes
// it was read from.
func encodeModel(m *Model) *pb.ModelProto {
	o := m.orig
	if o == nil {
		o = &pb.ModelProto{}
	}
	p := &pb.ModelProto{
		IrVersion:       optInt64(o.IrVersion, m.IRVersion),
		ProducerName:    optString(o.ProducerName, m.ProducerName),
		ProducerVersion: optString(o.ProducerVersion, m.ProducerVersion),
		Domain:          optString(o.Domain, m.Domain),
		ModelVersion:    optInt64(o.ModelVersion, m.ModelVersion),
		DocString:       optString(o.DocString, m.DocString),
		MetadataProps:   encodeProps(o.MetadataProps, m.Metadata),
		TrainingInfo:    o.TrainingInfo,
		Functions:       o.Functions,
	}
	keepUnknown(p, o)
	for i, op := range m.Opsets {
		prev := &pb.OperatorSetIdProto{}
		if i < len(o.OpsetImport) {
			prev = o.OpsetImport[i]
		}
		q := &pb.OperatorSetIdProto{
			Domain:  optString(prev.Domain, op.Domain),
			Version: optInt64(prev.Version, op.Version),
		}
		keepUnknown(q, prev)
		p.OpsetImport = append(p.OpsetImport, q)
	}
	if m.Graph != nil {
		p.Graph = encodeGraph(m.Graph)
	}
	return p
}

// encodeProps writes key/value pairs. Each pair takes presence and unknown
// fields from the first unused pair of the same key it was read from, so
// edits elsewhere in the list do not move them to another pair.
func encodeProps(orig []*pb.StringStringEntryProto, ps []Property) []*pb.StringStringEntryProto {
	var out []*pb.StringStringEntryProto
	used := make([]bool, len(orig))
	for _, kv := range ps {
		prev := &pb.StringStringEntryProto{}
		for j, o := range orig {
			if !used[j] && o.GetKey() == kv.Key {
				prev, used[j] = o, true
				break
			}
		}
		q := &pb.StringStringEntryProto{
			Key:   optString(prev.Key, kv.Key),
			Value: optString(prev.Value, kv.Value),
		}
		keepUnknown(q, prev)
		out = append(out, q)
	}
	return out
}

// keepUnknown gives p the fields of orig that graft's schema does not know
// (from a newer ONNX, say), so that they survive re-encoding.
func keepUnknown(p, orig proto.Message) {
	p.ProtoReflect().SetUnknown(orig.ProtoReflect().GetUnknown())
}

func encodeGraph(g *Graph) *pb.GraphProto {
	o := g.orig
	if o == nil {
		o = &pb.GraphProto{}
	}
	p := &pb.GraphProto{
		Name:                   optString(o.Name, g.Name),
		DocString:              optString(o.DocString, g.DocString),
		SparseInitializer:      o.SparseInitializer,
		QuantizationAnnotation: o.QuantizationAnnotation,
		MetadataProps:          encodeProps(o.MetadataProps, g.Metadata),
	}
	keepUnknown(p, o)
	for _, n := range g.Nodes {
		p.Node = append(p.Node, encodeNode(n))
	}
	for _, v := range g.Initializers {
		tp := encodeTensor(v.Const)
		// The value's name is authoritative: renaming a value renames its tensor.
		if tp.Name != nil || v.Name != "" {
			tp.Name = proto.String(v.Name)
		}
		p.Initializer = append(p.Initializer, tp)
	}
	seen := map[*Value]int{}
	for _, v := range g.Inputs {
		p.Input = append(p.Input, encodeListing(v, seen))
	}
	for _, v := range g.Outputs {
		p.Output = append(p.Output, encodeListing(v, seen))
	}
	for _, v := range g.ValueInfo {
		p.ValueInfo = append(p.ValueInfo, encodeListing(v, seen))
	}
	return p
}

// encodeListing writes one listing of v (as an input, output or in
// value_info), the k-th of v's listings, k counted in seen. A value listed
// more than once, or with a type its listing did not give (an initializer's),
// has one type and doc string in the IR but may have had different ones in
// each listing: while it encodes as it did when read, each listing is
// written as read.
func encodeListing(v *Value, seen map[*Value]int) *pb.ValueInfoProto {
	k := 0
	if len(v.listed) > 1 {
		k = seen[v]
		seen[v]++
	}
	if k >= len(v.listed) {
		return encodeValueInfo(v, v.origVI)
	}
	if v.asRead != nil && proto.Equal(encodeValueInfo(v, v.origVI), v.asRead) {
		return v.listed[k]
	}
	return encodeValueInfo(v, v.listed[k])
}

func valueNames(vs []*Value) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		if v != nil {
			out[i] = v.Name
		}
	}
	return out
}

func encodeNode(n *Node) *pb.NodeProto {
	o := n.orig
	if o == nil {
		o = &pb.NodeProto{}
	}
	p := &pb.NodeProto{
		Input:         valueNames(n.Inputs),
		Output:        valueNames(n.Outputs),
		Name:          optString(o.Name, n.Name),
		OpType:        optString(o.OpType, n.OpType),
		DocString:     optString(o.DocString, n.DocString),
		Domain:        optString(o.Domain, n.Domain),
		Overload:      optString(o.Overload, n.Overload),
		MetadataProps: encodeProps(o.MetadataProps, n.Metadata),
	}
	keepUnknown(p, o)
	for _, a := range n.Attrs {
		p.Attribute = append(p.Attribute, encodeAttr(a))
	}
	return p
}

func encodeValueInfo(v *Value, o *pb.ValueInfoProto) *pb.ValueInfoProto {
	if o == nil {
		o = &pb.ValueInfoProto{}
	}
	p := &pb.ValueInfoProto{
		Name:          optString(o.Name, v.Name),
		DocString:     optString(o.DocString, v.DocString),
		MetadataProps: o.MetadataProps,
	}
	keepUnknown(p, o)
	if v.Type != nil {
		p.Type = encodeType(v.Type)
	}
	return p
}

func encodeType(t *Type) *pb.TypeProto {
	if t.other != nil {
		return t.other
	}
	o := t.orig
	if o == nil {
		o = &pb.TypeProto{}
	}
	ot := o.TensorType
	if ot == nil {
		ot = &pb.TypeProto_Tensor{}
	}
	tt := &pb.TypeProto_Tensor{ElemType: optInt32(ot.ElemType, int32(t.Elem))}
	keepUnknown(tt, ot)
	if t.Shape != nil {
		tt.Shape = &pb.TensorShapeProto{}
		if ot.Shape != nil {
			keepUnknown(tt.Shape, ot.Shape)
		}
		for _, d := range t.Shape {
			tt.Shape.Dim = append(tt.Shape.Dim, encodeDim(d))
		}
	}
	p := &pb.TypeProto{
		TensorType: tt,
		Denotation: optString(o.Denotation, t.Denotation),
	}
	keepUnknown(p, o)
	return p
}

func encodeDim(d Dim) *pb.TensorShapeProto_Dimension {
	od := d.orig
	if od == nil {
		od = &pb.TensorShapeProto_Dimension{}
	}
	p := &pb.TensorShapeProto_Dimension{Denotation: optString(od.Denotation, d.Denotation)}
	keepUnknown(p, od)
	if r := decodeDim(od); d.orig != nil && r.Value == d.Value && r.Param == d.Param {
		// The size as read: an unknown one stays absent, dim_value -1 or an
		// empty dim_param.
		p.DimValue, p.DimParam = od.DimValue, od.DimParam
		return p
	}
	switch {
	case d.Param != "":
		p.DimParam = proto.String(d.Param)
	case d.Value >= 0:
		p.DimValue = proto.Int64(d.Value)
	}
	return p
}

func encodeAttr(a *Attribute) *pb.AttributeProto {
	o := a.orig
	if o == nil {
		o = &pb.AttributeProto{}
	}
	p := &pb.AttributeProto{
		Name:          optString(o.Name, a.Name),
		DocString:     optString(o.DocString, a.DocString),
		RefAttrName:   optString(o.RefAttrName, a.RefAttrName),
		Tp:            o.Tp,
		TypeProtos:    o.TypeProtos,
		SparseTensor:  o.SparseTensor,
		SparseTensors: o.SparseTensors,
	}
	keepUnknown(p, o)
	// Only the field matching the type is meaningful, but a file may set
	// others too, or leave the type out (IR version 1). While the attribute
	// keeps the type it was read with, the type and every value field are
	// written as read (a zero scalar the file left out stays out); otherwise
	// the type and the matching field.
	kept := a.orig != nil && a.Type == readType(o)
	if kept {
		p.Type = o.Type
	} else if a.Type != AttrUndefined {
		ty := pb.AttributeProto_AttributeType(a.Type)
		p.Type = &ty
	}
	has := func(t AttrType) bool { return kept || a.Type == t }
	scalar := func(t AttrType, inFile, nonzero bool) bool {
		if kept {
			return inFile || nonzero
		}
		return a.Type == t
	}
	if scalar(AttrFloat, o.F != nil, math.Float32bits(a.Float) != 0) {
		p.F = proto.Float32(a.Float)
	}
	if scalar(AttrInt, o.I != nil, a.Int != 0) {
		p.I = proto.Int64(a.Int)
	}
	if scalar(AttrString, o.S != nil, len(a.String) > 0) {
		p.S = a.String
		if p.S == nil {
			p.S = []byte{} // present, empty
		}
	}
	if has(AttrTensor) && a.Tensor != nil {
		p.T = encodeTensor(a.Tensor)
	}
	if has(AttrGraph) && a.Graph != nil {
		p.G = encodeGraph(a.Graph)
	}
	if has(AttrFloats) {
		p.Floats = a.Floats
	}
	if has(AttrInts) {
		p.Ints = a.Ints
	}
	if has(AttrStrings) {
		p.Strings = a.Strings
	}
	if has(AttrTensors) {
		for _, t := range a.Tensors {
			p.Tensors = append(p.Tensors, encodeTensor(t))
		}
	}
	if has(AttrGraphs) {
		for _, g := range a.Graphs {
			p.Graphs = append(p.Graphs, encodeGraph(g))
		}
	}
	return p
}
