package surgery

import (
	"testing"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/internal/memtest"
	"github.com/graft-dev/graft/onnx"
)

// A head of 100,000,000 classes is refused before its weight is drawn.
func TestReplaceHeadMemory(t *testing.T) {
	r := memtest.Run(t, func() error {
		m, err := onnx.Load("../testdata/models/resnet_tiny_op13_folded/model.onnx")
		if err != nil {
			return err
		}
		return Apply(m, ReplaceHead(100_000_000, HeadOptions{}))
	}, memlimit.EnvVar+"=16GiB")
	r.Want(t, `surgery: edit 1 of 1: replace head: the new weight "fc.weight" [100000000,64] float32 (23.8 GiB) needs 47.7 GiB, over graft's memory limit of 16.0 GiB (set by GRAFT_MEMORY_LIMIT); set GRAFT_MEMORY_LIMIT or --memory-limit to change it`, 300<<20)
}
