package fileio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A Plan lists the files and folders a command reads and writes, so that
// Check can refuse, before any work, a run that could not write its results
// or would destroy its own input.
type Plan struct {
	// ForceFlag is the command's flag that forces an output (e.g.
	// "--force"), named in Check's advice.
	ForceFlag string

	inputs, outputs []planned
}

type planned struct {
	path, flag string
	dir        bool // an output folder
	force      bool
}

// name is how errors call a planned path: "-o out.onnx", or "output
// out.onnx" when the user gave it without a flag.
func (e planned) name(role string) string {
	if e.flag != "" {
		return e.flag + " " + e.path
	}
	return role + " " + e.path
}

// Input declares a file or folder the command reads, such as a model, each
// of its external data files (onnx.Model.ExternalDataFiles) or a data
// folder. flag is how the user gave it ("--model"), or "".
func (p *Plan) Input(path, flag string) {
	p.inputs = append(p.inputs, planned{path: path, flag: flag})
}

// Output declares a file the command writes. With Force, it may replace a
// read-only file or one of the command's input files; never a file inside
// an input folder.
func (p *Plan) Output(path, flag string, opts ...Option) {
	p.outputs = append(p.outputs, planned{path: path, flag: flag, force: collect(opts).force})
}

// OutputDir declares a folder the command writes into, creating it if
// missing.
func (p *Plan) OutputDir(path, flag string) {
	p.outputs = append(p.outputs, planned{path: path, flag: flag, dir: true})
}

// Check returns the first reason the plan cannot run: an input that cannot
// be read; an output that the rule refuses (see the package doc), whose
// folder does not exist (unless it is, or is inside, a declared output
// folder) or does not accept a new file; an output that is an input file
// (unless forced); an output inside, or equal to, an input folder; two
// outputs that are the same file. It writes nothing but a probe file it
// removes at once.
func (p *Plan) Check() error {
	type input struct {
		planned
		info fs.FileInfo
		real string
	}
	var ins []input
	for _, in := range p.inputs {
		fi, err := os.Stat(in.path)
		if err != nil {
			return fmt.Errorf("%s: %w", in.name("input"), Reason(err))
		}
		ins = append(ins, input{in, fi, canonical(in.path)})
	}
	type output struct {
		planned
		info fs.FileInfo // the existing file, nil if new or a folder
		real string
	}
	var outs []output
	var outDirs []string // canonical
	for _, out := range p.outputs {
		if out.dir {
			outDirs = append(outDirs, canonical(out.path))
		}
	}
	for _, out := range p.outputs {
		name := out.name("output")
		o := output{planned: out}
		var folder string // the folder that must accept a new file
		if out.dir {
			fi, err := os.Stat(out.path)
			switch {
			case err == nil && !fi.IsDir():
				return fmt.Errorf("%s is a file, not a folder", name)
			case err != nil && !errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("%s: %w", name, Reason(err))
			}
			o.real, folder = canonical(out.path), out.path
		} else {
			t, err := resolve(out.path, name, out.force)
			if errors.Is(err, ErrReadOnly) {
				return fmt.Errorf("%w%s", err, p.advice("replace it"))
			}
			if err != nil {
				return err
			}
			o.info, o.real, folder = t.info, canonical(t.path), filepath.Dir(t.path)
			if _, err := os.Stat(folder); errors.Is(err, fs.ErrNotExist) && !insideAny(canonical(folder), outDirs) {
				return fmt.Errorf("%s: folder %s does not exist", name, folder)
			}
		}
		if err := probe(name, folder); err != nil {
			return err
		}
		for _, in := range ins {
			inName := in.name("input")
			switch {
			case in.info.IsDir() && o.real == in.real:
				return fmt.Errorf("%s is the folder %s, which this command reads; write elsewhere", name, inName)
			case in.info.IsDir() && inside(o.real, in.real):
				return fmt.Errorf("%s is inside %s, which this command reads; write elsewhere", name, inName)
			case !in.info.IsDir() && o.info != nil && os.SameFile(o.info, in.info) && !out.force:
				return fmt.Errorf("%s is the same file as %s%s", name, inName, p.advice("overwrite it"))
			}
		}
		for _, prev := range outs {
			same := o.real == prev.real
			if o.info != nil && prev.info != nil {
				same = os.SameFile(o.info, prev.info)
			}
			if same && (!o.dir || !prev.dir) {
				return fmt.Errorf("%s and %s are the same file", prev.name("output"), name)
			}
		}
		outs = append(outs, o)
	}
	return nil
}

// advice tells the user how to force an output.
func (p *Plan) advice(what string) string {
	if p.ForceFlag == "" {
		return "; it is written only when forced"
	}
	return fmt.Sprintf("; pass %s to %s", p.ForceFlag, what)
}

// probe checks that folder, or the nearest folder above it that exists,
// accepts a new file, by creating one and removing it.
func probe(name, folder string) error {
	dir := folder
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s: %s is not a folder", name, dir)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", name, Reason(err))
		}
		up := filepath.Dir(dir)
		if up == dir {
			return fmt.Errorf("%s: %w", name, Reason(err))
		}
		dir = up
	}
	f, err := createTemp(dir, "graft-check", 0o600)
	if err != nil {
		return fmt.Errorf("%s: cannot create a file in folder %s: %w", name, dir, Reason(err))
	}
	os.Remove(f.Name())
	f.Close()
	return nil
}

// canonical returns path made absolute with every symlink in its longest
// existing prefix resolved, so that two names of one place compare equal.
func canonical(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}
	var rest []string
	for dir := abs; ; {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(append([]string{real}, rest...)...)
		}
		up := filepath.Dir(dir)
		if up == dir {
			return abs
		}
		rest = append([]string{filepath.Base(dir)}, rest...)
		dir = up
	}
}

// inside reports whether path is strictly inside folder dir (both
// canonical).
func inside(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func insideAny(path string, dirs []string) bool {
	for _, d := range dirs {
		if path == d || inside(path, d) {
			return true
		}
	}
	return false
}
