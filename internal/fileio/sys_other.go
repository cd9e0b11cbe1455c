//go:build !unix && !windows

package fileio

import (
	"errors"
	"io/fs"
	"os"
)

// Without file locks, temporary files are never removed here (rule 6), only
// ignored, and LockDir fails.
const closeBeforeRename = true

func claim(*os.File) bool             { return true }
func removeIfDead(string)             {}
func keepOwner(*os.File, fs.FileInfo) {}
func syncDir(string) error            { return nil }
func lockFolder(string) func()        { return func() {} }
func tryLock(*os.File) (bool, error)  { return false, errors.ErrUnsupported }
func openLockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}
