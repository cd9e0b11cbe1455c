//go:build unix

package fileio

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary, run again by startHelper, act as a
// second process instead of running tests: its value names the helper.
const helperEnv = "GRAFT_FILEIO_HELPER"

// TestMain runs a helper when the test binary is re-executed as one.
func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		helpers[name](os.Args[len(os.Args)-1])
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helpers are the second processes the tests start, by name; each gets one
// argument.
var helpers = map[string]func(arg string){
	// lock takes the lock of the folder arg, says "locked" and waits to be
	// killed; or prints why it could not.
	"lock": func(dir string) {
		l, err := LockDir(dir)
		if err != nil {
			os.Stdout.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(time.Hour)
		l.Unlock()
	},
	// write rewrites the file arg with 4 MiB of one byte value, the next
	// value each time, until killed.
	"write": func(path string) {
		for i := 0; ; i++ {
			if err := WriteFile(path, []byte(strings.Repeat(string(rune('a'+i%26)), 4<<20))); err != nil {
				println(err.Error())
				os.Exit(1)
			}
		}
	},
	// sets commits sets in the folder arg until killed: in set N, every file
	// holds N.
	"sets": func(dir string) {
		for {
			s, err := BeginSet(dir)
			if err != nil {
				println(err.Error())
				os.Exit(1)
			}
			n, _ := genNumber(filepath.Base(filepath.Dir(s.Path("x"))))
			for _, f := range setFiles {
				if err := WriteFile(s.Path(f.name), setContent(n, f.size)); err != nil {
					println(err.Error())
					os.Exit(1)
				}
			}
			if err := s.Commit(); err != nil {
				println(err.Error())
				os.Exit(1)
			}
		}
	},
}

// setFiles are the files of one checkpoint in the kill test, with sizes like
// a model's, an optimizer state's and metrics'.
var setFiles = []struct {
	name string
	size int
}{{"model.onnx", 1 << 20}, {"optimizer.state", 2 << 20}, {"metrics.json", 100}}

// setContent is the content of a file of size bytes in set n.
func setContent(n, size int) []byte {
	return []byte(strings.Repeat(fmt.Sprintf("%07d\n", n), size/8+1)[:size])
}

// startHelper runs the helper name with arg in a new process, and returns
// it with its standard output.
func startHelper(t *testing.T, name, arg string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", arg)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, bufio.NewReader(out)
}

// A specialCase is a file that is not regular, the error a write to it
// gets, and its mode, which must stay (0 for a socket).
type specialCase struct {
	path, want string
	mode       fs.FileMode
}

// names lists the entries of dir, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range es {
		ns = append(ns, e.Name())
	}
	slices.Sort(ns)
	return ns
}

func wantNames(t *testing.T, dir string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

func writeFile(t *testing.T, path, content string, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func wantContent(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s holds %q, want %q", path, b, want)
	}
}

func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
	}
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if err.Error() != want {
		t.Errorf("error\n  %s\nwant\n  %s", err, want)
	}
}
