package onnx

import (
	"fmt"
	"slices"

	"github.com/graft-dev/graft/onnx/internal/pb"
	"google.golang.org/protobuf/proto"
)

// Clone returns a deep copy of m: edits to the copy leave m unchanged. The
// tensors' element bytes are shared, not copied: they are never modified
// in place (Tensor.SetRaw replaces them), and a model's weights are most
// of its memory. It fails only if m's graph cannot be represented in a
// file (a value name defined twice, say).
func (m *Model) Clone() (*Model, error) {
	// Encode with external tensors inline (their data is in memory), copy
	// the protobuf deeply, decode, then mark the same tensors external again.
	type mark struct {
		t   *Tensor
		ext *External
	}
	var marks []mark
	m.eachTensor(func(t *Tensor) {
		if t.storage == storeExternal {
			marks = append(marks, mark{t, t.external})
			t.storage = storeRaw
		}
	})
	p := proto.Clone(encodeModel(m)).(*pb.ModelProto)
	for _, mk := range marks {
		mk.t.storage = storeExternal
	}
	c, err := decodeModel(p)
	if err != nil {
		return nil, fmt.Errorf("clone: %w", err)
	}
	i := 0
	var ct []*Tensor
	c.eachTensor(func(t *Tensor) { ct = append(ct, t) })
	var mt []*Tensor
	m.eachTensor(func(t *Tensor) { mt = append(mt, t) })
	for j, t := range mt {
		if t.raw != nil && len(t.raw) == len(ct[j].raw) {
			ct[j].raw = t.raw
			ct[j].dropOrigRaw()
		}
		if i < len(marks) && marks[i].t == t {
			e := *marks[i].ext
			e.entries = append(e.entries[:0:0], e.entries...)
			ct[j].storage, ct[j].external = storeExternal, &e
			i++
		}
	}
	c.dataFiles = slices.Clone(m.dataFiles)
	return c, nil
}
