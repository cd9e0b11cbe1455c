package onnx

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// SHA256 returns the hex SHA-256 that identifies m in reports, features
// and checkpoints: of m's bytes as Encode writes them (for a model file
// graft reads and re-encodes unchanged, the file's own SHA-256, as
// sha256sum prints it), followed by the bytes of its external data files,
// if any, so that models differing only there differ.
func SHA256(m *Model) (string, error) {
	b, err := Encode(m)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(b)
	for _, f := range m.ExternalDataFiles() {
		r, err := os.Open(f)
		if err != nil {
			return "", fmt.Errorf("the model's external data: %w", err)
		}
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			return "", fmt.Errorf("the model's external data %s: %w", f, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
