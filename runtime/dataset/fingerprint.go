package dataset

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// Fingerprint returns a hex SHA-256 that changes when the data set's
// examples change: the classes, and for every example its label and its
// image (in-memory pixels, or a file's name relative to the data set's
// folder, size and modification time, which stand for its content without
// reading every image). A resumed run compares fingerprints to refuse
// continuing on other data.
func (d *Dataset) Fingerprint() string {
	h := sha256.New()
	num := func(n int64) {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(n))
		h.Write(b[:])
	}
	str := func(s string) { num(int64(len(s))); h.Write([]byte(s)) }
	num(int64(len(d.classes)))
	for _, c := range d.classes {
		str(c)
	}
	num(int64(len(d.labels)))
	for i, l := range d.labels {
		num(int64(l))
		if m := d.images; m != nil {
			size := m.Rows * m.Cols
			num(int64(m.Rows))
			num(int64(m.Cols))
			h.Write(m.Pixels[d.rows[i]*size : (d.rows[i]+1)*size])
			continue
		}
		p := d.paths[i]
		if rel, err := filepath.Rel(d.source, p); err == nil {
			str(filepath.ToSlash(rel))
		} else {
			str(p)
		}
		if st, err := os.Stat(p); err == nil {
			num(st.Size())
			num(st.ModTime().UnixNano())
		} else {
			str(fmt.Sprint(err))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
