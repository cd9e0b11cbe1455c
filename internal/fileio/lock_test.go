//go:build unix

package fileio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Two runs on one output folder: the second fails at once, naming the
// first; the lock goes with the process that held it.
func TestLockDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	first, out := startHelper(t, "lock", dir)
	if line, err := out.ReadString('\n'); line != "locked\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	start := time.Now()
	_, err := LockDir(dir)
	wantErr(t, err, fmt.Sprintf("another graft run (pid %d) is writing to %s", first.Process.Pid, dir))
	if !errors.Is(err, ErrLocked) {
		t.Errorf("%v is not ErrLocked", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the second run waited %v", d)
	}

	// Killed, the first run's lock is gone.
	first.Process.Kill()
	first.Wait()
	l, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Now this process holds it: another process is refused.
	second, out := startHelper(t, "lock", dir)
	line, _ := out.ReadString('\n')
	if want := fmt.Sprintf("another graft run (pid %d) is writing to %s\n", os.Getpid(), dir); line != want {
		t.Errorf("second run says %q, want %q", line, want)
	}
	if err := second.Wait(); err == nil {
		t.Error("second run exited 0")
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l, err = LockDir(dir)
	if err != nil {
		t.Fatalf("after Unlock: %v", err)
	}
	l.Unlock()
	wantNames(t, dir, LockName)
}

// The lock file is written (the holder's pid): a link or a special file in
// its place is refused, not written through or opened for waiting.
func TestLockDirRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	writeFile(t, victim, "precious", 0o644)
	os.Symlink(victim, filepath.Join(dir, LockName))
	_, err := LockDir(dir)
	wantErr(t, err, "lock "+dir+": "+filepath.Join(dir, LockName)+" is a symlink, not a lock file")
	wantContent(t, victim, "precious")

	dir = t.TempDir()
	if err := unix.Mkfifo(filepath.Join(dir, LockName), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := LockDir(dir); done <- err }()
	select {
	case err := <-done:
		wantErr(t, err, "lock "+dir+": "+filepath.Join(dir, LockName)+" is not a regular file, so not a lock file")
	case <-time.After(10 * time.Second):
		t.Fatal("LockDir hangs on a named pipe")
	}
}

// A folder LockDir made is removed by Unlock when the run wrote nothing in
// it; a folder that was there, or that got files, stays.
func TestUnlockRemovesOnlyAnEmptyNewFolder(t *testing.T) {
	root := t.TempDir()
	fresh := filepath.Join(root, "fresh")
	l, err := LockDir(fresh)
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("an empty folder the lock made is left: %v", err)
	}

	used := filepath.Join(root, "used")
	l, err = LockDir(used)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(used, "report.md"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if _, err := os.Stat(filepath.Join(used, "report.md")); err != nil {
		t.Errorf("a folder with a result was removed: %v", err)
	}

	l, err = LockDir(root) // there before
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	if _, err := os.Stat(filepath.Join(root, LockName)); err != nil {
		t.Errorf("the lock file of a folder that existed was removed: %v", err)
	}
}
