// Package testenv decides, for every test, what happens when reference data
// or a reference tool is missing: the test (or the part of it that needs
// them) is skipped with the reason and how to set it up, unless
// GRAFT_REFERENCE=1 (set by CI), which makes it a failure. In CI every
// reference check runs.
//
// The reference data lives outside the repository's committed files; each
// source can be moved with an environment variable, for instance to an empty
// folder to check that its absence is reported:
//
//	GRAFT_BIG            full-size models and references (default testdata/big)
//	GRAFT_ONNX_TESTDATA  ONNX backend tests (default /usr/share/libonnx-testdata/data)
//	GRAFT_FASHION_MNIST  Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist)
//
// It imports nothing of graft's, so every package's tests can use it.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
)

// Required reports whether reference data and tools must be present
// (GRAFT_REFERENCE=1).
func Required() bool { return os.Getenv("GRAFT_REFERENCE") == "1" }

// Missing skips t, or fails it when references are required, with the
// message saying what is missing and how to set it up.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("reference missing (GRAFT_REFERENCE=1): %s", msg)
	}
	t.Skipf("reference missing: %s", msg)
}

// MissingPart is Missing for an optional part of a test that cannot be a
// subtest of its own (a fuzz target's seeds): when references are not
// required, it logs the message and the test goes on without that part.
func MissingPart(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("reference missing (GRAFT_REFERENCE=1): %s", msg)
	}
	t.Logf("reference missing, going on without it: %s", msg)
}

// Root returns the repository's root folder.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// A Source is reference data that the repository does not commit.
type Source struct {
	Name  string // what it is, for messages
	Env   string // the environment variable that moves it
	Setup string // how to install it
	dir   string // where it is unless Env says otherwise
}

// The reference data sources.
var (
	Big = Source{
		Name:  "full-size models and references",
		Env:   "GRAFT_BIG",
		Setup: "bash testdata/gen/setup.sh",
		dir:   filepath.Join(Root(), "testdata", "big"),
	}
	Backend = Source{
		Name:  "ONNX backend test data",
		Env:   "GRAFT_ONNX_TESTDATA",
		Setup: "apt-get install libonnx-testdata",
		dir:   "/usr/share/libonnx-testdata/data",
	}
	FashionMNIST = Source{
		Name:  "Fashion-MNIST",
		Env:   "GRAFT_FASHION_MNIST",
		Setup: "apt-get install dataset-fashion-mnist",
		dir:   "/usr/share/datasets/fashion-mnist",
	}
)

// Dir returns the source's folder.
func (s Source) Dir() string {
	if d := os.Getenv(s.Env); d != "" {
		return d
	}
	return s.dir
}

// Path joins elem to the source's folder.
func (s Source) Path(elem ...string) string {
	return filepath.Join(append([]string{s.Dir()}, elem...)...)
}

// Files returns the paths of the named files of s, calling Missing unless
// each is a regular file.
func (s Source) Files(t testing.TB, names ...string) []string {
	t.Helper()
	var paths []string
	for _, name := range names {
		p := s.Path(name)
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			s.missing(t, Missing, "no file %s", p)
		}
		paths = append(paths, p)
	}
	return paths
}

// FilesPart returns the paths of those of the named files of s that are
// regular files, calling MissingPart once for the others.
func (s Source) FilesPart(t testing.TB, names ...string) []string {
	t.Helper()
	var paths, missing []string
	for _, name := range names {
		p := s.Path(name)
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			missing = append(missing, p)
			continue
		}
		paths = append(paths, p)
	}
	if len(missing) > 0 {
		s.missing(t, MissingPart, "no file %s (%d of %d files missing)", missing[0], len(missing), len(names))
	}
	return paths
}

// Glob returns the files of s matching pattern, sorted, calling Missing
// when there are fewer than min.
func (s Source) Glob(t testing.TB, pattern string, min int) []string {
	t.Helper()
	paths, err := filepath.Glob(s.Path(pattern))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			files = append(files, p)
		}
	}
	sort.Strings(files)
	if len(files) < min {
		s.missing(t, Missing, "%d files match %s, want at least %d", len(files), s.Path(pattern), min)
	}
	return files
}

func (s Source) missing(t testing.TB, missing func(testing.TB, string, ...any), format string, args ...any) {
	t.Helper()
	missing(t, "%s: %s (set up with %s, or point %s at a copy)", s.Name, fmt.Sprintf(format, args...), s.Setup, s.Env)
}
