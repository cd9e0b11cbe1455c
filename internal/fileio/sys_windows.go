package fileio

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/windows"
)

// closeBeforeRename is true: Windows does not rename an open file. Temporary
// files are then not held while open, so leftovers are never removed here
// (rule 6), only ignored.
const closeBeforeRename = true

func claim(*os.File) bool             { return true }
func removeIfDead(string)             {}
func keepOwner(*os.File, fs.FileInfo) {}
func syncDir(string) error            { return nil }
func lockFolder(string) func()        { return func() {} }
func openLockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}

// tryLock locks one byte far past the pid written at the start of the file:
// Windows locks are mandatory, and the pid must stay readable.
func tryLock(f *os.File) (bool, error) {
	err := windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY,
		0, 1, 0, &windows.Overlapped{OffsetHigh: 1})
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return false, nil
	}
	return err == nil, err
}
