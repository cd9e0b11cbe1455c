package main

import (
	"path/filepath"
	"strings"
	"testing"
)

const lenetDir = "../../testdata/models/lenet_mnist"

func TestHardeningFlags(t *testing.T) {
	dir := t.TempDir()
	base := []string{"finetune", "--model", "../../testdata/models/resnet_tiny_op13_bn/model.onnx", "--data", "x", "-o", filepath.Join(dir, "o.onnx")}
	for _, c := range []struct {
		extra []string
		want  string
	}{
		{[]string{"--adv", "pgd"}, `--adv "pgd": want fgsm`},
		{[]string{"--adv", "fgsm", "--adv-eps", "0"}, "--adv-eps 0"},
		{[]string{"--adv", "fgsm", "--adv-ratio", "1.5"}, "--adv-ratio 1.5"},
		{[]string{"--noise", "salt"}, `--noise "salt"`},
		{[]string{"--noise-std", "0.2"}, "--noise-std needs --noise gaussian"},
		{[]string{"--adv-eps", "0.2"}, "--adv-eps and --adv-ratio need --adv fgsm"},
	} {
		code, _, errs := graft(append(append([]string{}, base...), c.extra...)...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: code %d, %q; want usage error %q", c.extra, code, errs, c.want)
		}
	}
}
