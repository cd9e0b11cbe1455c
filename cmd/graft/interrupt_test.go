package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
)

// Ctrl-C during fine-tuning stops cleanly: exit code 0, a note that the run
// was interrupted, and the best epoch's model saved and loadable.
func TestInterruptKeepsBestCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := buildGraft(t)
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

// buildGraft builds the binary once for the tests that signal it.
func buildGraft(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "graft-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "graft")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// SIGTERM stops graft like Ctrl-C, and a second signal stops it at once,
// in whatever phase it is (here compiling and starting to train): exit
// code 130, or, if the first stop was quick enough, the note that nothing
// was written. No file is left half-written either way.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	cmd := exec.Command(buildGraft(t), "finetune", "--model", "../../testdata/models/stn/model.onnx",
		"--data", filepath.Join(lenetDir, "heldout-images-idx3-ubyte.gz"), "--epochs", "1000", "-o", filepath.Join(dir, "model.onnx"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n') // "fine-tuning ...": the work has begun
	go io.Copy(io.Discard, stdout)
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("graft did not stop within a minute of two signals (after %q)", line)
	}
	code := cmd.ProcessState.ExitCode()
	if code != 130 && !(code == 1 && strings.Contains(stderr.String(), "nothing was written")) {
		t.Errorf("exit code %d after two SIGTERMs, stderr %q", code, stderr.String())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fileio.IsTemp(e.Name()) {
			t.Errorf("left %s", e.Name())
		}
	}
}
