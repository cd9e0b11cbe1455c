package onnx

import (
	"fmt"
	"testing"

	"github.com/graft-dev/graft/onnx/internal/pb"
	"google.golang.org/protobuf/proto"
)

// nestedProto returns tinyProto with an If whose then-branch holds an If,
// and so on, depth levels deep; the innermost branch reads the main
// graph's input X.
func nestedProto(depth int) *pb.ModelProto {
	var inner *pb.GraphProto
	for d := depth; d >= 1; d-- {
		out := fmt.Sprintf("Y%d", d)
		g := &pb.GraphProto{Name: proto.String(fmt.Sprintf("level%d", d)), Output: []*pb.ValueInfoProto{pbValue(out, int32(Float), 2)}}
		if inner == nil {
			g.Node = []*pb.NodeProto{pbNode(fmt.Sprintf("id%d", d), "Identity", []string{"X"}, []string{out})}
		} else {
			g.Node = []*pb.NodeProto{pbIf(fmt.Sprintf("if%d", d), out, inner)}
		}
		inner = g
	}
	p := tinyProto()
	p.Graph.Input = append(p.Graph.Input, pbValue("cond", int32(Bool)))
	p.Graph.Node = append(p.Graph.Node, pbIf("if0", "Z", inner))
	p.Graph.Output = append(p.Graph.Output, pbValue("Z", int32(Float), 2))
	return p
}

func pbIf(name, out string, then *pb.GraphProto) *pb.NodeProto {
	return &pb.NodeProto{Name: proto.String(name), OpType: proto.String("If"), Input: []string{"cond"}, Output: []string{out},
		Attribute: []*pb.AttributeProto{{Name: proto.String("then_branch"), Type: pb.AttributeProto_GRAPH.Enum(), G: then}}}
}

// Checking a nested graph costs more than linear time in its depth (each
// level's checks look into every level below), so nesting is bounded: the
// deepest allowed model decodes, a 1,000-deep one is refused with one short
// line after decoding no more than MaxNesting+2 graphs.
func TestDeepNesting(t *testing.T) {
	m, err := decodeNoPanic(t, marshal(t, nestedProto(MaxNesting)))
	if err != nil {
		t.Fatalf("%d levels: %v", MaxNesting, err)
	}
	deepest := m.Graph.Nodes[1].Attrs[0].Graph
	for range MaxNesting - 1 {
		deepest = deepest.Nodes[0].Attrs[0].Graph
	}
	if deepest.Name != fmt.Sprintf("level%d", MaxNesting) || deepest.Nodes[0].Inputs[0] != m.Graph.Inputs[0] {
		t.Fatalf("the innermost graph %q does not read the main graph's input", deepest.Name)
	}

	b := marshal(t, nestedProto(1000))
	before := graphsDecoded.Load()
	_, err = decodeNoPanic(t, b)
	visited := graphsDecoded.Load() - before
	want := `subgraph "level65" is nested 65 deep (If, Loop or Scan bodies within each other); graft reads at most 64 levels`
	if err == nil || err.Error() != want {
		t.Fatalf("1000 levels: got %v\nwant %s", err, want)
	}
	if visited > MaxNesting+2 { // the main graph and levels 1 to 65
		t.Errorf("decoded %d graphs before refusing, want at most %d", visited, MaxNesting+2)
	}

	// A model built in memory is held to the same bound by Validate, which
	// stops descending there.
	m.Graph.Nodes[1].Attrs[0].Graph = nestIR(1000)
	err = m.Validate()
	if err == nil || err.Error() != "invalid model: "+`subgraph "ir65" is nested 65 deep (If, Loop or Scan bodies within each other); graft reads at most 64 levels` {
		t.Fatalf("Validate of 1000 levels built in memory: %v", err)
	}
}

// nestIR builds depth graphs, each but the last holding an If over the next.
func nestIR(depth int) *Graph {
	var inner *Graph
	for d := depth; d >= 1; d-- {
		g := &Graph{Name: fmt.Sprintf("ir%d", d)}
		if inner != nil {
			g.AddNode("If", fmt.Sprintf("if%d", d), nil, []string{fmt.Sprintf("Y%d", d)},
				&Attribute{Name: "then_branch", Type: AttrGraph, Graph: inner})
		}
		inner = g
	}
	return inner
}
