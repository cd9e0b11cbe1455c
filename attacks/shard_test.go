package attacks_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/attacks"
	"github.com/graft-dev/graft/onnx"
	"github.com/graft-dev/graft/runtime/dataset"
)

// shardReports runs the sweep in count shards and returns their reports as
// Merge reads them: written by WriteDir and read back by ReadReport.
func shardReports(t *testing.T, ds *dataset.Dataset, opts func() attacks.RobustnessOptions, count int) []*attacks.Report {
	t.Helper()
	m := load(t, lenetDir+"model.onnx")
	var parts []*attacks.Report
	for i := count - 1; i >= 0; i-- { // any order
		o := opts()
		o.Shard = dataset.Shard{Index: i, Count: count}
		r, err := attacks.Robustness(context.Background(), m, ds, o)
		if err != nil {
			t.Fatalf("shard %d/%d: %v", i, count, err)
		}
		dir := filepath.Join(t.TempDir(), fmt.Sprint(i))
		if err := r.WriteDir(dir); err != nil {
			t.Fatal(err)
		}
		back, err := attacks.ReadReport(dir)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, back)
	}
	return parts
}

// sameReport fails t unless the merged report equals the whole one in
// report.json, report.md and both pictures, bit for bit (the time aside).
func sameReport(t *testing.T, what string, whole, merged *attacks.Report) {
	t.Helper()
	merged.Seconds = whole.Seconds
	wj, _ := whole.JSON()
	mj, _ := merged.JSON()
	if !bytes.Equal(wj, mj) {
		t.Errorf("%s: report.json differs:\n%s\nwhole:\n%s", what, firstDiff(mj, wj), firstDiff(wj, mj))
	}
	if whole.Markdown() != merged.Markdown() {
		t.Errorf("%s: report.md differs", what)
	}
	for _, pic := range []struct {
		name string
		f    func(*attacks.Report) ([]byte, error)
	}{{"accuracy_vs_eps.png", (*attacks.Report).AccuracyPNG}, {"examples.png", (*attacks.Report).ExamplesPNG}} {
		a, err1 := pic.f(whole)
		b, err2 := pic.f(merged)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: %s differs (%v, %v)", what, pic.name, err1, err2)
		}
	}
}

func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return string(a[max(0, i-80):min(len(a), i+80)])
}

// A sweep in 1, 3 or 7 shards, merged, is the whole sweep's report:
// counts, accuracies, per-class accuracy, mean confidences (summed in the
// sweep's order), the largest perturbations and the example grid. PGD's
// random starts included: each batch draws from its own stream.
func TestShardsMergeToTheWholeReport(t *testing.T) {
	ds := digits(t, 2000)
	for _, tc := range []struct {
		name   string
		opts   func() attacks.RobustnessOptions
		counts []int
	}{
		{"fgsm", func() attacks.RobustnessOptions {
			return attacks.RobustnessOptions{Attack: attacks.FGSM{}, Limit: 700, Batch: 50, Samples: 60, ModelSHA256: "abc"}
		}, []int{1, 3, 7}},
		{"targeted pgd", func() attacks.RobustnessOptions {
			return attacks.RobustnessOptions{Attack: &attacks.PGD{Steps: 3, Seed: 5}, Eps: []float64{0.1, 0.2}, Target: attacks.NextClass,
				Limit: 230, Batch: 40}
		}, []int{3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			whole, err := attacks.Robustness(context.Background(), load(t, lenetDir+"model.onnx"), ds, tc.opts())
			if err != nil {
				t.Fatal(err)
			}
			if whole.Shard != nil || whole.Detail != nil {
				t.Fatal("a whole sweep's report carries shard detail")
			}
			for _, n := range tc.counts {
				parts := shardReports(t, ds, tc.opts, n)
				if n > 1 && parts[0].Examples >= whole.Examples {
					t.Fatalf("shard %v holds %d of %d examples", *parts[0].Shard, parts[0].Examples, whole.Examples)
				}
				merged, err := attacks.Merge(parts...)
				if err != nil {
					t.Fatal(err)
				}
				sameReport(t, fmt.Sprintf("%d shards", n), whole, merged)
			}
		})
	}
}

