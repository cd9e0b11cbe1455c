package fileio

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// We do not use github.com/google/renameio/v2, which does the
// temp-file-fsync-rename part well: its temporary names (".NAME" and
// digits) cannot be told apart from a user's files, so leftovers of a killed
// run could never be removed safely (rule 6); it needs WithTempDir on every
// call to keep the temporary file beside the target; and the rest of the
// rule (symlinks, special files, read-only files, owner) would be ours
// anyway. What it would save us is the thirty lines of write below.

var (
	// ErrReadOnly is wrapped by the error for an existing file with no write
	// permission bit, which only a forced write replaces.
	ErrReadOnly = errors.New("read-only file")
	// ErrNotRegular is wrapped by the error for a device, named pipe, socket,
	// folder or dangling symlink, which graft never writes.
	ErrNotRegular = errors.New("not a regular file")
)

// plainError is an error whose text is a whole sentence for the user and
// which wraps a sentinel error (ErrReadOnly, ErrNotRegular, ...).
type plainError struct {
	msg  string
	kind error
}

func (r *plainError) Error() string { return r.msg }
func (r *plainError) Unwrap() error { return r.kind }

// An Option adjusts the rule for one write.
type Option func(*options)

type options struct {
	force  bool
	modeOf string
	noSync bool
}

// Force lets a write replace a read-only file, and lets a Plan's output be
// one of its input files.
func Force() Option { return func(o *options) { o.force = true } }

// ModeOf makes a new file take the permission bits (and, as root, the owner)
// of the file at path instead of 0644, so that a private model's new data
// file is private too. A file being replaced keeps its own; with nothing at
// path, the default holds.
func ModeOf(path string) Option { return func(o *options) { o.modeOf = path } }

// NoSync skips the flushes to disk that make a write survive a crash of
// the machine (a power cut), and keeps what makes it survive a kill of the
// process: the file is still written whole under a temporary name and
// renamed into place. For files rewritten after every step of a long run
// (a training checkpoint, per-epoch metrics), whose loss in a crash costs
// only the last steps, the flushes can take longer than the step on a slow
// disk; Sync flushes such files once, at the end.
func NoSync() Option { return func(o *options) { o.noSync = true } }

// Sync flushes files written with NoSync, and their folders, to disk.
func Sync(paths ...string) error {
	dirs := map[string]bool{}
	for _, p := range paths {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return fmt.Errorf("sync %s: %w", p, Reason(err))
		}
		if err := syncFile(real); err != nil {
			return fmt.Errorf("sync %s: %w", p, Reason(err))
		}
		dirs[filepath.Dir(real)] = true
	}
	for d := range dirs {
		syncDir(d)
	}
	return nil
}

func collect(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WriteFile writes data to path under the package's rule: a new or regular
// file is replaced atomically, a symlink is written through, and anything
// else is refused.
func WriteFile(path string, data []byte, opts ...Option) error {
	o := collect(opts)
	t, err := resolve(path, "output "+path, o.force)
	if err != nil {
		return err
	}
	return t.write(path, data, o)
}

// Resolve checks path against the rule without writing anything, and
// returns the file a write to path creates or replaces: path itself, or the
// file a symlink at path points to.
func Resolve(path string, opts ...Option) (string, error) {
	t, err := resolve(path, "output "+path, collect(opts).force)
	return t.path, err
}

// target is the file a write replaces or creates.
type target struct {
	path string      // path itself, or the file a symlink at path points to
	info fs.FileInfo // the existing file, nil for a new one
}

// resolve applies the rule to path; name is how errors call it ("output
// PATH", or "-o PATH" in a Plan).
func resolve(path, name string, force bool) (target, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return target{path: path}, nil
	}
	if err != nil {
		return target{}, fmt.Errorf("%s: %w", name, Reason(err))
	}
	real, what := path, name
	if fi.Mode()&fs.ModeSymlink != 0 {
		dest, _ := os.Readlink(path)
		if real, err = filepath.EvalSymlinks(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return target{}, &plainError{fmt.Sprintf("%s is a symlink to %s, which does not exist; graft writes through a symlink only to an existing file", name, dest), ErrNotRegular}
			}
			return target{}, fmt.Errorf("%s: %w", name, Reason(err))
		}
		if fi, err = os.Lstat(real); err != nil {
			return target{}, fmt.Errorf("%s: %w", name, Reason(err))
		}
		what = fmt.Sprintf("%s is a symlink to %s, which", name, dest)
	}
	if kind := Kind(fi.Mode()); kind != "" {
		return target{}, &plainError{fmt.Sprintf("%s is %s, not a regular file; graft writes only regular files", what, kind), ErrNotRegular}
	}
	if fi.Mode().Perm()&0o222 == 0 && !force {
		return target{}, &plainError{fmt.Sprintf("%s is read-only (mode %04o); graft replaces a read-only file only when forced", what, fi.Mode().Perm()), ErrReadOnly}
	}
	return target{path: real, info: fi}, nil
}

