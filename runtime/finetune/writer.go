package finetune

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/train"
)

// A writer writes a run's files as its epochs end, and at the end.
type writer struct {
	opts       Options
	dir        string
	model      *onnx.Model
	program    *runtime.Program
	checkpoint *checkpoint
	history    *train.History
	result     *Result
}

// epochDone is train.Config.Checkpoint: after every epoch it commits the
// checkpoint, rewrites metrics.json and, for a new best epoch, the model.
func (w *writer) epochDone(epoch int, stats train.EpochStats, best bool) error {
	h := w.history
	h.Epochs = append(h.Epochs, stats)
	if best {
		h.BestEpoch = stats.Epoch
		h.BestAccuracy = stats.Accuracy
		if stats.Val != nil {
			h.BestAccuracy = stats.Val.Accuracy
		}
	}
	if err := w.program.WriteBack(); err != nil {
		return err
	}
	if err := w.checkpoint.commit(h); err != nil {
		return err
	}
	// Rewritten after every epoch, these are flushed to disk once, at the
	// end (finish).
	metrics, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	if err := fileio.WriteFile(filepath.Join(w.dir, MetricsFile), append(metrics, '\n'), fileio.NoSync()); err != nil {
		return err
	}
	w.wrote(filepath.Join(w.dir, MetricsFile))
	if best {
		if err := (onnx.SaveOptions{Force: w.opts.Force, NoSync: true}).Save(w.model, w.opts.Out); err != nil {
			return err
		}
		w.wrote(w.opts.Out)
	}
	return nil
}

// finish flushes the model and the metrics to disk, and writes the plot
// and the report.
func (w *writer) finish() error {
	if len(w.history.Epochs) == 0 {
		return nil
	}
	if err := fileio.Sync(w.opts.Out, filepath.Join(w.dir, MetricsFile)); err != nil {
		return fmt.Errorf("finetune: %w", err)
	}
	png, err := trainingPlot(w.history)
	if err != nil {
		return fmt.Errorf("finetune: %s: %w", PlotFile, err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{PlotFile, png}, {ReportFile, []byte(report(w.result, w.opts))}} {
		path := filepath.Join(w.dir, f.name)
		if err := fileio.WriteFile(path, f.data); err != nil {
			return fmt.Errorf("finetune: %w", err)
		}
		w.wrote(path)
	}
	return nil
}

func (w *writer) wrote(path string) {
	for _, f := range w.result.Files {
		if f == path {
			return
		}
	}
	w.result.Files = append(w.result.Files, path)
}
