//go:build unix

package fileio

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// planDir makes a folder with a model m.onnx, its data file m.onnx.data, a
// data folder data/ with one image, and returns it as the working folder.
func planDir(t *testing.T) string {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "m.onnx"), "model", 0o644)
	writeFile(t, filepath.Join(dir, "m.onnx.data"), "weights", 0o644)
	os.MkdirAll(filepath.Join(dir, "data", "cat"), 0o755)
	writeFile(t, filepath.Join(dir, "data", "cat", "1.png"), "png", 0o644)
	t.Chdir(dir)
	return dir
}

func TestPlanRefusesInputs(t *testing.T) {
	dir := planDir(t)
	os.Symlink("m.onnx", "link.onnx")
	os.Link("m.onnx", "hard.onnx")
	os.Symlink("data", "datalink")
	cases := []struct {
		name, out, flag string
		dir             bool
		want            string
	}{
		{"same path", "m.onnx", "-o", false, "-o m.onnx is the same file as --model m.onnx; pass --force to overwrite it"},
		{"same path spelt otherwise", "./data/../m.onnx", "-o", false, "-o ./data/../m.onnx is the same file as --model m.onnx; pass --force to overwrite it"},
		{"absolute path", filepath.Join(dir, "m.onnx"), "-o", false, "-o " + filepath.Join(dir, "m.onnx") + " is the same file as --model m.onnx; pass --force to overwrite it"},
		{"symlink", "link.onnx", "-o", false, "-o link.onnx is the same file as --model m.onnx; pass --force to overwrite it"},
		{"hard link", "hard.onnx", "-o", false, "-o hard.onnx is the same file as --model m.onnx; pass --force to overwrite it"},
		{"external data", "m.onnx.data", "--save-output", false, "--save-output m.onnx.data is the same file as --model's data m.onnx.data; pass --force to overwrite it"},
		{"inside a data folder", "data/out.onnx", "-o", false, "-o data/out.onnx is inside --data data, which this command reads; write elsewhere"},
		{"deep inside", "data/cat/out.onnx", "-o", false, "-o data/cat/out.onnx is inside --data data, which this command reads; write elsewhere"},
		{"inside through a link", "datalink/out.onnx", "-o", false, "-o datalink/out.onnx is inside --data data, which this command reads; write elsewhere"},
		{"an image", "data/cat/1.png", "", false, "output data/cat/1.png is inside --data data, which this command reads; write elsewhere"},
		{"folder inside", "data/report", "--metrics-dir", true, "--metrics-dir data/report is inside --data data, which this command reads; write elsewhere"},
		{"the data folder", "datalink", "-o", true, "-o datalink is the folder --data data, which this command reads; write elsewhere"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Plan{ForceFlag: "--force"}
			p.Input("m.onnx", "--model")
			p.Input("m.onnx.data", "--model's data")
			p.Input("data", "--data")
			if c.dir {
				p.OutputDir(c.out, c.flag)
			} else {
				p.Output(c.out, c.flag)
			}
			wantErr(t, p.Check(), c.want)
			// Forced, an input file may be replaced on purpose; a folder
			// being read is never written into.
			p = Plan{ForceFlag: "--force"}
			p.Input("m.onnx", "--model")
			p.Input("m.onnx.data", "--model's data")
			p.Input("data", "--data")
			if c.dir {
				p.OutputDir(c.out, c.flag)
			} else {
				p.Output(c.out, c.flag, Force())
			}
			err := p.Check()
			if inFolder := c.want[len(c.want)-len("write elsewhere"):] == "write elsewhere"; inFolder {
				wantErr(t, err, c.want)
			} else if err != nil {
				t.Errorf("forced: %v", err)
			}
		})
	}
	wantNames(t, dir, "data", "datalink", "hard.onnx", "link.onnx", "m.onnx", "m.onnx.data")
	wantNames(t, filepath.Join(dir, "data"), "cat")
	wantNames(t, filepath.Join(dir, "data", "cat"), "1.png")
}