func TestMergeRefusesPartsThatDoNotBelongTogether(t *testing.T) {
	ds := digits(t, 120)
	opts := func() attacks.RobustnessOptions {
		return attacks.RobustnessOptions{Attack: attacks.FGSM{}, Eps: []float64{0, 0.1}, Batch: 20, ModelSHA256: "abc"}
	}
	three := shardReports(t, ds, opts, 3) // shards 2, 1, 0
	other := func(change func(*attacks.RobustnessOptions)) *attacks.Report {
		return shardReports(t, ds, func() attacks.RobustnessOptions { o := opts(); change(&o); return o }, 3)[2]
	}
	whole, err := attacks.Robustness(context.Background(), load(t, lenetDir+"model.onnx"), ds, opts())
	if err != nil {
		t.Fatal(err)
	}
	two := shardReports(t, ds, opts, 2)
	overlap := *three[1]
	d := *overlap.Detail
	d.Index = append([]int(nil), d.Index...)
	d.Index[0] = 0 // shard 1's first example claimed to be example 0
	overlap.Detail = &d

	for _, tc := range []struct {
		name  string
		parts []*attacks.Report
		want  string
	}{
		{"another model", []*attacks.Report{three[0], three[1], other(func(o *attacks.RobustnessOptions) { o.ModelSHA256 = "def" })}, `model_sha256 "abc" and "def"`},
		{"other eps", []*attacks.Report{three[0], three[1], other(func(o *attacks.RobustnessOptions) { o.Eps = []float64{0, 0.2} })}, "eps [0,0.1] and [0,0.2]"},
		{"other data", []*attacks.Report{three[0], three[1], shardReports(t, digits(t, 119), opts, 3)[2]}, "data "},
		{"another shard count", []*attacks.Report{three[0], two[0]}, "splits into 3 and 2 shards"},
		{"a missing shard", three[:2], "2 of 3 shards given; missing 0/3"},
		{"a shard twice", []*attacks.Report{three[0], three[1], three[1]}, "shard 1/3 is given twice"},
		{"a whole report", []*attacks.Report{three[0], whole}, "report 2 is not a shard's report"},
		{"overlapping examples", []*attacks.Report{three[0], &overlap, three[2]}, "example 0 is in shards 0/3 and 1/3"},
	} {
		_, err := attacks.Merge(tc.parts...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if _, err := attacks.Merge(three...); err != nil {
		t.Errorf("the three shards: %v", err)
	}
}

// A shard beyond the data set's blocks is refused before any work.
func TestShardWithoutExamples(t *testing.T) {
	_, err := attacks.Robustness(context.Background(), load(t, lenetDir+"model.onnx"), digits(t, 100),
		attacks.RobustnessOptions{Attack: attacks.FGSM{}, Batch: 50, Shard: dataset.Shard{Index: 2, Count: 3}})
	if err == nil || !strings.Contains(err.Error(), "shard 2/3 holds no examples: 100 examples in batches of 50 make 2 blocks") {
		t.Errorf("got %v", err)
	}
}

// Without a SHA-256 from the caller, Robustness takes the model's own
// (onnx.SHA256): shards of two models differing in one weight do not merge.
func TestShardsOfAnotherModelAreRefused(t *testing.T) {
	ds := digits(t, 40)
	other := load(t, lenetDir+"model.onnx")
	w := other.Graph.Initializers[0].Const
	raw := append([]byte(nil), w.Raw()...)
	raw[0] ^= 1
	if err := w.SetRaw(raw); err != nil {
		t.Fatal(err)
	}
	var parts []*attacks.Report
	for i, m := range []*onnx.Model{load(t, lenetDir+"model.onnx"), other} {
		r, err := attacks.Robustness(context.Background(), m, ds, attacks.RobustnessOptions{Attack: attacks.FGSM{}, Eps: []float64{0.1}, Batch: 20,
			Shard: dataset.Shard{Index: i, Count: 2}})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, r)
	}
	if len(parts[0].Settings.ModelSHA256) != 64 {
		t.Errorf("model sha256 %q", parts[0].Settings.ModelSHA256)
	}
	if _, err := attacks.Merge(parts...); err == nil || !strings.Contains(err.Error(), "model_sha256") {
		t.Errorf("got %v", err)
	}
}
