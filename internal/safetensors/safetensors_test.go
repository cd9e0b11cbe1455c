package safetensors

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func sample() *File {
	return &File{Metadata: map[string]string{"format": "x", "n": "2"}, Tensors: []Tensor{
		{Name: "index", Dtype: "I64", Shape: []int64{2}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}},
		{Name: "v", Dtype: "F32", Shape: []int64{1, 2}, Data: []byte{0, 0, 128, 63, 0, 0, 0, 64}},
		{Name: "empty", Dtype: "U8", Shape: []int64{0}, Data: []byte{}},
	}}
}

// A file written and read back holds the same tensors, and the header is
// laid out as the format says: its length first, JSON padded to 8 bytes.
func TestRoundTrip(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	if n := int(b[0]); n%8 != 0 || !strings.HasPrefix(string(b[8:]), `{"__metadata__":{"format":"x","n":"2"},"empty":{"dtype":"U8","shape":[0],"data_offsets":[24,24]}`) {
		t.Errorf("header %q", b[8:8+n])
	}
	f, err := Decode(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Metadata, sample().Metadata) || f.Tensor("v") == nil || !bytes.Equal(f.Tensor("v").Data, sample().Tensors[1].Data) || len(f.Tensors) != 3 {
		t.Errorf("read back %+v", f)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, _ := Encode(sample())
	for name, b := range map[string][]byte{
		"empty":         nil,
		"cut short":     good[:len(good)-1],
		"huge header":   append([]byte{0, 0, 0, 0, 0, 0, 0, 1}, good[8:]...),
		"a gap":         bytes.Replace(good, []byte(`[24,24]`), []byte(`[25,25]`), 1),
		"a bad dtype":   bytes.Replace(good, []byte(`"U8"`), []byte(`"U9"`), 1),
		"a bad shape":   bytes.Replace(good, []byte(`[1,2]`), []byte(`[2,2]`), 1),
		"not an object": append([]byte{8, 0, 0, 0, 0, 0, 0, 0}, []byte("[1,2,3] ")...),
	} {
		if _, err := Decode(bytes.NewReader(b), int64(len(b))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The reader never panics and never allocates more than the file allows;
// what it accepts, it writes back, and that reads back the same.
func FuzzDecode(f *testing.F) {
	good, _ := Encode(sample())
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Decode(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		again, err := Encode(file)
		if err != nil {
			t.Fatalf("an accepted file does not encode: %v", err)
		}
		back, err := Decode(bytes.NewReader(again), int64(len(again)))
		if err != nil {
			t.Fatalf("re-encoded file does not decode: %v", err)
		}
		if b2, _ := Encode(back); !bytes.Equal(b2, again) {
			t.Fatal("the file changes when written again")
		}
	})
}
