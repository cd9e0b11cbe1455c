package fileio

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// ErrLocked is wrapped by LockDir's error when another run holds the lock.
var ErrLocked = errors.New("output folder is locked")

// LockName is the lock file LockDir keeps in a folder. It stays after the
// run: removing it would let a third run lock a new file while a second
// still waits on the old one. The one exception is a folder LockDir made
// that the run left empty (it failed before writing anything): Unlock
// removes it, so a failed run leaves nothing behind.
const LockName = ".graft.lock"

// A DirLock makes its run the only graft run writing into one folder.
type DirLock struct {
	f       *os.File
	dir     string
	created bool // LockDir made the folder
}

// LockDir creates dir if needed and takes its lock, held until Unlock or
// the end of the process, however it ends. If another run holds it, LockDir
// fails at once: "another graft run (pid N) is writing to DIR".
func LockDir(dir string) (*DirLock, error) {
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	f, err := openLockFile(filepath.Join(dir, LockName))
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, Reason(err))
	}
	ok, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if !ok {
		who := "another graft run"
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		if pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:n]))); err == nil {
			who = fmt.Sprintf("another graft run (pid %d)", pid)
		}
		f.Close()
		return nil, &plainError{fmt.Sprintf("%s is writing to %s", who, dir), ErrLocked}
	}
	// The holder's pid, for the message a second run prints.
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		f.WriteAt(pid, 0)
	}
	return &DirLock{f: f, dir: dir, created: statErr != nil}, nil
}

// Unlock releases the lock. A folder LockDir made and the run left empty
// is removed, the lock file first, while the lock is still held.
func (l *DirLock) Unlock() error {
	if l.created {
		if entries, err := os.ReadDir(l.dir); err == nil && len(entries) == 1 && entries[0].Name() == LockName {
			os.Remove(filepath.Join(l.dir, LockName))
			os.Remove(l.dir)
		}
	}
	return l.f.Close()
}

// InFolder runs f holding an exclusive lock on the folder dir, waiting for
// it, so that writers that replace several files there together (a model
// and its data file) do so one at a time. The lock is on the folder itself
// (no file is created), separate from LockDir's, and taken on Unix only.
func InFolder(dir string, f func() error) error {
	defer lockFolder(dir)()
	return f()
}
