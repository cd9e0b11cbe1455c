package onnx

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/graft-dev/graft/internal/memlimit"
	"google.golang.org/protobuf/encoding/protowire"
)

// decodeFactor is how many times its file size a message takes to read and
// decode: the file's bytes and the decoded protobuf, which holds a copy of
// every tensor's data (the IR then shares the protobuf's).
const decodeFactor = 2

// A message names what readFile and read read: an ONNX model or a
// TensorProto.
type message struct {
	what   string // "model", "tensor"
	notOne error  // wrapped by the error for data that is not one
}

var (
	modelMessage  = message{"model", ErrNotONNX}
	tensorMessage = message{"tensor", errors.New("not a TensorProto")}
)

// zipMagic starts a zip archive, such as a PyTorch checkpoint.
var zipMagic = []byte("PK\x03\x04")

// readFile reads the protobuf message in the file at path, within
// protobuf's 2 GiB limit and graft's memory limit: a regular file's size
// is checked before reading it; special files (pipes, devices) are read
// field by field, only as far as the protobuf framing allows, up to the
// same limits.
func (m message) readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%w: %s is a folder", m.notOne, path)
	}
	if st.Mode().IsRegular() {
		size := st.Size()
		if size > maxModelBytes {
			return nil, fmt.Errorf("%w: the file is %s, over protobuf's 2 GiB limit", m.notOne, memlimit.Format(size))
		}
		if err := memlimit.Check(fmt.Sprintf("decoding the %s file (%s)", m.what, memlimit.Format(size)), size*decodeFactor); err != nil {
			return nil, err
		}
		b := make([]byte, size)
		n, err := io.ReadFull(f, b)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		return b[:n], nil // decoding checks the rest
	}
	return m.read(f)
}

// read reads one protobuf message from a stream of unknown length. The
// top-level fields are checked as they arrive (a valid field number and
// wire type, a length within the limits), so data that is not a protobuf
// message, such as /dev/zero or random bytes, is refused after its first
// bytes, and a stream is never read past protobuf's 2 GiB limit or past
// what graft's memory limit lets it decode. Memory grows with the bytes
// actually read, not with the lengths the stream claims.
func (m message) read(r io.Reader) ([]byte, error) {
	lim, err := memlimit.Get()
	if err != nil {
		return nil, err
	}
	budget := min(int64(maxModelBytes), lim.Bytes/decodeFactor)
	var buf bytes.Buffer
	br := bufio.NewReader(r)
	if b, _ := br.Peek(len(zipMagic)); bytes.Equal(b, zipMagic) {
		return nil, fmt.Errorf("%w: %s", m.notOne, zipAdvice)
	}
	notProto := func(format string, args ...any) error {
		return fmt.Errorf("%w: the protobuf does not decode: %s", m.notOne, fmt.Sprintf(format, args...))
	}
	// over reports data going on past the budget.
	over := func(n int64) error {
		if budget == maxModelBytes {
			return fmt.Errorf("%w: the stream goes on past protobuf's 2 GiB limit", m.notOne)
		}
		return memlimit.Check(fmt.Sprintf("decoding a %s stream of over %s", m.what, memlimit.Format(n)), n*decodeFactor)
	}
	varint := func() (uint64, error) {
		var b [binaryMaxVarint]byte
		for i := range b {
			c, err := br.ReadByte()
			if err != nil {
				return 0, err
			}
			b[i] = c
			buf.WriteByte(c)
			if c < 0x80 {
				v, n := protowire.ConsumeVarint(b[:i+1])
				if n < 0 {
					return 0, notProto("a varint out of range at byte %d", buf.Len())
				}
				return v, nil
			}
		}
		return 0, notProto("a varint longer than 10 bytes at byte %d", buf.Len())
	}
	for {
		start := int64(buf.Len())
		key, err := varint()
		if err == io.EOF && int64(buf.Len()) == start {
			return buf.Bytes(), nil // a message ends between fields
		}
		if err != nil {
			return nil, m.streamError(err, start)
		}
		num, typ := protowire.DecodeTag(key)
		if num < protowire.MinValidNumber || num > protowire.MaxValidNumber {
			return nil, notProto("field number %d at byte %d (the data starts % x)", num, start, firstBytes(buf.Bytes()))
		}
		var n int64 // payload bytes to copy
		switch typ {
		case protowire.VarintType:
			if _, err := varint(); err != nil {
				return nil, m.streamError(err, start)
			}
		case protowire.Fixed32Type:
			n = 4
		case protowire.Fixed64Type:
			n = 8
		case protowire.BytesType:
			l, err := varint()
			if err != nil {
				return nil, m.streamError(err, start)
			}
			n = int64(min(l, 1<<62))
		case protowire.StartGroupType, protowire.EndGroupType:
			// Deprecated groups: their fields follow as top-level ones.
		default:
			return nil, notProto("field %d at byte %d has wire type %d (the data starts % x)", num, start, typ, firstBytes(buf.Bytes()))
		}
		if end := int64(buf.Len()) + n; end > budget {
			return nil, over(end)
		}
		if _, err := io.CopyN(&buf, br, n); err != nil {
			return nil, m.streamError(err, start)
		}
	}
}

const binaryMaxVarint = 10

func firstBytes(b []byte) []byte { return b[:min(len(b), 8)] }

// streamError describes a read that stopped inside the field starting at
// byte at: for an unexpected end, the data is truncated.
func (m message) streamError(err error, at int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the protobuf does not decode: it ends inside the field at byte %d (truncated file?)", m.notOne, at)
	}
	return err
}

const zipAdvice = "this is a zip archive, such as a PyTorch .pt/.pth checkpoint; export the model with torch.onnx.export first"
