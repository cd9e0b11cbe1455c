//go:build unix

package fileio

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestWriteNewFile(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o022))
	dir := t.TempDir()
	path := filepath.Join(dir, "out.json")
	if err := WriteFile(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	wantContent(t, path, "new")
	wantMode(t, path, 0o644)
	wantNames(t, dir, "out.json")
}

func TestWriteReplaceKeepsMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret.onnx")
	writeFile(t, path, "old", 0o600)
	before, _ := os.Stat(path)
	if err := WriteFile(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	wantContent(t, path, "new")
	wantMode(t, path, 0o600)
	wantNames(t, dir, "secret.onnx")
	// Replaced by a rename, not rewritten in place: a reader holding the old
	// file still reads it whole.
	if after, _ := os.Stat(path); os.SameFile(before, after) {
		t.Error("the file was rewritten in place, not replaced")
	}
	// Executable bits are permission bits too.
	writeFile(t, path, "old", 0o750)
	if err := WriteFile(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	wantMode(t, path, 0o750)
}

func TestWriteReplaceKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can give a file away")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "theirs.onnx")
	writeFile(t, path, "old", 0o640)
	if err := os.Chown(path, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("owner %d:%d, want 1234:5678", st.Uid, st.Gid)
	}
	wantMode(t, path, 0o640)
	// ModeOf gives a new file the mode and owner of another.
	data := filepath.Join(dir, "theirs.onnx.data")
	if err := WriteFile(data, []byte("w"), ModeOf(path)); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Stat(data)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1234 || st.Gid != 5678 || fi.Mode() != 0o640 {
		t.Errorf("ModeOf: %v %d:%d, want -rw-r----- 1234:5678", fi.Mode(), st.Uid, st.Gid)
	}
}

func TestWriteModeOf(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "m.onnx")
	writeFile(t, model, "m", 0o600)
	data := filepath.Join(dir, "m.onnx.data")
	if err := WriteFile(data, []byte("w"), ModeOf(model)); err != nil {
		t.Fatal(err)
	}
	wantMode(t, data, 0o600)
	// An existing file keeps its own mode.
	writeFile(t, data, "w", 0o640)
	if err := WriteFile(data, []byte("w2"), ModeOf(model)); err != nil {
		t.Fatal(err)
	}
	wantMode(t, data, 0o640)
}

func TestWriteReadOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ro.onnx")
	writeFile(t, path, "old", 0o444)
	err := WriteFile(path, []byte("new"))
	wantErr(t, err, "output "+path+" is read-only (mode 0444); graft replaces a read-only file only when forced")
	if !errors.Is(err, ErrReadOnly) {
		t.Errorf("%v is not ErrReadOnly", err)
	}
	wantContent(t, path, "old")
	wantNames(t, dir, "ro.onnx")

	if err := WriteFile(path, []byte("new"), Force()); err != nil {
		t.Fatal(err)
	}
	wantContent(t, path, "new")
	wantMode(t, path, 0o444)
	wantNames(t, dir, "ro.onnx")
}

// The refused targets stay what they were, and nothing is written beside
// them.
func TestWriteRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	folder := filepath.Join(dir, "folder")
	if err := os.Mkdir(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []specialCase{
		{fifo, "output " + fifo + " is a named pipe (FIFO), not a regular file; graft writes only regular files", fs.ModeNamedPipe | 0o644},
		{sock, "output " + sock + " is a socket, not a regular file; graft writes only regular files", 0},
		{folder, "output " + folder + " is a folder, not a regular file; graft writes only regular files", fs.ModeDir | 0o755},
	}
	cases = append(cases, deviceCases(t, dir)...)
	before := names(t, dir)
	for _, c := range cases {
		done := make(chan error, 1)
		go func() { done <- WriteFile(c.path, []byte("data"), Force()) }()
		select {
		case err := <-done:
			wantErr(t, err, c.want)
			if !errors.Is(err, ErrNotRegular) {
				t.Errorf("%v is not ErrNotRegular", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("writing %s hangs", c.path)
		}
		if c.mode != 0 {
			wantMode(t, c.path, c.mode)
		} else if fi, err := os.Lstat(c.path); err != nil || fi.Mode()&fs.ModeSocket == 0 {
			t.Errorf("%s is no longer a socket", c.path)
		}
	}
	wantNames(t, dir, before...)
	wantNames(t, folder)
}

// /dev/null itself, as the issue reproduced it: as root, a rename would
// replace the device.
func TestWriteDevNull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root could replace /dev/null")
	}
	before := names(t, "/dev")
	err := WriteFile("/dev/null", []byte("data"), Force())
	wantErr(t, err, "output /dev/null is a character device, not a regular file; graft writes only regular files")
	wantMode(t, "/dev/null", fs.ModeDevice|fs.ModeCharDevice|0o666)
	for _, n := range names(t, "/dev") {
		if IsTemp(n) {
			t.Errorf("left /dev/%s (before: %d entries)", n, len(before))
		}
	}
}

