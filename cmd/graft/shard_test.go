package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/graft-dev/graft/runtime/finetune"
)

// runShards runs graft once per shard, count processes at once, as the
// tasks of an array job: args get "--shard I/N" and "-o dir/shard-I".
func runShards(t *testing.T, bin, dir string, count int, args ...string) []string {
	t.Helper()
	var wg sync.WaitGroup
	dirs := make([]string, count)
	errs := make([]error, count)
	for i := range count {
		dirs[i] = filepath.Join(dir, fmt.Sprintf("shard-%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := append(append([]string(nil), args...), "--shard", fmt.Sprintf("%d/%d", i, count), "-o", dirs[i])
			if out, err := exec.Command(bin, a...).CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("graft %s: %v\n%s", strings.Join(a, " "), err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return dirs
}

// sameReportDirs fails t unless two report folders hold the same report:
// report.json (but for the time it took), report.md (but for its time
// row) and the pictures, byte for byte.
func sameReportDirs(t *testing.T, what, want, got string) {
	t.Helper()
	read := func(dir, name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	untimed := func(dir string) string {
		var v map[string]any
		if err := json.Unmarshal(read(dir, "report.json"), &v); err != nil {
			t.Fatal(err)
		}
		if _, ok := v["seconds"]; !ok {
			t.Fatalf("%s/report.json has no time", dir)
		}
		delete(v, "seconds")
		b, _ := json.MarshalIndent(v, "", " ")
		return string(b)
	}
	if a, b := untimed(want), untimed(got); a != b {
		t.Errorf("%s: report.json differs from the single run's:\n%s", what, lineDiff(a, b))
	}
	noTime := func(dir string) string {
		var keep []string
		for _, l := range strings.Split(string(read(dir, "report.md")), "\n") {
			if !strings.HasPrefix(l, "| time |") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	if a, b := noTime(want), noTime(got); a != b {
		t.Errorf("%s: report.md differs from the single run's:\n%s", what, lineDiff(a, b))
	}
	for _, f := range []string{"accuracy_vs_eps.png", "examples.png"} {
		if !bytes.Equal(read(want, f), read(got, f)) {
			t.Errorf("%s: %s differs from the single run's", what, f)
		}
	}
}

// lineDiff shows the first line where a and b differ.
func lineDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return fmt.Sprintf("line %d: single run %q, merged %q", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("%d lines, %d lines", len(la), len(lb))
}

// The acceptance test of sharded robustness: FGSM over all 2,000 held-out
// digits (the README's table), in 1, 3 and 7 shards, each shard a
// separate graft process, merged by graft merge-reports, equals the single
// run's report: every count, accuracy, per-class accuracy, confidence and
// picture.
func TestRobustnessShardsAsProcessesMergeToTheSingleRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 12 graft processes over 2,000 digits (about 30 s)")
	}
	bin := buildGraft(t)
	dir := t.TempDir()
	args := []string{"robustness", "--model", lenetModel, "--data", lenetImages}
	single := filepath.Join(dir, "single")
	if out, err := exec.Command(bin, append(args, "-o", single)...).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, n := range []int{1, 3, 7} {
		parts := runShards(t, bin, filepath.Join(dir, fmt.Sprint(n)), n, args...)
		var files []string
		ents, _ := os.ReadDir(parts[0])
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") { // .graft.lock
				files = append(files, e.Name())
			}
		}
		if len(files) != 1 || files[0] != "report.json" {
			t.Errorf("a shard's folder holds %v, want report.json alone", files)
		}
		merged := filepath.Join(dir, fmt.Sprint(n), "merged")
		out, err := exec.Command(bin, append([]string{"merge-reports", "-o", merged}, parts...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("merge-reports: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), fmt.Sprintf("merged %d shards", n)) || !strings.Contains(string(out), "0.3    0.0860") {
			t.Errorf("merge-reports printed:\n%s", out)
		}
		sameReportDirs(t, fmt.Sprintf("%d shards", n), single, merged)
	}
}

// Bad shard flags are command-line errors; parts that do not belong
// together are refused in one line naming the difference, before any
// file is written.
func TestShardFlagsAndMergeErrors(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := robustness(t, "--model", lenetModel, "--data", lenetImages, "--shard", "3/3", "-o", dir); code != 2 || !strings.Contains(errs, "--shard: shard 3/3: want I/N with 0 <= I < N") {
		t.Errorf("--shard 3/3: code %d, %q", code, errs)
	}
	var parts []string
	for i := range 2 {
		p := filepath.Join(dir, fmt.Sprint(i))
		code, out, errs := robustness(t, "--model", lenetModel, "--data", lenetImages, "--limit", "60", "--batch", "20", "--eps", "0,0.1", "--shard", fmt.Sprintf("%d/2", i), "-o", p)
		if code != 0 || !strings.Contains(out, fmt.Sprintf("shard %d/2: fgsm on", i)) || !strings.Contains(out, "of 60 examples") {
			t.Fatalf("code %d: %s %s", code, out, errs)
		}
		parts = append(parts, p)
	}
	other := filepath.Join(dir, "other")
	if code, _, errs := robustness(t, "--model", lenetModel, "--data", lenetImages, "--limit", "60", "--batch", "20", "--eps", "0,0.2", "--shard", "1/2", "-o", other); code != 0 {
		t.Fatal(errs)
	}
	out := filepath.Join(dir, "merged")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-o", out}, 2, "no shard reports"},
		{parts, 2, "-o REPORT_DIR is required"},
		{[]string{"-o", out, parts[0]}, 1, "1 of 2 shards given; missing 1/2"},
		{[]string{"-o", out, parts[0], other}, 1, "were made with other settings: eps [0,0.1] and [0,0.2]"},
		{[]string{"-o", out, parts[0], filepath.Join(dir, "none")}, 1, "none"},
		{[]string{"-o", filepath.Join(parts[0], "x"), parts[0], parts[1]}, 1, "inside"},
	} {
		code, _, errs := graft(append([]string{"merge-reports"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errs, tc.want) || strings.Count(errs, "\n") > 2 {
			t.Errorf("merge-reports %v: code %d, %q; want %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused merge created %s", out)
	}
	if code, stdout, errs := graft("merge-reports", "-o", out, parts[1], parts[0]); code != 0 || !strings.Contains(stdout, "merged 2 shards") {
		t.Errorf("merge: code %d, %s %s", code, stdout, errs)
	}
}

// The acceptance test of sharded features: the frozen LeNet backbone's
// features of all 2,000 held-out digits, in 3 and 7 shards, each a
// separate graft features process, merged, are the single process's file
// byte for byte; and graft finetune --features on the 7 shards writes the
// model graft finetune --data writes with its in-process cache, byte for
// byte, same seed.
func TestFeaturesShardsAsProcessesTrainTheSameModel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 14 graft processes")
	}
	bin := buildGraft(t)
	dir := t.TempDir()
	graftRun := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("graft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	args := []string{"features", "--model", lenetModel, "--data", lenetImages, "--batch", "32"}
	single := filepath.Join(dir, "single")
	if out := graftRun(append(args, "-o", single)...); !strings.Contains(out, "features of 2000 of 2000 examples (shard 0/1") {
		t.Errorf("graft features printed %q", out)
	}
	want, err := os.ReadFile(filepath.Join(single, finetune.FeaturesFile))
	if err != nil {
		t.Fatal(err)
	}
	var shards []string
	for _, n := range []int{3, 7} {
		shards = runShards(t, bin, filepath.Join(dir, fmt.Sprint(n)), n, args...)
		merged, err := readFeatures(shards)
		if err != nil {
			t.Fatal(err)
		}
		got, err := merged.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%d shards merged: the features differ from the single process's", n)
		}
	}

	train := []string{"finetune", "--model", lenetModel, "--freeze", "backbone", "--replace-head", "10", "--epochs", "2", "--batch", "32", "--lr", "0.01", "--seed", "3"}
	cached := filepath.Join(dir, "cached", "model.onnx")
	if out := graftRun(append(train, "--data", lenetImages, "-o", cached)...); !strings.Contains(out, "computing the frozen backbone's features once") {
		t.Errorf("finetune --data did not use its cache:\n%s", out)
	}
	fromShards := filepath.Join(dir, "shards", "model.onnx")
	graftRun(append(append(train, "-o", fromShards, "--features"), shards...)...)
	a, _ := os.ReadFile(cached)
	b, _ := os.ReadFile(fromShards)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Error("finetune --features (7 shards) wrote another model than finetune --data with its cache")
	}
	base, _ := os.ReadFile(lenetModel)
	if bytes.Equal(a, base) {
		t.Error("finetune wrote the model it read")
	}

	// What does not go together is refused in one line.
	other := filepath.Join(dir, "other")
	graftRun("features", "--model", "../../testdata/models/cnn/model.onnx", "--data", lenetImages, "-o", other)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{append(train, "-o", filepath.Join(dir, "x.onnx"), "--features", shards[0]), 1, "7 shards given; missing"},
		{append(train, "-o", filepath.Join(dir, "x.onnx"), "--features", other), 1, "come from another model"},
		{append(train, "-o", filepath.Join(dir, "x.onnx"), "--data", lenetImages, "--features", single), 2, "--features and --data"},
		{append(train, "-o", filepath.Join(dir, "x.onnx"), "--val-features", single), 2, "--val-features needs --features"},
		{[]string{"features", "--model", lenetModel, "--data", lenetImages, "--shard", "1/x", "-o", other}, 2, "--shard"},
	} {
		code, _, errs := graft(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) || strings.Count(errs, "\n") > 2 {
			t.Errorf("graft %v: code %d, %q; want %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
}
