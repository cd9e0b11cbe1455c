package train

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"

	"github.com/graft-dev/graft/internal/fileio"
)

// stateMagic marks an optimizer state file; the number is its format.
const stateMagic = "graft optimizer state 1"

type stateFile struct {
	Magic     string
	Optimizer string
	Params    []paramFile // sorted by name
}

type paramFile struct {
	Name    string
	Step    int64
	Buffers []bufferFile // sorted by name
}

// A bufferFile holds a buffer as little-endian IEEE floats.
type bufferFile struct {
	Name string
	Bits int // 32 or 64
	Data []byte
}

// SaveState writes o's state to path, atomically: a crash leaves the old
// file or the new one, never a mix.
func SaveState(path string, o Optimizer) error {
	b, err := MarshalState(o)
	if err != nil {
		return err
	}
	if err := fileio.WriteFile(path, b); err != nil {
		return fmt.Errorf("save optimizer state: %w", err)
	}
	return nil
}

// MarshalState returns o's state in SaveState's file format, for callers
// that write it themselves.
func MarshalState(o Optimizer) ([]byte, error) {
	s := o.State()
	f := stateFile{Magic: stateMagic, Optimizer: s.Optimizer}
	for _, name := range s.Names() {
		ps := s.Params[name]
		pf := paramFile{Name: name, Step: ps.Step}
		for _, k := range slices.Sorted(maps.Keys(ps.Buffers)) {
			bf := bufferFile{Name: k}
			switch b := ps.Buffers[k].(type) {
			case []float32:
				bf.Bits = 32
				bf.Data = make([]byte, 4*len(b))
				for i, x := range b {
					binary.LittleEndian.PutUint32(bf.Data[4*i:], math.Float32bits(x))
				}
			case []float64:
				bf.Bits = 64
				bf.Data = make([]byte, 8*len(b))
				for i, x := range b {
					binary.LittleEndian.PutUint64(bf.Data[8*i:], math.Float64bits(x))
				}
			}
			pf.Buffers = append(pf.Buffers, bf)
		}
		f.Params = append(f.Params, pf)
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&f); err != nil {
		return nil, fmt.Errorf("save optimizer state: %w", err)
	}
	return buf.Bytes(), nil
}

// LoadState reads a state written by SaveState into o. It fails if the file
// is for another kind of optimizer; buffers that do not fit the parameters
// are reported by the next Update.
func LoadState(path string, o Optimizer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("load optimizer state: %w", err)
	}
	var f stateFile
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&f); err != nil || f.Magic != stateMagic {
		return fmt.Errorf("load optimizer state: %s is not a graft optimizer state file", path)
	}
	s := newState(f.Optimizer)
	for _, pf := range f.Params {
		ps := &ParamState{Step: pf.Step, Buffers: map[string]any{}}
		for _, bf := range pf.Buffers {
			switch {
			case bf.Bits == 32 && len(bf.Data)%4 == 0:
				v := make([]float32, len(bf.Data)/4)
				for i := range v {
					v[i] = math.Float32frombits(binary.LittleEndian.Uint32(bf.Data[4*i:]))
				}
				ps.Buffers[bf.Name] = v
			case bf.Bits == 64 && len(bf.Data)%8 == 0:
				v := make([]float64, len(bf.Data)/8)
				for i := range v {
					v[i] = math.Float64frombits(binary.LittleEndian.Uint64(bf.Data[8*i:]))
				}
				ps.Buffers[bf.Name] = v
			default:
				return fmt.Errorf("load optimizer state: %s: buffer %s of %q is corrupt", path, bf.Name, pf.Name)
			}
		}
		s.Params[pf.Name] = ps
	}
	if err := o.SetState(s); err != nil {
		return fmt.Errorf("load optimizer state: %s: %w", path, err)
	}
	return nil
}