func TestPlanOutputs(t *testing.T) {
	dir := planDir(t)
	writeFile(t, "ro.onnx", "old", 0o444)
	os.Symlink("out.onnx", "out-link.onnx")
	writeFile(t, "out.onnx", "old", 0o644)
	writeFile(t, "file", "x", 0o644)
	check := func(p *Plan) error {
		p.Input("m.onnx", "--model")
		p.Input("data", "--data")
		return p.Check()
	}
	cases := []struct {
		name string
		plan func(p *Plan)
		want string
	}{
		{"fine", func(p *Plan) {
			p.Output("out.onnx", "-o")
			p.OutputDir("runs/1", "--metrics-dir")
			p.Output("runs/1/metrics.json", "")
			p.Output("runs/1/checkpoint/last.onnx", "")
		}, ""},
		{"two outputs", func(p *Plan) {
			p.Output("out.onnx", "-o")
			p.Output("./out.onnx", "--save-output")
		}, "-o out.onnx and --save-output ./out.onnx are the same file"},
		{"two outputs through a link", func(p *Plan) {
			p.Output("out.onnx", "-o")
			p.Output("out-link.onnx", "--save-output")
		}, "-o out.onnx and --save-output out-link.onnx are the same file"},
		{"two new outputs", func(p *Plan) {
			p.OutputDir("runs", "--metrics-dir")
			p.Output("runs/metrics.json", "")
			p.Output("runs/../runs/metrics.json", "--save-output")
		}, "output runs/metrics.json and --save-output runs/../runs/metrics.json are the same file"},
		{"read-only", func(p *Plan) { p.Output("ro.onnx", "-o") },
			"-o ro.onnx is read-only (mode 0444); graft replaces a read-only file only when forced; pass --force to replace it"},
		{"read-only forced", func(p *Plan) { p.Output("ro.onnx", "-o", Force()) }, ""},
		{"device", func(p *Plan) { p.Output("/dev/null", "-o", Force()) },
			"-o /dev/null is a character device, not a regular file; graft writes only regular files"},
		{"folder", func(p *Plan) { p.Output("data/cat/..", "-o") },
			"-o data/cat/.. is a folder, not a regular file; graft writes only regular files"},
		{"missing folder", func(p *Plan) { p.Output("nowhere/out.onnx", "-o") },
			"-o nowhere/out.onnx: folder nowhere does not exist"},
		{"output folder is a file", func(p *Plan) { p.OutputDir("file", "--metrics-dir") },
			"--metrics-dir file is a file, not a folder"},
		{"file as folder", func(p *Plan) { p.Output("file/out.onnx", "-o") },
			"-o file/out.onnx: not a directory"},
		{"missing input", func(p *Plan) { p.Input("gone.onnx", "--model") },
			"--model gone.onnx: no such file or directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &Plan{ForceFlag: "--force"}
			c.plan(p)
			err := check(p)
			if c.want == "" {
				if err != nil {
					t.Error(err)
				}
				return
			}
			wantErr(t, err, c.want)
		})
	}
	// Check creates nothing, not even the output folders it accepts.
	wantNames(t, dir, "data", "file", "m.onnx", "m.onnx.data", "out-link.onnx", "out.onnx", "ro.onnx")

	p := &Plan{}
	p.Output("ro.onnx", "-o")
	wantErr(t, check(p), "-o ro.onnx is read-only (mode 0444); graft replaces a read-only file only when forced; it is written only when forced")
	if err := check(p); !errors.Is(err, ErrReadOnly) {
		t.Errorf("%v is not ErrReadOnly", err)
	}
	p = &Plan{}
	p.Input("m.onnx", "")
	p.Output("m.onnx", "")
	wantErr(t, p.Check(), "output m.onnx is the same file as input m.onnx; it is written only when forced")
}
