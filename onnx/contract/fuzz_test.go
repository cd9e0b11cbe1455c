package contract_test

import (
	"strings"
	"testing"

	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/contract"
)

// FuzzStoredContract feeds arbitrary metadata to Derive: it never panics,
// errors are one line, and a contract it accepts stores and derives again
// to the same thing.
func FuzzStoredContract(f *testing.F) {
	m, err := onnx.Load("../../testdata/models/resnet_tiny_op13_bn/model.onnx")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(`{"version":1,"input":{"layout":"NCHW","channels":3,"height":64,"width":64,"resize":73,"pixel_scale":1,"mean":[0.5],"std":[0.2]},"output":{"kind":"logits","classes":["a","b","c","d","e","f","g","h","i","j"]}}`)
	f.Add(`{"version":1,"input":{"layout":"NCHW","channels":3,"height":64,"width":64,"resize":73,"pixel_scale":255,"normalized_inside":true},"output":{"kind":"probabilities"}}`)
	f.Add(`{"version":1,"input":{},"output":{"kind":"logits"}}`)
	f.Add(`{}`)
	f.Add(`[1,2]`)
	f.Fuzz(func(t *testing.T, v string) {
		m.SetMetadata(contract.Key, v)
		c, err := contract.Derive(m)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if err := contract.Store(m, c); err != nil {
			t.Fatalf("a derived contract does not store: %v", err)
		}
		again, err := contract.Derive(m)
		if err != nil {
			t.Fatalf("a stored contract does not derive: %v", err)
		}
		if again.Input.Resize != c.Input.Resize || again.Output.Kind != c.Output.Kind || len(again.Output.Classes) != len(c.Output.Classes) {
			t.Fatalf("derived %+v %+v, then %+v %+v", c.Input, c.Output, again.Input, again.Output)
		}
	})
}
