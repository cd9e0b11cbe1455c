package surgery

import (
	"fmt"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
)

// Edits that change what a model expects or outputs keep the contract
// stored in its metadata (package contract) true: Normalize records that
// the model now normalises its input itself, ReplaceHead that its classes
// are new and unnamed.

// restoreContract stores the contract that update makes of m's derived
// one. When onlyIfStored is set and m stores none, it does nothing: Derive
// will infer the same from the edited graph.
func restoreContract(m *onnx.Model, onlyIfStored bool, update func(*contract.Contract)) error {
	if _, ok := m.MetadataValue(contract.Key); !ok && onlyIfStored {
		return nil
	}
	c, err := contract.Derive(m)
	if err != nil {
		return err
	}
	update(c)
	if err := contract.Store(m, c); err != nil {
		return fmt.Errorf("the edited model's contract: %w", err)
	}
	return nil
}

// firstInput returns the first graph input that is not an initializer: the
// one a contract describes.
func firstInput(g *onnx.Graph) *onnx.Value {
	for _, v := range g.Inputs {
		if v != nil && !v.IsConst() {
			return v
		}
	}
	return nil
}
