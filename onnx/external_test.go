package onnx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/graft-dev/graft/onnx/internal/pb"
	"google.golang.org/protobuf/proto"
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExternalSaveLoad(t *testing.T) {
	orig := readFile(t, "../testdata/models/cnn/model.onnx")
	m := loadCNN(t)
	want := map[string][]byte{}
	for _, v := range m.Graph.Initializers {
		want[v.Name] = append([]byte(nil), v.Const.Raw()...)
		if err := v.Const.SetExternal(true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Encode(m); err == nil {
		t.Error("Encode of a model whose external data has no offsets yet succeeded")
	} else {
		wantErr(t, err, "Save")
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	if err := Save(m, path); err != nil {
		t.Fatal(err)
	}
	// One data file, named after the model file and its content.
	names := dirNames(t, dir)
	if len(names) != 2 || names[0] != "model.onnx" || !isDataFileOf(names[1], "model.onnx") {
		t.Fatalf("Save wrote %q, want model.onnx and model.onnx.HASH.data", names)
	}
	dataName := names[1]
	model := readFile(t, path)
	if len(model) > 4096 {
		t.Errorf("model with external weights is %d bytes", len(model))
	}

	m2, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.ExternalDataFiles(); len(got) != 1 || got[0] != filepath.Join(dir, dataName) {
		t.Errorf("ExternalDataFiles = %q, want [%s]", got, filepath.Join(dir, dataName))
	}
	for _, v := range m2.Graph.Initializers {
		e := v.Const.External()
		if e == nil {
			t.Errorf("%s: not external after reload", v.Name)
			continue
		}
		if e.Location != dataName {
			t.Errorf("%s: location %q, want %q", v.Name, e.Location, dataName)
		}
		if e.Offset%4096 != 0 || e.Length != int64(len(want[v.Name])) {
			t.Errorf("%s: offset %d length %d", v.Name, e.Offset, e.Length)
		}
		if !bytes.Equal(v.Const.Raw(), want[v.Name]) {
			t.Errorf("%s: data differs after external round trip", v.Name)
		}
	}

	// Save -> Load -> Save of an unedited model writes the same files.
	dir2 := t.TempDir()
	if err := Save(m2, filepath.Join(dir2, "model.onnx")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"model.onnx", dataName} {
		if !bytes.Equal(readFile(t, filepath.Join(dir, name)), readFile(t, filepath.Join(dir2, name))) {
			t.Errorf("%s differs after Save -> Load -> Save", name)
		}
	}
	// Saving over the files it was read from, too; the data file, whose
	// content is unchanged, is not even rewritten.
	before, _ := os.Stat(filepath.Join(dir, dataName))
	if err := Save(m2, path); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"model.onnx", dataName} {
		if !bytes.Equal(readFile(t, filepath.Join(dir, name)), readFile(t, filepath.Join(dir2, name))) {
			t.Errorf("%s differs after saving in place", name)
		}
	}
	if after, _ := os.Stat(filepath.Join(dir, dataName)); !os.SameFile(before, after) {
		t.Error("an unchanged data file was rewritten")
	}

	// Loading with an explicit folder.
	other := filepath.Join(t.TempDir(), "model.onnx")
	writeFile(t, other, model)
	if _, err := Load(other); err == nil {
		t.Error("loaded a model whose data files are not beside it")
	}
	if _, err := (DecodeOptions{Dir: dir}).Load(other); err != nil {
		t.Errorf("DecodeOptions{Dir}.Load: %v", err)
	}
	// Decoding bytes gives no folder to read the data from.
	_, err = Decode(model)
	wantErr(t, err, "external data", dataName, "not read from a file")

	// Moving the data back inside gives the original model file, and saving
	// it removes the data file no model names any more.
	for _, v := range m2.Graph.Initializers {
		if err := v.Const.SetExternal(false); err != nil {
			t.Fatal(err)
		}
	}
	b, err := Encode(m2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, orig) {
		t.Errorf("model with data moved back inside differs from the original (%d vs %d bytes)", len(b), len(orig))
	}
	if err := Save(m2, path); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("after saving the model with its data inside, the folder holds %q", names)
	}
}

func TestExternalThroughLinkedFolder(t *testing.T) {
	m := loadCNN(t)
	for _, v := range m.Graph.Initializers {
		v.Const.SetExternal(true)
	}
	real := t.TempDir()
	if err := Save(m, filepath.Join(real, "model.onnx")); err != nil {
		t.Fatal(err)
	}
	dataName := m.Graph.Initializers[0].Const.External().Location
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Skip(err)
	}
	if _, err := Load(filepath.Join(link, "model.onnx")); err != nil {
		t.Errorf("model in a linked folder: %v", err)
	}
	// A link inside the folder to a file inside it is fine.
	if err := os.Rename(filepath.Join(real, dataName), filepath.Join(real, "w.real")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("w.real", filepath.Join(real, dataName)); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(real, "model.onnx")); err != nil {
		t.Errorf("data file linked inside the folder: %v", err)
	}
}

