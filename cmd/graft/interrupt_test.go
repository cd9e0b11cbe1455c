package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graft-dev/graft/onnx"
)

// Ctrl-C during fine-tuning stops cleanly: exit code 0, a note that the run
// was interrupted, and the best epoch's model saved and loadable.
func TestInterruptKeepsBestCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "graft")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "model.onnx")
	cmd := exec.Command(bin, "finetune", "--model", "../../testdata/models/stn/model.onnx",
		"--data", filepath.Join(lenetDir, "heldout-images-idx3-ubyte.gz"), "--labels", filepath.Join(lenetDir, "heldout-labels-idx1-ubyte.gz"),
		"--epochs", "1000", "--lr", "0.01", "-o", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the first checkpoint, then interrupt.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, "metrics.json")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no checkpoint after 2 minutes:\n%s\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("interrupted finetune exited with %v:\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("finetune did not stop within a minute of SIGINT")
	}
	if !strings.Contains(stdout.String(), "interrupted after") {
		t.Errorf("no interruption note in:\n%s", stdout.String())
	}
	if _, err := onnx.Load(out); err != nil {
		t.Errorf("the best checkpoint does not load: %v", err)
	}
	h := readHistory(t, filepath.Join(dir, "metrics.json"))
	if len(h.Epochs) < 1 || len(h.Epochs) >= 1000 || h.BestEpoch < 0 {
		t.Errorf("history after interrupt: %d epochs, best %d", len(h.Epochs), h.BestEpoch)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "tmp") {
			t.Errorf("partial file left: %s", e.Name())
		}
	}
}
