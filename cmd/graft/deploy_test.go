package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/runtime/data"
	"gopkg.in/yaml.v3"
)

const deployDir = "../../docs/deploy"

// k8sObject is the part of a Kubernetes object the manifests use; the
// decoder refuses any other field, so a misspelt key fails the test.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		// PersistentVolumeClaim
		AccessModes []string `yaml:"accessModes"`
		Resources   any      `yaml:"resources"`
		// Job
		CompletionMode       string `yaml:"completionMode"`
		Completions          int    `yaml:"completions"`
		Parallelism          int    `yaml:"parallelism"`
		BackoffLimit         *int   `yaml:"backoffLimit"`
		BackoffLimitPerIndex *int   `yaml:"backoffLimitPerIndex"`
		Template             struct {
			Spec struct {
				RestartPolicy string `yaml:"restartPolicy"`
				Containers    []struct {
					Name    string   `yaml:"name"`
					Image   string   `yaml:"image"`
					Command []string `yaml:"command"`
					Env     []struct {
						Name      string `yaml:"name"`
						ValueFrom struct {
							FieldRef struct {
								FieldPath string `yaml:"fieldPath"`
							} `yaml:"fieldRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					Args         []string `yaml:"args"`
					Resources    any      `yaml:"resources"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name                  string `yaml:"name"`
					PersistentVolumeClaim struct {
						ClaimName string `yaml:"claimName"`
					} `yaml:"persistentVolumeClaim"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func readManifest(t *testing.T, name string) *k8sObject {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "kubernetes", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var o k8sObject
	if err := dec.Decode(&o); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &o
}

// checkJob checks what every job needs: one graft container with the
// shared volume at /shared, and returns its arguments.
func checkJob(t *testing.T, name string, o *k8sObject) []string {
	t.Helper()
	s := o.Spec.Template.Spec
	if o.APIVersion != "batch/v1" || o.Kind != "Job" || o.Metadata.Name == "" || s.RestartPolicy != "Never" || len(s.Containers) != 1 {
		t.Fatalf("%s: %s %s %q, restart %q, %d containers", name, o.APIVersion, o.Kind, o.Metadata.Name, s.RestartPolicy, len(s.Containers))
	}
	c := s.Containers[0]
	if c.Image == "" || !slices.Equal(c.Command, []string{"graft"}) || len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/shared" ||
		len(s.Volumes) != 1 || s.Volumes[0].Name != c.VolumeMounts[0].Name || s.Volumes[0].PersistentVolumeClaim.ClaimName != "graft-shared" {
		t.Errorf("%s: container %+v, volumes %+v", name, c, s.Volumes)
	}
	return c.Args
}

// checkIndexed checks an Indexed Job of n tasks, each running shard
// $(JOB_COMPLETION_INDEX)/n into its own folder, and returns n and its
// arguments.
func checkIndexed(t *testing.T, name string) (int, []string) {
	t.Helper()
	o := readManifest(t, name)
	args := checkJob(t, name, o)
	n := o.Spec.Completions
	if o.Spec.CompletionMode != "Indexed" || n < 2 || o.Spec.Parallelism != n {
		t.Errorf("%s: completion mode %q, %d completions, parallelism %d", name, o.Spec.CompletionMode, n, o.Spec.Parallelism)
	}
	env := o.Spec.Template.Spec.Containers[0].Env
	if len(env) != 1 || env[0].Name != "JOB_COMPLETION_INDEX" || env[0].ValueFrom.FieldRef.FieldPath != "metadata.annotations['batch.kubernetes.io/job-completion-index']" {
		t.Errorf("%s: env %+v", name, env)
	}
	if !slices.Contains(args, fmt.Sprintf("--shard=$(JOB_COMPLETION_INDEX)/%d", n)) {
		t.Errorf("%s: no --shard=$(JOB_COMPLETION_INDEX)/%d in %q", name, n, args)
	}
	return n, args
}

// flagValue returns the value of --name=V (or -name=V) in args.
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// onMachine rewrites a manifest's arguments for this machine: the shared
// volume is root, the task index i; set replaces flags' values and adds
// flags (the test's smaller sizes).
func onMachine(args []string, root string, i int, set map[string]string) []string {
	var out []string
	done := map[string]bool{}
	for _, a := range args {
		a = strings.ReplaceAll(a, "$(JOB_COMPLETION_INDEX)", fmt.Sprint(i))
		a = strings.ReplaceAll(a, "/shared", root)
		if name, _, ok := strings.Cut(a, "="); ok && set[name] != "" {
			a, done[name] = name+"="+set[name], true
		}
		out = append(out, a)
	}
	for name, v := range set {
		if !done[name] {
			out = append(out, name+"="+v)
		}
	}
	return out
}

// digitFolder writes held-out digits [from, from+n) as an image folder.
func digitFolder(t *testing.T, dir string, from, n int) {
	t.Helper()
	images, err := data.ReadIDXImages(lenetImages)
	if err != nil {
		t.Fatal(err)
	}
	labels, err := data.ReadIDXLabels(lenetLabels)
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < from+n; i++ {
		class := filepath.Join(dir, fmt.Sprint(labels[i]))
		os.MkdirAll(class, 0o755)
		im := image.NewGray(image.Rect(0, 0, 28, 28))
		copy(im.Pix, images.Pixels[i*784:(i+1)*784])
		var b bytes.Buffer
		png.Encode(&b, im)
		if err := os.WriteFile(filepath.Join(class, fmt.Sprintf("%04d.png", i)), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// sharedVolume lays out the shared volume of docs/deploy/README.md: the
// model, a validation and a training folder (real digits).
func sharedVolume(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	m, err := os.ReadFile(lenetModel)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "model.onnx"), m, 0o644)
	digitFolder(t, filepath.Join(root, "data", "val"), 0, 140)
	digitFolder(t, filepath.Join(root, "data", "train"), 140, 140)
	return root
}

// The deployment examples are what they say: the Kubernetes manifests are
// Indexed Jobs whose tasks run graft on their shard of the shared volume,
// the Slurm scripts are job arrays doing the same, and both, run on this
// machine task by task (on 140 digits, in batches of 20), then merged,
// give the report and the model of one graft process on the whole data.
func TestDeployExamples(t *testing.T) {
	vol := readManifest(t, "volume.yaml")
	if vol.Kind != "PersistentVolumeClaim" || vol.Metadata.Name != "graft-shared" || !slices.Equal(vol.Spec.AccessModes, []string{"ReadWriteMany"}) {
		t.Errorf("volume.yaml: %+v", vol)
	}
	nr, robArgs := checkIndexed(t, "robustness-shards.yaml")
	mergeArgs := checkJob(t, "robustness-merge.yaml", readManifest(t, "robustness-merge.yaml"))
	nf, featArgs := checkIndexed(t, "features-shards.yaml")
	tuneArgs := checkJob(t, "finetune.yaml", readManifest(t, "finetune.yaml"))
	if robArgs[0] != "robustness" || featArgs[0] != "features" || mergeArgs[0] != "merge-reports" || tuneArgs[0] != "finetune" {
		t.Fatalf("commands %s, %s, %s, %s", robArgs[0], featArgs[0], mergeArgs[0], tuneArgs[0])
	}
	// The merge steps read every shard's folder.
	for _, c := range []struct {
		name      string
		n         int
		out, args []string
	}{{"robustness-merge.yaml", nr, robArgs, mergeArgs}, {"finetune.yaml", nf, featArgs, tuneArgs}} {
		var want []string
		for i := range c.n {
			want = append(want, strings.ReplaceAll(flagValue(c.out, "-o"), "$(JOB_COMPLETION_INDEX)", fmt.Sprint(i)))
		}
		var got []string
		for _, a := range c.args {
			if v, ok := strings.CutPrefix(a, "--features="); ok {
				a = v
			}
			if strings.HasPrefix(a, "/shared/") && !strings.Contains(a, "=") {
				got = append(got, a)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s reads %q, the shards write %q", c.name, got, want)
		}
	}
	if b := flagValue(featArgs, "--batch"); b == "" || b != flagValue(tuneArgs, "--batch") {
		t.Errorf("features --batch %q, finetune --batch %q: they must agree", b, flagValue(tuneArgs, "--batch"))
	}
	scripts, _ := filepath.Glob(filepath.Join(deployDir, "slurm", "*"))
	for _, s := range scripts {
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", s, err, out)
		}
	}
	if len(scripts) != 5 {
		t.Errorf("slurm scripts %v", scripts)
	}
	if testing.Short() {
		return
	}

	// Run them here, on 140 digits in batches of 20 (7 blocks).
	bin := buildGraft(t)
	graftRun := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("graft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	small := map[string]string{"--batch": "20", "--limit": "140"}
	root := sharedVolume(t)
	for i := range nr {
		graftRun(onMachine(robArgs, root, i, small)...)
	}
	graftRun(onMachine(mergeArgs, root, 0, nil)...)
	for i := range nf {
		graftRun(onMachine(featArgs, root, i, map[string]string{"--batch": "20"})...)
	}
	graftRun(onMachine(tuneArgs, root, 0, map[string]string{"--batch": "20"})...)
	// The Slurm scripts write the same folders.
	for _, d := range []string{"robustness", "features", "finetune"} {
		if err := os.Rename(filepath.Join(root, d), filepath.Join(root, "k8s-"+d)); err != nil {
			t.Fatal(err)
		}
	}

	// One process on the whole data, as on one machine.
	var whole []string
	for _, a := range onMachine(robArgs, root, 0, small) {
		if !strings.HasPrefix(a, "--shard=") && !strings.HasPrefix(a, "-o=") {
			whole = append(whole, a)
		}
	}
	single := filepath.Join(root, "single")
	graftRun(append(whole, "-o="+filepath.Join(single, "report"))...)
	sameReportDirs(t, "kubernetes", filepath.Join(single, "report"), filepath.Join(root, "k8s-robustness", "report"))
	var tune []string
	for _, a := range onMachine(tuneArgs, root, 0, map[string]string{"--batch": "20", "-o": filepath.Join(single, "model.onnx")}) {
		if strings.HasPrefix(a, "--features=") {
			tune = append(tune, "--data="+filepath.Join(root, "data", "train"))
		} else if !strings.Contains(a, "/features/parts/") {
			tune = append(tune, a)
		}
	}
	graftRun(tune...)
	want, _ := os.ReadFile(filepath.Join(single, "model.onnx"))
	if got, _ := os.ReadFile(filepath.Join(root, "k8s-finetune", "model.onnx")); len(want) == 0 || !bytes.Equal(got, want) {
		t.Error("kubernetes: the model trained on the shards' features differs from finetune --data's")
	}

	// The Slurm scripts, each array task as Slurm would start it.
	slurm := root
	script := func(name string, env ...string) {
		t.Helper()
		cmd := exec.Command("bash", filepath.Join(deployDir, "slurm", name))
		cmd.Env = append(os.Environ(), append([]string{"SHARED=" + slurm, "GRAFT=" + bin, "BATCH=20"}, env...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, env, err, out)
		}
	}
	for i := range 7 {
		script("robustness.sbatch", fmt.Sprintf("SLURM_ARRAY_TASK_ID=%d", i), "SLURM_ARRAY_TASK_COUNT=7", "EXTRA_ARGS=--limit 140")
	}
	script("robustness-merge.sbatch")
	sameReportDirs(t, "slurm", filepath.Join(single, "report"), filepath.Join(slurm, "robustness", "report"))
	for i := range 4 {
		script("features.sbatch", fmt.Sprintf("SLURM_ARRAY_TASK_ID=%d", i), "SLURM_ARRAY_TASK_COUNT=4")
	}
	script("finetune.sbatch")
	if got, _ := os.ReadFile(filepath.Join(slurm, "finetune", "model.onnx")); !bytes.Equal(got, want) {
		t.Error("slurm: the model trained on the shards' features differs from finetune --data's")
	}
}
