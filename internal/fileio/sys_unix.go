//go:build unix

package fileio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// closeBeforeRename is false: Unix renames an open file, so a temporary file
// stays locked (see claim) until it has its final name.
const closeBeforeRename = false

// tryLock takes an exclusive lock on f without waiting, and reports whether
// it got it. The kernel drops the lock when the process dies, so a lock that
// can be taken proves its previous holder gone. We call flock(2) directly
// rather than through github.com/gofrs/flock: golang.org/x/sys is already a
// dependency, and the lock file must also carry the holder's pid, which
// gofrs/flock's own file handle does not let us write.
func tryLock(f *os.File) (bool, error) {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return false, nil
		}
		return false, err
	}
}

// claim locks f, a temporary file just created, so that removeIfDead leaves
// it alone while this process lives. It fails if a cleaner locked the file
// first, in the instant between its creation and our lock, and so removes
// it.
func claim(f *os.File) bool {
	if ok, _ := tryLock(f); !ok {
		return false
	}
	st, err := f.Stat()
	lt, lerr := os.Lstat(f.Name())
	return err == nil && lerr == nil && os.SameFile(st, lt)
}

// removeIfDead removes the temporary file at path if no process holds it.
func removeIfDead(path string) {
	// O_NONBLOCK: should the name have become a named pipe, opening it must
	// not wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if ok, _ := tryLock(f); !ok {
		return
	}
	st, err := f.Stat()
	lt, lerr := os.Lstat(path)
	if err == nil && lerr == nil && st.Mode().IsRegular() && os.SameFile(st, lt) {
		os.Remove(path)
	}
}

// keepOwner gives f the owner and group of the file it replaces. Only root
// may give a file away; otherwise this quietly does nothing.
func keepOwner(f *os.File, like fs.FileInfo) {
	st, ok := like.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		f.Chown(int(st.Uid), int(st.Gid))
	}
}

// syncDir flushes dir's entries, so that a rename in it survives a power
// cut.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// openLockFile opens the lock file at path, creating it. It never follows a
// symlink nor opens anything but a regular file: the pid written into it
// must not land in some other file.
func openLockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o644)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symlink, not a lock file", path)
	}
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file, so not a lock file", path)
	}
	return f, nil
}

// lockFolder takes an exclusive lock on the folder dir itself, waiting for
// it, and returns its release. Where the folder cannot be opened or locked
// (some network file systems), it takes none: the lock only orders writers,
// and the write itself reports a missing or unusable folder.
func lockFolder(dir string) func() {
	d, err := os.Open(dir)
	if err != nil {
		return func() {}
	}
	for {
		err = unix.Flock(int(d.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	return func() { d.Close() }
}
