package surgery

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
)

// An Edit changes a model in place. Edits are applied by Apply, which makes
// a group of them all-or-nothing.
type Edit func(m *onnx.Model) error

// Apply runs the edits on a copy of m, then sorts the graph, removes what no
// output depends on (and from a stored trainable set, the parameters that
// went with it), infers shapes and validates. Only if all of that
// succeeds does m take the result; otherwise m is left untouched and the
// error names the edit that failed.
func Apply(m *onnx.Model, edits ...Edit) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("surgery: internal error: %v", r)
		}
	}()
	c, err := m.Clone()
	if err != nil {
		return fmt.Errorf("surgery: %w", err)
	}
	for i, e := range edits {
		if err := e(c); err != nil {
			return fmt.Errorf("surgery: edit %d of %d: %w", i+1, len(edits), err)
		}
	}
	g := c.Graph
	if err := g.TopoSort(); err != nil {
		return fmt.Errorf("surgery: %w", err)
	}
	before := map[string]bool{}
	for _, p := range Params(c) {
		before[p.Name] = true
	}
	g.Cleanup()
	if err := keepTrainable(c, before); err != nil {
		return fmt.Errorf("surgery: %w", err)
	}
	if err := c.InferShapes(); err != nil {
		return fmt.Errorf("surgery: %w", err)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("surgery: the edited model is invalid: %w", err)
	}
	*m = *c
	return nil
}