func TestWriteThroughSymlink(t *testing.T) {
	root := t.TempDir()
	links, targets := filepath.Join(root, "links"), filepath.Join(root, "targets")
	os.Mkdir(links, 0o755)
	os.Mkdir(targets, 0o755)
	target := filepath.Join(targets, "model-v3.onnx")
	writeFile(t, target, "old", 0o600)
	link := filepath.Join(links, "link.onnx")
	if err := os.Symlink("../targets/model-v3.onnx", link); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve(link); err != nil || got != target {
		t.Errorf("Resolve(%s) = %s, %v; want %s", link, got, err, target)
	}
	if err := WriteFile(link, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if dest, err := os.Readlink(link); err != nil || dest != "../targets/model-v3.onnx" {
		t.Errorf("the link now reads %q, %v", dest, err)
	}
	wantContent(t, target, "new")
	wantMode(t, target, 0o600)
	wantNames(t, links, "link.onnx")
	wantNames(t, targets, "model-v3.onnx")

	// A link to a link to a read-only file.
	link2 := filepath.Join(links, "link2.onnx")
	os.Symlink("link.onnx", link2)
	os.Chmod(target, 0o444)
	wantErr(t, WriteFile(link2, []byte("newer")), "output "+link2+" is a symlink to link.onnx, which is read-only (mode 0444); graft replaces a read-only file only when forced")
	wantContent(t, target, "new")
	if err := WriteFile(link2, []byte("newer"), Force()); err != nil {
		t.Fatal(err)
	}
	wantContent(t, target, "newer")
	wantMode(t, link2, fs.ModeSymlink|0o777)
	wantNames(t, links, "link.onnx", "link2.onnx")
	wantNames(t, targets, "model-v3.onnx")
}

func TestWriteRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	dangling := filepath.Join(dir, "dangling.onnx")
	os.Symlink("gone.onnx", dangling)
	err := WriteFile(dangling, []byte("new"))
	wantErr(t, err, "output "+dangling+" is a symlink to gone.onnx, which does not exist; graft writes through a symlink only to an existing file")
	if !errors.Is(err, ErrNotRegular) {
		t.Errorf("%v is not ErrNotRegular", err)
	}
	toFolder := filepath.Join(dir, "tofolder")
	os.Symlink(".", toFolder)
	wantErr(t, WriteFile(toFolder, []byte("new")), "output "+toFolder+" is a symlink to ., which is a folder, not a regular file; graft writes only regular files")
	toNull := filepath.Join(dir, "null")
	os.Symlink("/dev/null", toNull)
	wantErr(t, WriteFile(toNull, []byte("new")), "output "+toNull+" is a symlink to /dev/null, which is a character device, not a regular file; graft writes only regular files")
	wantMode(t, "/dev/null", fs.ModeDevice|fs.ModeCharDevice|0o666)
	loop := filepath.Join(dir, "loop")
	os.Symlink("loop", loop)
	if err := WriteFile(loop, []byte("new")); err == nil || !strings.HasPrefix(err.Error(), "output "+loop+": ") {
		t.Errorf("a link to itself: %v", err)
	}
	wantNames(t, dir, "dangling.onnx", "loop", "null", "tofolder")
	if _, err := os.Lstat(filepath.Join(dir, "gone.onnx")); err == nil {
		t.Error("writing through a dangling link created its target")
	}
}

func TestWriteBadFolder(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, "x", 0o644)
	missing := filepath.Join(dir, "missing", "out.onnx")
	wantErr(t, WriteFile(missing, []byte("new")), "write "+missing+": cannot create a file in folder "+filepath.Dir(missing)+": no such file or directory")
	under := filepath.Join(file, "out.onnx")
	wantErr(t, WriteFile(under, []byte("new")), "output "+under+": not a directory")
	wantNames(t, dir, "file")
}

// Temporary files of dead writers are removed by the next write in their
// folder; those of live writers, and other files, are left alone.
func TestLeftoverTemps(t *testing.T) {
	dir := t.TempDir()
	dead := filepath.Join(dir, ".out.onnx.graft-tmp-dead")
	writeFile(t, dead, "partial", 0o600)
	live, err := createTemp(dir, "other.onnx", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	// A lock held through another open file of the same process counts as
	// live too, as it would in another process.
	held := filepath.Join(dir, ".held.graft-tmp-x")
	writeFile(t, held, "", 0o600)
	hf, _ := os.Open(held)
	defer hf.Close()
	if ok, err := tryLock(hf); !ok {
		t.Fatal(err)
	}
	deadLink := filepath.Join(dir, ".link.graft-tmp-y")
	os.Symlink("out.onnx", deadLink)
	keep := []string{".hidden", "x.graft-tmp-1", ".graft.lock"}
	for _, k := range keep {
		writeFile(t, filepath.Join(dir, k), "user", 0o644)
	}
	if err := WriteFile(filepath.Join(dir, "out.onnx"), []byte("new")); err != nil {
		t.Fatal(err)
	}
	wantNames(t, dir, append(keep, "out.onnx", filepath.Base(live.Name()), ".held.graft-tmp-x", ".link.graft-tmp-y")...)
}

// A writer killed at any instant leaves the old file or the new one whole,
// and the next write removes what it left.
func TestWriteKilled(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.onnx")
	midWrite, written := 0, false // kills that left a temporary file; whether path was ever written
	for i := range 20 {
		cmd, _ := startHelper(t, "write", path)
		time.Sleep(time.Duration(10+rand.IntN(90)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) && !written {
			continue // killed before its first rename
		}
		if err != nil {
			t.Fatal(err)
		}
		written = true
		if len(b) != 4<<20 || strings.Trim(string(b), string(b[:1])) != "" {
			t.Fatalf("kill %d left a mixed or partial file of %d bytes", i, len(b))
		}
		for _, n := range names(t, dir) {
			if IsTemp(n) {
				midWrite++
			}
		}
		if err := WriteFile(filepath.Join(dir, "other"), []byte("x")); err != nil {
			t.Fatal(err)
		}
		wantNames(t, dir, "other", "out.onnx")
	}
	t.Logf("%d of 20 kills landed during a write", midWrite)
	if midWrite == 0 {
		t.Error("no kill landed during a write: the test proved nothing")
	}
}
