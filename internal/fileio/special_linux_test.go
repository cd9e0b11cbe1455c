package fileio

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// deviceCases makes a character and a block device in dir, as root only.
func deviceCases(t *testing.T, dir string) []specialCase {
	if os.Geteuid() != 0 {
		return nil
	}
	cdev := filepath.Join(dir, "null")
	if err := unix.Mknod(cdev, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	os.Chmod(cdev, 0o666)
	bdev := filepath.Join(dir, "loop")
	if err := unix.Mknod(bdev, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))); err != nil {
		t.Fatal(err)
	}
	return []specialCase{
		{cdev, "output " + cdev + " is a character device, not a regular file; graft writes only regular files", fs.ModeDevice | fs.ModeCharDevice | 0o666},
		{bdev, "output " + bdev + " is a block device, not a regular file; graft writes only regular files", fs.ModeDevice | 0o600},
	}
}

// mountTmpfs mounts a small tmpfs with the given options for the test, or
// skips it where mounting is not allowed.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, 0) })
	return dir
}

// A write that fails half way (the disk is full) leaves the old file and no
// temporary file.
func TestWriteDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "size=256k")
	path := filepath.Join(dir, "out.onnx")
	writeFile(t, path, "old", 0o644)
	err := WriteFile(path, make([]byte, 1<<20))
	wantErr(t, err, "write "+path+": no space left on device")
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("%v is not ENOSPC", err)
	}
	wantContent(t, path, "old")
	wantNames(t, dir, "out.onnx")
}

func TestWriteReadOnlyFileSystem(t *testing.T) {
	dir := mountTmpfs(t, "size=64k")
	path := filepath.Join(dir, "out.onnx")
	writeFile(t, path, "old", 0o644)
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Skip(err)
	}
	wantErr(t, WriteFile(path, []byte("new")), "write "+path+": cannot create a file in folder "+dir+": read-only file system")
	wantContent(t, path, "old")
	wantNames(t, dir, "out.onnx")
}

// A folder that does not accept files is found before any work, whoever
// runs graft (root ignores permission bits, not a read-only mount).
func TestPlanUnwritableFolder(t *testing.T) {
	dir := mountTmpfs(t, "size=64k")
	os.Mkdir(filepath.Join(dir, "out"), 0o755)
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Skip(err)
	}
	for _, c := range []struct {
		out  string
		dir  bool
		want string
	}{
		{filepath.Join(dir, "out.onnx"), false, "-o " + dir + "/out.onnx: cannot create a file in folder " + dir + ": read-only file system"},
		{filepath.Join(dir, "out"), true, "-o " + dir + "/out: cannot create a file in folder " + dir + "/out: read-only file system"},
		{filepath.Join(dir, "new", "run"), true, "-o " + dir + "/new/run: cannot create a file in folder " + dir + ": read-only file system"},
	} {
		p := &Plan{}
		if c.dir {
			p.OutputDir(c.out, "-o")
		} else {
			p.Output(c.out, "-o")
		}
		wantErr(t, p.Check(), c.want)
	}
}
