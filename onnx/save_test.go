//go:build unix

package onnx

import (
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary, run again by a test, save models in a
// loop instead of running tests (see TestSaveKilled).
const helperEnv = "GRAFT_ONNX_SAVE_HELPER"

func TestMain(m *testing.M) {
	if which, path, ok := strings.Cut(os.Getenv(helperEnv), ":"); ok {
		saveForever(which, path)
	}
	os.Exit(m.Run())
}

// versions returns the tiny ResNet with its large weights external (the
// small ones stay in the model file), as read and with every weight changed,
// so that a model file paired with the other version's data is evident.
func versions(t testing.TB) [2]*Model {
	vs, err := loadVersions()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func loadVersions() ([2]*Model, error) {
	var vs [2]*Model
	for i := range vs {
		m, err := Load("../testdata/models/resnet_tiny_op13_bn/model.onnx")
		if err != nil {
			return vs, err
		}
		for _, v := range m.Graph.Initializers {
			if i == 1 {
				if err := shift(v); err != nil {
					return vs, err
				}
			}
			if err := v.Const.SetExternal(v.Const.NumElements() > 64); err != nil {
				return vs, err
			}
		}
		vs[i] = m
	}
	return vs, nil
}

// dataFileOf returns the data file m's external tensors are in.
func dataFileOf(m *Model) string {
	for _, v := range m.Graph.Initializers {
		if e := v.Const.External(); e != nil {
			return e.Location
		}
	}
	return ""
}

// shift replaces a float initializer by a copy with 1 added to each
// element.
func shift(v *Value) error {
	f, err := v.Const.Float32s()
	if err != nil {
		return nil // int64 shapes and such stay
	}
	for i := range f {
		f[i]++
	}
	c, err := FromFloat32(v.Name, v.Const.Dims, f)
	v.Const = c
	return err
}

// whichVersion returns the version whose weights m holds, failing the test
// if it holds a mix.
func whichVersion(t *testing.T, m *Model, vs [2]*Model) int {
	t.Helper()
	match := [2]int{}
	for i, v := range m.Graph.Initializers {
		for j := range vs {
			if bytes.Equal(v.Const.Raw(), vs[j].Graph.Initializers[i].Const.Raw()) {
				match[j]++
			}
		}
	}
	n := len(m.Graph.Initializers)
	switch {
	case match[0] == n:
		return 0
	case match[1] == n:
		return 1
	}
	t.Fatalf("the model holds %d weights of version 0 and %d of version 1, of %d", match[0], match[1], n)
	return -1
}

// saveForever saves a version to path until killed: both in turn (which
// "both"), or only version 0 or 1.
func saveForever(which, path string) {
	vs, err := loadVersions()
	if err != nil {
		println(err.Error())
		os.Exit(1)
	}
	for i := 0; ; i++ {
		v := vs[i%2]
		switch which {
		case "0":
			v = vs[0]
		case "1":
			v = vs[1]
		}
		if err := Save(v, path); err != nil {
			println(err.Error())
			os.Exit(1)
		}
	}
}

// startSaver starts a process saving versions to path (see saveForever).
func startSaver(t *testing.T, which, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+which+":"+path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// A Save killed at any instant leaves the old model with its old data or
// the new one with its new data; the next Save removes what it left.
func TestSaveKilled(t *testing.T) {
	vs := versions(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	leftovers, saved := 0, false
	for i := range 25 {
		cmd := startSaver(t, "both", path)
		time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		m, err := Load(path)
		if errors.Is(err, fs.ErrNotExist) && !saved {
			continue // killed before its first save
		}
		if err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		whichVersion(t, m, vs)
		leftovers += len(dirNames(t, dir)) - 2
		if err := Save(vs[0], path); err != nil {
			t.Fatal(err)
		}
		saved = true
		if names := dirNames(t, dir); len(names) != 2 {
			t.Fatalf("after the next Save the folder holds %q", names)
		}
	}
	t.Logf("the kills left %d data or temporary files", leftovers)
	if leftovers == 0 {
		t.Error("no kill landed during a save: the test proved nothing")
	}
}

// Two processes saving different models to one path at once: whichever is
// last, the model is whole and loads.
func TestSaveConcurrent(t *testing.T) {
	vs := versions(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	for i := range 6 {
		a, b := startSaver(t, "0", path), startSaver(t, "1", path)
		time.Sleep(time.Duration(300+rand.IntN(300)) * time.Millisecond)
		a.Process.Kill()
		b.Process.Kill()
		a.Wait()
		b.Wait()
		m, err := Load(path)
		if errors.Is(err, fs.ErrNotExist) && i == 0 {
			continue
		}
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		whichVersion(t, m, vs)
	}
}

// The case: saving a model with external data beside another model
// that reads weights.bin rewrote weights.bin and broke that model. Now the
// other model's files stay byte for byte, and it loads.
func TestSaveBesideAnotherModel(t *testing.T) {
	dir := t.TempDir()
	// a.onnx reads weights.bin, as a PyTorch export may name it.
	vs := versions(t)
	orig := vs[0]
	tmp := filepath.Join(t.TempDir(), "x.onnx")
	if err := Save(orig, tmp); err != nil {
		t.Fatal(err)
	}
	weights := readFile(t, filepath.Join(filepath.Dir(tmp), dataFileOf(orig)))
	for _, v := range orig.Graph.Initializers {
		if e := v.Const.External(); e != nil {
			e.Location = "weights.bin"
		}
	}
	model, err := Encode(orig)
	if err != nil {
		t.Fatal(err)
	}
	a, w := filepath.Join(dir, "a.onnx"), filepath.Join(dir, "weights.bin")
	writeFile(t, a, model)
	writeFile(t, w, weights)

	m, err := Load(a)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.ExternalDataFiles(); !slices.Equal(got, []string{w}) {
		t.Errorf("ExternalDataFiles = %q, want [%s]", got, w)
	}
	for _, v := range m.Graph.Initializers {
		external := v.Const.External() != nil
		if err := shift(v); err != nil {
			t.Fatal(err)
		}
		v.Const.SetExternal(external)
	}
	b := filepath.Join(dir, "b.onnx")
	if err := Save(m, b); err != nil {
		t.Fatal(err)
	}
	unchanged := func() {
		t.Helper()
		if !bytes.Equal(readFile(t, a), model) || !bytes.Equal(readFile(t, w), weights) {
			t.Fatal("a.onnx or weights.bin changed")
		}
		ma, err := Load(a)
		if err != nil {
			t.Fatal(err)
		}
		if whichVersion(t, ma, vs) != 0 {
			t.Error("a.onnx holds the edited weights")
		}
	}
	unchanged()
	mb, err := Load(b)
	if err != nil {
		t.Fatal(err)
	}
	if whichVersion(t, mb, vs) != 1 {
		t.Error("b.onnx does not hold the edited weights")
	}
	names := dirNames(t, dir)
	if len(names) != 4 || !isDataFileOf(names[2], "b.onnx") {
		t.Errorf("the folder holds %q, want a.onnx, b.onnx, b.onnx.HASH.data and weights.bin", names)
	}

	// Saving the edited model over a.onnx on purpose gives it a data file of
	// its own, and leaves weights.bin, which other models may read, alone.
	if err := Save(m, a); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, w), weights) {
		t.Error("weights.bin changed")
	}
	if ma, err := Load(a); err != nil || whichVersion(t, ma, vs) != 1 {
		t.Errorf("a.onnx after saving over it: %v", err)
	}
	if mb, err := Load(b); err != nil || whichVersion(t, mb, vs) != 1 {
		t.Errorf("b.onnx after saving a.onnx: %v", err)
	}
}

// Save removes the data files of its own output that the new model no
// longer names, and nothing else.
func TestSaveRemovesOnlyItsOwnData(t *testing.T) {
	vs := versions(t)
	dir := t.TempDir()
	out, other := filepath.Join(dir, "out.onnx"), filepath.Join(dir, "other.onnx")
	if err := Save(vs[0], out); err != nil {
		t.Fatal(err)
	}
	old := dataFileOf(vs[0])
	if err := Save(vs[0], other); err != nil {
		t.Fatal(err)
	}
	hash := strings.TrimPrefix(old, "out.onnx.")
	keep := []string{"out.onnx.data", "out.onnx.0123.data", "out.onnx.0123456789ABCDEF.data", "out.onnx" + "x." + hash, "other.onnx." + hash}
	for _, k := range keep[:4] {
		writeFile(t, filepath.Join(dir, k), []byte("user"))
	}
	if err := Save(vs[1], out); err != nil {
		t.Fatal(err)
	}
	now := dataFileOf(vs[1])
	if now == old {
		t.Fatal("another content, the same data file name")
	}
	want := append(keep, "out.onnx", "other.onnx", now)
	slices.Sort(want)
	if names := dirNames(t, dir); !slices.Equal(names, want) {
		t.Errorf("the folder holds %q, want %q", names, want)
	}
	if _, err := Load(other); err != nil {
		t.Error(err)
	}
}

// The data file gets the model file's permissions: a private model does not
// get world-readable weights.
func TestSaveDataFileMode(t *testing.T) {
	vs := versions(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	writeFile(t, path, []byte("old"))
	os.Chmod(path, 0o600)
	if err := Save(vs[0], path); err != nil {
		t.Fatal(err)
	}
	for _, name := range dirNames(t, dir) {
		if fi, _ := os.Stat(filepath.Join(dir, name)); fi.Mode() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode())
		}
	}
}

func TestSaveReadOnlyModel(t *testing.T) {
	vs := versions(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	writeFile(t, path, []byte("old"))
	os.Chmod(path, 0o444)
	err := Save(vs[0], path)
	wantErr(t, err, "output "+path+" is read-only (mode 0444); graft replaces a read-only file only when forced")
	if b := readFile(t, path); string(b) != "old" {
		t.Error("the read-only model changed")
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("a refused Save left %q", names)
	}
	if err := (SaveOptions{Force: true}).Save(vs[0], path); err != nil {
		t.Fatal(err)
	}
	if m, err := Load(path); err != nil || whichVersion(t, m, vs) != 0 {
		t.Errorf("forced Save: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode() != 0o444 {
		t.Errorf("forced Save changed the mode to %v", fi.Mode())
	}
}

// Through a symlink, the model file pointed to is replaced and its data
// file goes beside it, named after it, so that it loads wherever it is
// opened from; the link's folder gets nothing new.
func TestSaveThroughSymlink(t *testing.T) {
	vs := versions(t)
	root := t.TempDir()
	links, models := filepath.Join(root, "links"), filepath.Join(root, "models")
	os.Mkdir(links, 0o755)
	os.Mkdir(models, 0o755)
	target := filepath.Join(models, "v3.onnx")
	writeFile(t, target, []byte("old"))
	link := filepath.Join(links, "latest.onnx")
	if err := os.Symlink("../models/v3.onnx", link); err != nil {
		t.Fatal(err)
	}
	if err := Save(vs[1], link); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Error("the link is no longer a link")
	}
	if names := dirNames(t, links); len(names) != 1 {
		t.Errorf("the link's folder holds %q", names)
	}
	names := dirNames(t, models)
	if len(names) != 2 || !isDataFileOf(names[1], "v3.onnx") {
		t.Errorf("the target's folder holds %q", names)
	}
	if m, err := Load(target); err != nil || whichVersion(t, m, vs) != 1 {
		t.Errorf("Load(%s): %v", target, err)
	}
}

// A target that is not a regular file is refused before the data file is
// written, and without waiting on a pipe.
func TestSaveRefusedWritesNothing(t *testing.T) {
	vs := versions(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "model.onnx")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	done := make(chan error, 1)
	go func() { done <- Save(vs[0], fifo) }()
	select {
	case err := <-done:
		wantErr(t, err, "output "+fifo+" is a named pipe (FIFO), not a regular file; graft writes only regular files")
	case <-time.After(10 * time.Second):
		t.Fatal("Save hangs on a named pipe")
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("a refused Save left %q", names)
	}
}