// extProto is tinyProto with W (float32[2]) stored externally, described by
// the key/value pairs kv.
func extProto(kv ...string) *pb.ModelProto {
	p := tinyProto()
	w := p.Graph.Initializer[0]
	w.RawData = nil
	w.DataLocation = pb.TensorProto_EXTERNAL.Enum()
	for i := 0; i+1 < len(kv); i += 2 {
		w.ExternalData = append(w.ExternalData, &pb.StringStringEntryProto{
			Key: proto.String(kv[i]), Value: proto.String(kv[i+1])})
	}
	return p
}

// wData is W's data, 1 and 2 as float32.
var wData = []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40}

func TestExternalRead(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "w.bin"), append([]byte("pad!"), wData...))
	path := filepath.Join(dir, "model.onnx")
	writeFile(t, path, marshal(t, extProto("location", "w.bin", "offset", "4", "length", "8")))
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := m.Graph.Initializers[0].Const.Float32s()
	if len(v) != 2 || v[0] != 1 || v[1] != 2 {
		t.Errorf("W = %v, want [1 2]", v)
	}
	// Without length, the shape gives it; without offset, it is 0.
	writeFile(t, filepath.Join(dir, "w0.bin"), wData)
	writeFile(t, path, marshal(t, extProto("location", "w0.bin")))
	if _, err := Load(path); err != nil {
		t.Error(err)
	}
}

func TestExternalRefused(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "x.bin"), wData)

	cases := []struct {
		name   string
		kv     []string
		setup  func(t *testing.T, dir string)
		unsafe bool
		parts  []string
	}{
		{name: "absolute", kv: []string{"location", "/etc/passwd"}, unsafe: true, parts: []string{`"/etc/passwd"`}},
		{name: "absolute outside", kv: []string{"location", filepath.Join(outside, "x.bin")}, unsafe: true},
		{name: "dotdot", kv: []string{"location", "../x.bin"}, unsafe: true, parts: []string{`"../x.bin"`}},
		{name: "nested dotdot", kv: []string{"location", "a/../../x.bin"}, unsafe: true},
		{name: "backslash dotdot", kv: []string{"location", `..\x.bin`}, unsafe: true},
		{name: "link to outside file", kv: []string{"location", "link.bin"}, unsafe: true,
			setup: func(t *testing.T, dir string) {
				if err := os.Symlink(filepath.Join(outside, "x.bin"), filepath.Join(dir, "link.bin")); err != nil {
					t.Skip(err)
				}
			}, parts: []string{`"link.bin"`, outside}},
		{name: "relative link to outside file", kv: []string{"location", "rel.bin"}, unsafe: true,
			setup: func(t *testing.T, dir string) {
				rel, _ := filepath.Rel(dir, filepath.Join(outside, "x.bin"))
				if err := os.Symlink(rel, filepath.Join(dir, "rel.bin")); err != nil {
					t.Skip(err)
				}
			}},
		{name: "link to outside folder", kv: []string{"location", "sub/x.bin"}, unsafe: true,
			setup: func(t *testing.T, dir string) {
				if err := os.Symlink(outside, filepath.Join(dir, "sub")); err != nil {
					t.Skip(err)
				}
			}},
		{name: "offset past end", kv: []string{"location", "w.bin", "offset", "100"},
			parts: []string{`"w.bin"`, "past the end", "8 bytes"}},
		{name: "offset+length past end", kv: []string{"location", "w.bin", "offset", "4", "length", "8"},
			parts: []string{`"w.bin"`, "past the end", "[4, 12)"}},
		{name: "length mismatch", kv: []string{"location", "w.bin", "length", "12"},
			parts: []string{"needs 8 bytes", "length is 12"}},
		{name: "no location", kv: []string{"offset", "0", "length", "8"}, parts: []string{"no location"}},
		{name: "empty location", kv: []string{"location", "", "length", "8"}, parts: []string{"no location"}},
		{name: "non-numeric offset", kv: []string{"location", "w.bin", "offset", "abc"}, parts: []string{"offset", `"abc"`}},
		{name: "negative offset", kv: []string{"location", "w.bin", "offset", "-4"}, parts: []string{"offset", `"-4"`}},
		{name: "non-numeric length", kv: []string{"location", "w.bin", "length", "8 bytes"}, parts: []string{"length", `"8 bytes"`}},
		{name: "missing file", kv: []string{"location", "gone.bin"}, parts: []string{"gone.bin"}},
		{name: "folder as file", kv: []string{"location", "d"},
			setup: func(t *testing.T, dir string) { os.Mkdir(filepath.Join(dir, "d"), 0o755) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "w.bin"), wData)
			if c.setup != nil {
				c.setup(t, dir)
			}
			path := filepath.Join(dir, "model.onnx")
			writeFile(t, path, marshal(t, extProto(c.kv...)))
			m, err := Load(path)
			if err == nil {
				v, _ := m.Graph.Initializers[0].Const.Float32s()
				t.Fatalf("loaded, W = %v", v)
			}
			wantErr(t, err, append([]string{path, `tensor "W"`}, c.parts...)...)
			if errors.Is(err, ErrUnsafeLocation) != c.unsafe {
				t.Errorf("errors.Is(%v, ErrUnsafeLocation) = %v, want %v", err, !c.unsafe, c.unsafe)
			}
		})
	}
}

