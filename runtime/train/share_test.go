package train_test

import (
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/runtime"
	"github.com/graft-dev/graft/runtime/train"
	"github.com/graft-dev/graft/surgery"
)

func TestShareParams(t *testing.T) {
	gen, disc := ganGenerator(t), ganDiscriminator(t)
	gan, err := surgery.Compose(gen, disc, "D/")
	if err != nil {
		t.Fatal(err)
	}
	// A second discriminator, initialised differently.
	other := ganDiscriminator(t)
	ganInit(t, other, 99)
	src, err := runtime.Compile(other, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dst, err := runtime.Compile(gan, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := runtime.Compile(disc, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	z := noise(rand.New(rand.NewSource(1)), 4)
	before, err := dst.Run(z) // builds the session before the copy
	if err != nil {
		t.Fatal(err)
	}
	names := paramNames(src)
	if err := train.ShareParams(dst, "D/", src, "", names); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		s, c := src.Param(n).Value.Data().([]float32), dst.Param("D/"+n).Value.Data().([]float32)
		if &s[0] == &c[0] {
			t.Fatalf("%q: the copy aliases the source", n)
		}
		for i := range s {
			if s[i] != c[i] {
				t.Fatalf("%q[%d]: %g, want %g", n, i, c[i], s[i])
			}
		}
	}
	// The compiled graph reads the new values: D(G(z)) now uses other's D.
	after, err := dst.Run(z)
	if err != nil {
		t.Fatal(err)
	}
	img, err := runtime.Compile(gen, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	x, err := img.Run(z)
	if err != nil {
		t.Fatal(err)
	}
	want, err := src.Run(x[0])
	if err != nil {
		t.Fatal(err)
	}
	a, b, w := after[0].Data().([]float32), before[0].Data().([]float32), want[0].Data().([]float32)
	changed := false
	for i := range w {
		if diff := a[i] - w[i]; diff > 1e-5 || diff < -1e-5 {
			t.Fatalf("logit %d: %g after sharing, want %g", i, a[i], w[i])
		}
		changed = changed || a[i] != b[i]
	}
	if !changed {
		t.Error("the outputs did not change after sharing new parameters")
	}

	// Errors copy nothing.
	first := append([]float32(nil), d.Param("fc1.weight").Value.Data().([]float32)...)
	if err := train.ShareParams(d, "", src, "", []string{"fc1.weight", "nope"}); err == nil || !strings.Contains(err.Error(), `no parameter "nope"`) {
		t.Errorf("missing parameter: %v", err)
	}
	if !slices.Equal(first, d.Param("fc1.weight").Value.Data().([]float32)) {
		t.Error("a failed ShareParams copied some parameters")
	}
	if err := train.ShareParams(d, "", dst, "", []string{"fc2.weight"}); err == nil || !strings.Contains(err.Error(), "(2, 128)") || !strings.Contains(err.Error(), "(784, 128)") {
		t.Errorf("shape mismatch (G's fc2 is [784 128], D's [2 128]): %v", err)
	}
}
