package onnx

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/graft-dev/graft/internal/memlimit"
	"github.com/graft-dev/graft/internal/memtest"
)

// fifo makes a named pipe and writes data to it from a goroutine (an
// endless stream when data is an io.Reader that never ends); the writer
// stops when the reader closes its end.
func fifo(t *testing.T, name string, data io.Reader) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		io.Copy(w, data) // ends with EPIPE once the reader is gone
		w.Close()
	}()
	t.Cleanup(func() { <-done })
	return path
}

// endless repeats b forever.
type endless []byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = e[i%len(e)]
	}
	return len(p), nil
}

func TestLoadSpecialFiles(t *testing.T) {
	_, err := Load("/dev/zero")
	want := "load /dev/zero: not an ONNX model: the protobuf does not decode: field number 0 at byte 0 (the data starts 00)"
	if err == nil || err.Error() != want {
		t.Errorf("/dev/zero:\n got %v\nwant %s", err, want)
	}
	_, err = LoadTensor("/dev/zero")
	want = "load /dev/zero: not a TensorProto: the protobuf does not decode: field number 0 at byte 0 (the data starts 00)"
	if err == nil || err.Error() != want {
		t.Errorf("/dev/zero as a tensor:\n got %v\nwant %s", err, want)
	}

	// A model through a pipe reads as from a file.
	good := marshal(t, tinyProto())
	m, err := Load(fifo(t, "model.onnx", bytes.NewReader(good)))
	if err != nil || m.Graph.Name != "tiny" {
		t.Errorf("a model through a pipe: %v", err)
	}

	// A pipe cut short inside a field.
	_, err = Load(fifo(t, "cut.onnx", bytes.NewReader(good[:len(good)-3])))
	wantErr(t, err, "cut.onnx: not an ONNX model: the protobuf does not decode: it ends inside the field at byte", "(truncated file?)")

	// An endless stream of one valid field (ir_version = 8, over and over)
	// is read up to the memory limit, then refused.
	defer memlimit.Set(0, "")
	memlimit.Set(1<<20, "--memory-limit")
	_, err = Load(fifo(t, "endless.onnx", endless{0x08, 0x08}))
	wantErr(t, err, "endless.onnx: decoding a model stream of over 512.0 KiB needs 1.0 MiB, over graft's memory limit of 1.0 MiB (--memory-limit)")
	if !errors.Is(err, memlimit.ErrExceeded) {
		t.Errorf("%v does not wrap memlimit.ErrExceeded", err)
	}

	// A field claiming more bytes than the limit is refused before they
	// are read (or allocated).
	_, err = Load(fifo(t, "claim.onnx", io.MultiReader(bytes.NewReader([]byte{0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f}), rand.Reader)))
	wantErr(t, err, "claim.onnx: decoding a model stream of over 4.0 GiB needs 8.0 GiB, over graft's memory limit of 1.0 MiB (--memory-limit)")
}

func TestLoadChecksSizeFirst(t *testing.T) {
	defer memlimit.Set(0, "")
	memlimit.Set(1000, "--memory-limit")
	path := "../testdata/models/cnn/model.onnx"
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	want := "load ../testdata/models/cnn/model.onnx: decoding the model file (" + memlimit.Format(st.Size()) + ") needs " +
		memlimit.Format(2*st.Size()) + ", over graft's memory limit of 1000 bytes (--memory-limit); set GRAFT_MEMORY_LIMIT or --memory-limit to change it"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// /dev/zero as a model, with the machine's default limit: refused after
// reading its first byte, so the process stays small.
func TestDevZeroMemory(t *testing.T) {
	r := memtest.Run(t, func() error {
		_, err := Load("/dev/zero")
		return err
	})
	r.Want(t, "load /dev/zero: not an ONNX model: the protobuf does not decode: field number 0 at byte 0 (the data starts 00)", 300<<20)
}

// FuzzReadStream checks the stream reader against the decoder: it never
// panics, its errors are one line, what it accepts is the stream's bytes
// unchanged, and it refuses no model that Decode accepts.
func FuzzReadStream(f *testing.F) {
	// Small seeds only: the fuzzer spends long minimising large ones.
	f.Add(marshal(f, tinyProto()))
	f.Add(marshal(f, nestedProto(3)))
	f.Add([]byte{0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0x0b, 0x08, 0x01, 0x0c})
	f.Add([]byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := modelMessage.read(bytes.NewReader(b))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if _, derr := Decode(b); derr == nil {
				t.Fatalf("the stream reader refuses a model Decode accepts: %v", err)
			}
			return
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("read %d bytes of %d, or changed them", len(got), len(b))
		}
	})
}

// External data is checked against the limit before it is allocated.
func TestExternalDataMemory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "w.bin"), make([]byte, 4000))
	p := extProto("location", "w.bin")
	p.Graph.Initializer[0].Dims = []int64{1000}
	path := filepath.Join(dir, "model.onnx")
	writeFile(t, path, marshal(t, p))
	defer memlimit.Set(0, "")
	memlimit.Set(3999, "--memory-limit")
	_, err := Load(path)
	want := "load " + path + `: the external data up to tensor "W" needs 3.9 KiB, over graft's memory limit of 3.9 KiB (--memory-limit); set GRAFT_MEMORY_LIMIT or --memory-limit to change it`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	memlimit.Set(4000, "--memory-limit")
	if _, err := Load(path); err != nil {
		t.Errorf("at the limit: %v", err)
	}
}
