package data

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/testenv"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/onnx/onnxtest"
)

// A refCase is one entry of a manifest.json written by
// testdata/gen/preprocess_refs.py.
type refCase struct {
	Image    string    `json:"image"`
	Channels int       `json:"channels"`
	Resize   int       `json:"resize"`
	Crop     int       `json:"crop"`
	Mean     []float32 `json:"mean"`
	Std      []float32 `json:"std"`
	Tensor   string    `json:"tensor"`
	Norm     string    `json:"norm"`
}

// checkRefs preprocesses every case of dir/manifest.json and compares with
// PIL + torchvision's tensors: within 1/255 before normalisation (the
// same after, scaled by 1/std), and exactly for lossless formats, where
// only the resampling is compared.
func checkRefs(t *testing.T, dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Cases []refCase }
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Cases) == 0 {
		t.Fatal("no cases in the manifest")
	}
	const tol = 1.0/255 + 1e-6
	for _, c := range m.Cases {
		img := c.Image
		if !filepath.IsAbs(img) {
			img = filepath.Join(dir, img)
		}
		name := filepath.Base(c.Tensor)
		p := &Pipeline{Channels: c.Channels, Transform: Compose(Resize(c.Resize), CenterCrop(c.Crop))}
		got, err := p.Load(img)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		want := loadRef(t, filepath.Join(dir, c.Tensor))
		d, n := diff(t, name, got, want)
		lossless := !strings.HasSuffix(strings.ToLower(img), ".jpg") && !strings.HasSuffix(strings.ToLower(img), ".jpeg")
		limit := tol
		if lossless {
			limit = 1e-7
		}
		t.Logf("%-45s max |diff| %.3g (%.2f/255), %d of %d values differ", name, d, d*255, n, len(got.Data))
		if d > limit {
			t.Errorf("%s: max |diff| %g (%.2f/255) over %g", name, d, d*255, limit)
		}
		if err := got.Normalize(c.Mean, c.Std); err != nil {
			t.Fatal(err)
		}
		wantN := loadRef(t, filepath.Join(dir, c.Norm))
		dn, _ := diff(t, c.Norm, got, wantN)
		minStd := float32(math.Inf(1))
		for _, s := range c.Std {
			minStd = min(minStd, s)
		}
		if dn > (limit+1e-6)/float64(minStd) {
			t.Errorf("%s: normalised max |diff| %g over %g", c.Norm, dn, (limit+1e-6)/float64(minStd))
		}
	}
}

func loadRef(t *testing.T, path string) *onnx.Tensor {
	ref, err := onnx.LoadTensor(path)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// diff returns the max abs difference and the number of differing values.
func diff(t *testing.T, name string, got *Tensor, want *onnx.Tensor) (float64, int) {
	t.Helper()
	w, err := want.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Dims) != 3 || want.Dims[0] != int64(got.C) || want.Dims[1] != int64(got.H) || want.Dims[2] != int64(got.W) {
		t.Fatalf("%s: got %dx%dx%d, reference %v", name, got.C, got.H, got.W, want.Dims)
	}
	var d float64
	var n int
	for i, x := range got.Data {
		if e := math.Abs(float64(x) - float64(w[i])); e > 0 {
			d = max(d, e)
			n++
		}
	}
	return d, n
}

// The committed references: synthetic images at odd sizes, Resize(40) +
// CenterCrop(32) and Resize(24) + CenterCrop(32) (padding).
func TestPILReferences(t *testing.T) {
	checkRefs(t, "testdata")
}

// The full-size evaluation preprocessing (Resize(256), CenterCrop(224)) on
// the committed images and on real photos found on the machine (Go's own
// image test data, and a photo in the Gorgonia module), with references
// computed now by testdata/gen/preprocess_refs.py.
func TestPILReferencesFullSize(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Python")
	}
	onnxtest.NeedPython(t, "torchvision", "PIL", "onnx")
	var images []string
	committed, _ := filepath.Glob("testdata/*.png")
	jpgs, _ := filepath.Glob("testdata/*.jpg")
	images = append(committed, jpgs...)
	images = append(images, realPhotos(t)...)
	dir := t.TempDir()
	args := append([]string{filepath.Join(onnxtest.Root(), "testdata/gen/preprocess_refs.py"), "--out", dir, "--resize", "256", "--crop", "224"}, images...)
	if out, err := exec.Command(onnxtest.Python, args...).CombinedOutput(); err != nil {
		t.Fatalf("preprocess_refs.py: %v\n%s", err, out)
	}
	checkRefs(t, dir)
}

// realPhotos lists JPEG photos available wherever this test can run: the
// frames in Go's image/testdata and the dog photo of Gorgonia's YOLO
// example, from the module cache. A missing one is reported by
// testenv.MissingPart (a failure under GRAFT_REFERENCE=1).
func realPhotos(t *testing.T) []string {
	var want []string
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		dir := filepath.Join(strings.TrimSpace(string(out)), "src", "image", "testdata")
		for _, f := range []string{"video-001.jpeg", "video-001.q50.420.jpeg", "video-001.q50.422.jpeg", "video-001.q50.440.jpeg",
			"video-001.q50.444.jpeg", "video-001.q50.411.jpeg", "video-001.q50.410.progressive.jpeg", "video-001.progressive.jpeg",
			"video-001.cmyk.jpeg", "video-005.gray.jpeg"} {
			want = append(want, filepath.Join(dir, f))
		}
	} else {
		testenv.MissingPart(t, "Go's image/testdata photos: go env GOROOT: %v", err)
	}
	if out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "gorgonia.org/gorgonia").Output(); err == nil {
		want = append(want, filepath.Join(strings.TrimSpace(string(out)), "examples", "tiny-yolo-v2-coco", "data", "dog.jpg"))
	} else {
		testenv.MissingPart(t, "Gorgonia's example photo: go list -m gorgonia.org/gorgonia: %v", err)
	}
	var photos []string
	for _, p := range want {
		if exists(p) {
			photos = append(photos, p)
		} else {
			testenv.MissingPart(t, "photo %s (part of Go's source tree and of the gorgonia module: go mod download)", p)
		}
	}
	return photos
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
