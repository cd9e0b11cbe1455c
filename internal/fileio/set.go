package fileio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A set lives in a folder of generations: each set is written into a new
// folder gen-NNNNNN, and committing it replaces the small file "current",
// which names the complete generation, atomically. A kill before that rename
// leaves the old pointer and so the old set; after it, the new one. Nothing
// but the pointer is ever replaced, so no instant mixes two sets.
const (
	currentName = "current"
	genPrefix   = "gen-"
)

// A Set is a group of files written together and committed as one unit.
type Set struct {
	dir, name string
	done      bool
	noSync    bool
}

// BeginSet starts a new set in dir, creating dir if needed, and removes what
// interrupted sets left there: every generation but the current one, and
// dead temporary files. The caller must be dir's only writer: it holds
// LockDir on dir or a folder above it.
//
// With NoSync, Commit does not flush the set to disk: a kill of the process
// still leaves the old set or the new one whole, a crash of the machine may
// not (see NoSync).
func BeginSet(dir string, opts ...Option) (*Set, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("begin set in %s: %w", dir, err)
	}
	cur, err := readCurrent(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("begin set in %s: %w", dir, err)
	}
	next := 1
	for _, e := range entries {
		n, ok := genNumber(e.Name())
		if !ok {
			continue
		}
		next = max(next, n+1)
		if e.Name() != cur {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("begin set in %s: remove an unfinished set: %w", dir, err)
			}
		}
	}
	removeDeadTemps(dir)
	s := &Set{dir: dir, name: fmt.Sprintf("%s%06d", genPrefix, next), noSync: collect(opts).noSync}
	if err := os.Mkdir(filepath.Join(dir, s.name), 0o755); err != nil {
		return nil, fmt.Errorf("begin set in %s: %w", dir, err)
	}
	return s, nil
}

// Path returns where to write the set's file called name.
func (s *Set) Path(name string) string { return filepath.Join(s.dir, s.name, name) }

// Commit makes the set current: CurrentSet returns it from now on, and the
// previous set is removed.
func (s *Set) Commit() error {
	if s.done {
		return fmt.Errorf("commit set %s: already committed or discarded", filepath.Join(s.dir, s.name))
	}
	gen := filepath.Join(s.dir, s.name)
	// Flush every file of the set before the pointer names it, however the
	// caller wrote them.
	var pointerOpts []Option
	if s.noSync {
		pointerOpts = append(pointerOpts, NoSync())
	}
	err := filepath.WalkDir(gen, func(path string, d fs.DirEntry, err error) error {
		if s.noSync {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return syncDir(path)
		case d.Type().IsRegular():
			return syncFile(path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit set %s: %w", gen, err)
	}
	if err := WriteFile(filepath.Join(s.dir, currentName), []byte(s.name+"\n"), pointerOpts...); err != nil {
		return fmt.Errorf("commit set %s: %w", gen, err)
	}
	s.done = true
	// The new set is committed; an old generation that cannot be removed now
	// is removed by the next BeginSet.
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if _, ok := genNumber(e.Name()); ok && e.Name() != s.name {
			os.RemoveAll(filepath.Join(s.dir, e.Name()))
		}
	}
	return nil
}

// Discard removes an uncommitted set.
func (s *Set) Discard() error {
	if s.done {
		return nil
	}
	s.done = true
	return os.RemoveAll(filepath.Join(s.dir, s.name))
}

// CurrentSet returns the folder of dir's last committed set. With none, the
// error wraps fs.ErrNotExist.
func CurrentSet(dir string) (string, error) {
	cur, err := readCurrent(dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, cur), nil
}

// readCurrent returns the name of the current generation in dir.
func readCurrent(dir string) (string, error) {
	path := filepath.Join(dir, currentName)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", &plainError{"no committed set in " + dir, fs.ErrNotExist}
	}
	if err != nil {
		return "", fmt.Errorf("set in %s: %w", dir, Reason(err))
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("set in %s: %s is not a regular file", dir, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("set in %s: %w", dir, Reason(err))
	}
	name := strings.TrimSpace(string(b))
	if _, ok := genNumber(name); !ok {
		return "", fmt.Errorf("set in %s: %s names %q, not a generation folder", dir, path, name)
	}
	if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("set in %s: %s names %s, which is missing", dir, path, name)
	}
	return name, nil
}

// genNumber returns N for a generation folder's name gen-NNNNNN.
func genNumber(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, genPrefix)
	if !ok || digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	return n, err == nil
}

// syncFile flushes a regular file to disk.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
