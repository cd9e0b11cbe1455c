package finetune

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/train"
)

// A checkpoint is the resumable state of a run, committed after every
// epoch as one unit (fileio.BeginSet): a kill at any instant leaves the
// previous epoch's set or the new one whole.
//
//	checkpoint/current          names the committed set
//	checkpoint/gen-NNNNNN/
//	  model.onnx                the model after the epoch (trained
//	                            parameters, BatchNormalization statistics)
//	  optimizer.state           the optimizer's state (train.SaveState)
//	  history.json              the epochs so far (train.History)
//	  run.json                  what the run was made from (runRecord)
type checkpoint struct {
	dir       string
	model     *onnx.Model
	program   *runtime.Program
	optimizer train.Optimizer
	run       runRecord
}

// The files of a checkpoint set.
const (
	checkpointModel   = "model.onnx"
	checkpointState   = "optimizer.state"
	checkpointHistory = "history.json"
	checkpointRun     = "run.json"
)

// runRecord identifies a run: Resume refuses a checkpoint whose record
// differs, since continuing it would mix two runs.
type runRecord struct {
	// Model is the SHA-256 of the model as Run received it (onnx.SHA256).
	Model string `json:"model_sha256"`
	// Train and Val are the data sets' fingerprints (dataset.Fingerprint).
	Train   string   `json:"train"`
	Val     string   `json:"val"`
	Classes []string `json:"classes"`
	// Settings are the options that shape the training, by name.
	Settings []setting `json:"settings"`
}

type setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// settings lists the options that change what the run computes; Epochs is
// left out so that a resumed run may go on for longer (a cosine schedule,
// which depends on it, records it).
func (o *Options) settings() []setting {
	s := []setting{
		{"replace-head", fmt.Sprint(o.ReplaceHead)},
		{"head", o.HeadNode},
		{"freeze", strings.Join(o.Freeze, " ")},
		{"unfreeze", strings.Join(o.Unfreeze, " ")},
		{"batch", fmt.Sprint(o.Batch)},
		{"optimizer", o.Optimizer},
		{"lr", fmt.Sprint(o.LR)},
		{"momentum", fmt.Sprint(o.Momentum)},
		{"weight-decay", fmt.Sprint(o.WeightDecay)},
		{"schedule", o.Schedule},
		{"seed", fmt.Sprint(o.Seed)},
		{"workers", fmt.Sprint(max(o.Workers, 1))},
		{"augment", fmt.Sprint(o.Augment)},
		{"adv-eps", fmt.Sprint(o.Adversarial.Eps)},
		{"noise-std", fmt.Sprint(o.NoiseStd)},
		{"mean", fmt.Sprint(o.Overrides.Mean)},
		{"std", fmt.Sprint(o.Overrides.Std)},
		{"resize", fmt.Sprint(o.Overrides.Resize)},
	}
	if o.Adversarial.Eps > 0 {
		s = append(s, setting{"adv-ratio", fmt.Sprint(o.Adversarial.Ratio)})
	}
	if o.Schedule == "cosine" {
		s = append(s, setting{"epochs (cosine schedule)", fmt.Sprint(o.Epochs)})
	}
	return s
}

// commit writes the model (already written back from the program), the
// optimizer state and the history as the new current set.
func (c *checkpoint) commit(h *train.History) error {
	// A checkpoint is rewritten after every epoch and only needs to survive
	// a kill: no flushes to disk (fileio.NoSync).
	set, err := fileio.BeginSet(c.dir, fileio.NoSync())
	if err != nil {
		return err
	}
	run, err := json.MarshalIndent(c.run, "", "  ")
	if err != nil {
		return err
	}
	state, err := train.MarshalState(c.optimizer)
	if err != nil {
		return err
	}
	history, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	for _, write := range []func() error{
		func() error { return onnx.SaveOptions{NoSync: true}.Save(c.model, set.Path(checkpointModel)) },
		func() error { return fileio.WriteFile(set.Path(checkpointState), state, fileio.NoSync()) },
		func() error {
			return fileio.WriteFile(set.Path(checkpointHistory), append(history, '\n'), fileio.NoSync())
		},
		func() error { return fileio.WriteFile(set.Path(checkpointRun), append(run, '\n'), fileio.NoSync()) },
	} {
		if err := write(); err != nil {
			set.Discard()
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	return set.Commit()
}

// resume restores the parameters, the optimizer state and the history of
// the checkpoint's current set, after checking it comes from this run.
func (c *checkpoint) resume() (*train.History, error) {
	fail := func(format string, args ...any) (*train.History, error) {
		return nil, fmt.Errorf("finetune: resume from %s: %s", c.dir, fmt.Sprintf(format, args...))
	}
	set, err := fileio.CurrentSet(c.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fail("no checkpoint to resume (run without resuming first)")
	}
	if err != nil {
		return fail("%v", err)
	}
	b, err := os.ReadFile(filepath.Join(set, checkpointRun))
	if err != nil {
		return fail("%v", err)
	}
	var was runRecord
	if err := json.Unmarshal(b, &was); err != nil {
		return fail("%s is not a run record: %v", checkpointRun, err)
	}
	if err := c.run.sameRun(was); err != nil {
		return fail("the checkpoint comes from another run: %v", err)
	}
	h, err := train.LoadHistory(filepath.Join(set, checkpointHistory))
	if err != nil {
		return fail("%v", err)
	}
	last, err := onnx.Load(filepath.Join(set, checkpointModel))
	if err != nil {
		return fail("%v", err)
	}
	lp, err := runtime.Compile(last, runtime.Options{})
	if err != nil {
		return fail("%v", err)
	}
	for _, prm := range c.program.Params() {
		src := lp.Param(prm.Name)
		if src == nil || !src.Value.Shape().Eq(prm.Value.Shape()) || src.Value.Dtype() != prm.Value.Dtype() {
			return fail("its model does not match this one (parameter %q)", prm.Name)
		}
		switch d := prm.Value.Data().(type) {
		case []float32:
			copy(d, src.Value.Data().([]float32))
		case []float64:
			copy(d, src.Value.Data().([]float64))
		}
	}
	if err := train.LoadState(filepath.Join(set, checkpointState), c.optimizer); err != nil {
		return fail("%v", err)
	}
	return h, nil
}

// sameRun says how was differs from r, or nil if they are the same run.
func (r runRecord) sameRun(was runRecord) error {
	switch {
	case was.Model != r.Model:
		return errors.New("it was made from another model")
	case !slices.Equal(was.Classes, r.Classes):
		return fmt.Errorf("its classes were %s, this run's are %s", strings.Join(was.Classes, ", "), strings.Join(r.Classes, ", "))
	case was.Train != r.Train:
		return errors.New("its training data differs from this run's")
	case was.Val != r.Val:
		return errors.New("its validation data differs from this run's")
	}
	old := map[string]string{}
	for _, s := range was.Settings {
		old[s.Name] = s.Value
	}
	for _, s := range r.Settings {
		if v, ok := old[s.Name]; !ok || v != s.Value {
			if !ok {
				v = "unset"
			}
			return fmt.Errorf("it was made with %s %s, this run has %s", s.Name, quoteEmpty(v), quoteEmpty(s.Value))
		}
	}
	return nil
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}