// Kind names what a file that is not a regular file is ("a named pipe
// (FIFO)", "a character device", ...), or returns "" for a regular one.
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return ""
	case m.IsDir():
		return "a folder"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}

// write creates t's file whole under a temporary name beside it and renames
// it into place. path is the name the caller gave, for errors.
func (t target) write(path string, data []byte, o options) error {
	dir := filepath.Dir(t.path)
	like := t.info
	if like == nil && o.modeOf != "" {
		if fi, err := os.Stat(o.modeOf); err == nil && fi.Mode().IsRegular() {
			like = fi
		}
	}
	// A replacement starts private and gets the old file's bits just before
	// the rename, so a 0600 file's content is never readable by others.
	perm := fs.FileMode(0o644)
	if like != nil {
		perm = 0o600
	}
	f, err := createTemp(dir, filepath.Base(t.path), perm)
	if err != nil {
		return fmt.Errorf("write %s: cannot create a file in folder %s: %w", path, dir, Reason(err))
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			os.Remove(tmp)
		}
		f.Close()
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, Reason(err))
	}
	if like != nil {
		keepOwner(f, like) // best effort: only root may give a file away
		if err := f.Chmod(like.Mode().Perm()); err != nil {
			return fmt.Errorf("write %s: %w", path, Reason(err))
		}
	}
	if !o.noSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("write %s: %w", path, Reason(err))
		}
	}
	if closeBeforeRename {
		if err := f.Close(); err != nil {
			return fmt.Errorf("write %s: %w", path, Reason(err))
		}
	}
	if err := os.Rename(tmp, t.path); err != nil {
		return fmt.Errorf("write %s: %w", path, Reason(err))
	}
	renamed = true
	// The rename is done; a lost directory flush only risks the new name
	// after a power cut, which the caller cannot act on.
	if !o.noSync {
		syncDir(dir)
	}
	removeDeadTemps(dir)
	return nil
}

// tempMarker is in every temporary file's name: .NAME.graft-tmp-RANDOM.
const tempMarker = ".graft-tmp-"

// IsTemp reports whether the file name is one of graft's temporary files,
// which a listing of a folder should ignore.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMarker)
}

// createTemp creates a new temporary file in dir for a file called name,
// and holds it (see claim) until it is closed.
func createTemp(dir, name string, perm fs.FileMode) (*os.File, error) {
	// Keep the temporary name within the file system's 255-byte limit.
	for len(name) > 128 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	var err error
	for range 100 {
		tmp := filepath.Join(dir, "."+name+tempMarker+strconv.FormatUint(rand.Uint64(), 36))
		var f *os.File
		f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if claim(f) {
			return f, nil
		}
		// A cleaner took the file in the instant before we locked it, and
		// removes it: try another name.
		f.Close()
		err = fmt.Errorf("%s: taken by another process", tmp)
	}
	return nil, err
}

// removeDeadTemps removes the temporary files in dir that no live process
// holds: leftovers of killed runs.
func removeDeadTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if IsTemp(e.Name()) && e.Type().IsRegular() {
			removeIfDead(filepath.Join(dir, e.Name()))
		}
	}
}

// Reason returns what went wrong in a file operation without the path:
// an *fs.PathError's Err. graft's messages name the file themselves, and
// the path inside could be a temporary file's, not the one the user gave.
func Reason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError // a rename's
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