func TestExternalMissingFileIsNotExist(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	writeFile(t, path, marshal(t, extProto("location", "gone.bin")))
	_, err := Load(path)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("errors.Is(%v, os.ErrNotExist) = false", err)
	}
}

func TestExternalHugeClaim(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "w.bin"), wData)
	path := filepath.Join(dir, "model.onnx")
	for _, kv := range [][]string{
		{"location", "w.bin"},
		{"location", "w.bin", "length", "4000000000000"},
		{"location", "w.bin", "offset", "9223372036854775807"},
	} {
		p := extProto(kv...)
		p.Graph.Initializer[0].Dims = []int64{1000000, 1000000}
		writeFile(t, path, marshal(t, p))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Load(path)
		runtime.ReadMemStats(&after)
		wantErr(t, err, `tensor "W"`)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 100<<20 {
			t.Errorf("%q: loading allocated %d MB", kv, grew>>20)
		}
	}
	// A claim within graft's limit but past the file's end is refused
	// before reading.
	p := extProto("location", "w.bin")
	p.Graph.Initializer[0].Dims = []int64{100000, 100000}
	writeFile(t, path, marshal(t, p))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Load(path)
	runtime.ReadMemStats(&after)
	wantErr(t, err, `tensor "W"`, "past the end")
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 100<<20 {
		t.Errorf("loading allocated %d MB", grew>>20)
	}
}

func TestExternalStandaloneTensor(t *testing.T) {
	p := extProto("location", "w.bin").Graph.Initializer[0]
	_, err := DecodeTensor(marshal(t, p))
	wantErr(t, err, `tensor "W"`, "external data")
}

func TestSetExternalRefused(t *testing.T) {
	s := &Tensor{Name: "S", DType: String, Dims: []int64{1}, strs: [][]byte{[]byte("x")}}
	wantErr(t, s.SetExternal(true), `tensor "S"`, "string")
	if s.External() != nil {
		t.Errorf("refused SetExternal left External %+v", s.External())
	}
}

