//go:build unix

package fileio

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeSet(t *testing.T, s *Set, content string) {
	t.Helper()
	for _, name := range []string{"model.onnx", "optimizer.state"} {
		if err := WriteFile(s.Path(name), []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "checkpoint")
	_, err := CurrentSet(dir)
	wantErr(t, err, "no committed set in "+dir)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%v is not fs.ErrNotExist", err)
	}

	s, err := BeginSet(dir)
	if err != nil {
		t.Fatal(err)
	}
	writeSet(t, s, "one")
	if _, err := CurrentSet(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an uncommitted set is current: %v", err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	gen1 := filepath.Join(dir, "gen-000001")
	if cur, err := CurrentSet(dir); cur != gen1 || err != nil {
		t.Errorf("CurrentSet = %s, %v; want %s", cur, err, gen1)
	}

	s, _ = BeginSet(dir)
	writeSet(t, s, "two")
	if cur, _ := CurrentSet(dir); cur != gen1 {
		t.Errorf("before the commit, CurrentSet = %s, want %s", cur, gen1)
	}
	wantContent(t, filepath.Join(gen1, "model.onnx"), "one")
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	cur, _ := CurrentSet(dir)
	wantContent(t, filepath.Join(cur, "model.onnx"), "two")
	wantContent(t, filepath.Join(cur, "optimizer.state"), "two")
	wantNames(t, dir, "current", "gen-000002")
	if err := s.Commit(); err == nil {
		t.Error("a second Commit of one set succeeded")
	}

	// A discarded set, and one abandoned (as by a kill), leave nothing once
	// the next set begins.
	s, _ = BeginSet(dir)
	writeSet(t, s, "discarded")
	if err := s.Discard(); err != nil {
		t.Fatal(err)
	}
	wantNames(t, dir, "current", "gen-000002")
	s, _ = BeginSet(dir)
	writeSet(t, s, "abandoned")
	s, _ = BeginSet(dir)
	wantNames(t, dir, "current", "gen-000002", filepath.Base(filepath.Dir(s.Path("x"))))
	s.Discard()

	// Files not ours are left alone.
	writeFile(t, filepath.Join(dir, "notes.txt"), "mine", 0o644)
	os.Mkdir(filepath.Join(dir, "gen-x"), 0o755)
	s, _ = BeginSet(dir)
	writeSet(t, s, "three")
	s.Commit()
	wantNames(t, dir, "current", "gen-x", "notes.txt", filepath.Base(filepath.Dir(s.Path("x"))))

	// A pointer that does not name a set is an error, and then nothing is
	// removed.
	writeFile(t, filepath.Join(dir, "current"), "gen-000099\n", 0o644)
	before := names(t, dir)
	_, err = CurrentSet(dir)
	wantErr(t, err, "set in "+dir+": "+filepath.Join(dir, "current")+" names gen-000099, which is missing")
	if _, err := BeginSet(dir); err == nil {
		t.Error("BeginSet with a broken pointer succeeded")
	}
	wantNames(t, dir, before...)
	writeFile(t, filepath.Join(dir, "current"), "../../etc\n", 0o644)
	_, err = CurrentSet(dir)
	wantErr(t, err, "set in "+dir+": "+filepath.Join(dir, "current")+` names "../../etc", not a generation folder`)
}

// A run killed at any instant while committing checkpoints leaves the last
// complete set current, with every file of one set; the next commit leaves
// only itself.
func TestSetKilled(t *testing.T) {
	dir := t.TempDir()
	last, leftovers := 0, 0
	for i := range 30 {
		cmd, _ := startHelper(t, "sets", dir)
		time.Sleep(time.Duration(10+rand.IntN(80)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		cur, err := CurrentSet(dir)
		if errors.Is(err, fs.ErrNotExist) && last == 0 {
			continue // killed before its first commit
		}
		if err != nil {
			t.Fatal(err)
		}
		n, _ := genNumber(filepath.Base(cur))
		if n < last {
			t.Fatalf("kill %d: set %d is current after set %d", i, n, last)
		}
		for _, f := range setFiles {
			b, err := os.ReadFile(filepath.Join(cur, f.name))
			if err != nil {
				t.Fatalf("kill %d: set %d is incomplete: %v", i, n, err)
			}
			if string(b) != string(setContent(n, f.size)) {
				t.Fatalf("kill %d: %s of set %d does not hold set %d's content", i, f.name, n, n)
			}
		}
		wantNames(t, cur, "metrics.json", "model.onnx", "optimizer.state")
		leftovers += len(names(t, dir)) - 2

		s, err := BeginSet(dir)
		if err != nil {
			t.Fatal(err)
		}
		last, _ = genNumber(filepath.Base(filepath.Dir(s.Path("x"))))
		for _, f := range setFiles {
			if err := WriteFile(s.Path(f.name), setContent(last, f.size)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
		wantNames(t, dir, "current", filepath.Base(filepath.Dir(s.Path("x"))))
	}
	t.Logf("the kills left %d unfinished sets and temporary files", leftovers)
	if last == 0 || leftovers == 0 {
		t.Errorf("no kill landed during a commit (last set %d): the test proved nothing", last)
	}
}