// Save writes the data file beside the model file only, whatever location
// the tensors were read from or edited to (before, it wrote to the location
// as read, refusing unsafe ones; now no location is ever written to).
func TestSaveIgnoresLocation(t *testing.T) {
	m := loadCNN(t)
	w := m.Graph.Initializers[0].Const
	if err := w.SetExternal(true); err != nil {
		t.Fatal(err)
	}
	w.External().Location = "../evil.bin"
	parent := t.TempDir()
	dir := filepath.Join(parent, "m")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "model.onnx")
	if err := Save(m, path); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, parent); len(names) != 1 {
		t.Errorf("Save wrote %q beside the model's folder", names)
	}
	if names := dirNames(t, dir); len(names) != 2 || !isDataFileOf(names[1], "model.onnx") {
		t.Errorf("Save wrote %q", names)
	}
	if _, err := Load(path); err != nil {
		t.Error(err)
	}
}

// Tensors read from one data file keep their offsets when saved, so the new
// data file holds the same bytes.
func TestExternalKeepsOffsets(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 8192+8)
	copy(data, wData)
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, math.Float32bits(5))
	binary.LittleEndian.PutUint32(b[4:], math.Float32bits(6))
	copy(data[8192:], b)
	writeFile(t, filepath.Join(dir, "w.bin"), data)
	p := extProto("location", "w.bin", "offset", "0", "length", "8")
	w2 := proto.Clone(p.Graph.Initializer[0]).(*pb.TensorProto)
	w2.Name = proto.String("W2")
	w2.ExternalData[1].Value = proto.String("8192")
	p.Graph.Initializer = append(p.Graph.Initializer, w2)
	p.Graph.Node = append(p.Graph.Node, pbNode("add2", "Add", []string{"Y", "W2"}, []string{"Z"}))
	p.Graph.Output[0].Name = proto.String("Z")
	path := filepath.Join(dir, "model.onnx")
	model := marshal(t, p)
	writeFile(t, path, model)
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := Save(m, filepath.Join(out, "model.onnx")); err != nil {
		t.Fatal(err)
	}
	names := dirNames(t, out)
	if len(names) != 2 || !bytes.Equal(readFile(t, filepath.Join(out, names[1])), data) {
		t.Errorf("Save wrote %q, the data file differing from the one read", names)
	}
	if m.Graph.Initializers[1].Const.External().Offset != 8192 {
		t.Errorf("W2 moved to %d", m.Graph.Initializers[1].Const.External().Offset)
	}
	// Only the location differs from the model read.
	for _, v := range m.Graph.Initializers {
		v.Const.External().Location = "w.bin"
	}
	if b, _ := Encode(m); !bytes.Equal(b, model) {
		t.Error("the saved model differs from the one read by more than its data file's name")
	}
}

// A failed Save of a model with external data leaves neither the data file
// nor temporary files behind, and does not touch existing files.
func TestExternalSaveFailsCleanly(t *testing.T) {
	m := loadCNN(t)
	for _, v := range m.Graph.Initializers {
		v.Const.SetExternal(true)
	}
	// Where the data file goes, learnt from a save elsewhere.
	if err := Save(m, filepath.Join(t.TempDir(), "model.onnx")); err != nil {
		t.Fatal(err)
	}
	dataName := m.Graph.Initializers[0].Const.External().Location
	dir := t.TempDir()
	// The model path is a folder: the model cannot be written.
	path := filepath.Join(dir, "model.onnx")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	wantErr(t, Save(m, path), path, "is a folder")
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("failed Save left %q", names)
	}
	// Another model's data file is kept as it was.
	writeFile(t, filepath.Join(dir, "weights.bin"), []byte("old"))
	if Save(m, path) == nil {
		t.Fatal("Save over a folder succeeded")
	}
	if b := readFile(t, filepath.Join(dir, "weights.bin")); string(b) != "old" {
		t.Errorf("failed Save replaced the data file with %d bytes", len(b))
	}
	if names := dirNames(t, dir); len(names) != 2 {
		t.Errorf("failed Save left %q", names)
	}
	// The data file cannot be written: the model is not written either.
	os.Remove(filepath.Join(dir, "weights.bin"))
	os.Remove(path)
	if err := os.Mkdir(filepath.Join(dir, dataName), 0o755); err != nil {
		t.Fatal(err)
	}
	wantErr(t, Save(m, path), path, dataName)
	if names := dirNames(t, dir); len(names) != 1 {
		t.Errorf("failed Save left %q", names)
	}
}
