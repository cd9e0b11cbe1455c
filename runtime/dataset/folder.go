package dataset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/runtime/data"
)

// An Option changes how ImageFolder reads a folder.
type Option func(*folderOptions)

type folderOptions struct {
	skipBad bool
}

// SkipBad makes ImageFolder decode every image once, in parallel, before
// returning, and leave out the ones that fail (Dataset.Skipped counts them,
// SkippedErrors says why), and the entries with image names that are not
// regular files. Training then never meets a corrupt file, and every epoch
// has the same examples. Without it the folder is only listed, a corrupt
// image is an error when the first batch holding it loads, and a named pipe
// or device with an image name is an error at once.
func SkipBad() Option { return func(o *folderOptions) { o.skipBad = true } }

// ImageFolder reads a data set laid out as torchvision's ImageFolder
// expects: a sub-folder of root per class, holding that class's images
// (PNG, JPEG or GIF files, see data.IsImageFile), possibly in nested
// folders. The classes are the sub-folder names in sorted (byte) order,
// labelled 0, 1, ... in that order; a class's images are ordered as
// torchvision orders them (by folder path, then file name). Entries whose
// names start with "." (hidden files and folders, macOS "._" files) and
// files that are not images are ignored; symbolic links are followed. An
// entry with an image name that is not a regular file (a named pipe, a
// device) is never opened: it is an error naming it, or, with SkipBad,
// left out like an unreadable image.
//
// It is an error if root does not exist or is not a folder, has no class
// folders, has a class folder without images, or has only one class:
// fine-tuning a classifier needs two or more. Images may have any size
// (the preprocessing resizes them).
func ImageFolder(root string, opts ...Option) (*Dataset, error) {
	var o folderOptions
	for _, opt := range opts {
		opt(&o)
	}
	fail := func(format string, args ...any) (*Dataset, error) {
		return nil, fmt.Errorf("image folder %s: %s", root, fmt.Sprintf(format, args...))
	}
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("image folder %s: %w", root, fileio.Reason(err))
	}
	if !st.IsDir() {
		return fail("not a folder")
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("image folder %s: %w", root, fileio.Reason(err))
	}
	var classes []string
	for _, e := range entries {
		if hidden(e.Name()) {
			continue
		}
		if isDir(filepath.Join(root, e.Name()), e) {
			classes = append(classes, e.Name())
		}
	}
	slices.Sort(classes)
	if len(classes) == 0 {
		return fail("no class folders: want one sub-folder of images per class (%s)", filepath.Join(root, "CLASS", "IMAGE.jpg"))
	}
	ds := &Dataset{source: root, inputs: []string{root}, classes: classes}
	var specials []error
	for label, c := range classes {
		dir := filepath.Join(root, c)
		files, sp, err := listImages(dir)
		if err != nil {
			return nil, fmt.Errorf("image folder %s: %w", root, err)
		}
		if len(sp) > 0 && !o.skipBad {
			return nil, fmt.Errorf("image folder %s: %w (use SkipBad to leave such files out)", root, sp[0])
		}
		specials = append(specials, sp...)
		if len(files) == 0 {
			return fail("class folder %s has no images (PNG, JPEG or GIF files)", dir)
		}
		for _, f := range files {
			ds.paths = append(ds.paths, f)
			ds.labels = append(ds.labels, label)
		}
	}
	if len(classes) == 1 {
		return fail("only one class (%s): fine-tuning a classifier needs at least 2 class folders", classes[0])
	}
	if o.skipBad {
		if err := ds.dropBad(); err != nil {
			return nil, err
		}
		ds.skipped = append(ds.skipped, specials...)
	}
	return ds, nil
}

// ImageFolders reads a training and a validation folder (each as
// ImageFolder does) and checks they have the same classes.
func ImageFolders(trainRoot, valRoot string, opts ...Option) (train, val *Dataset, err error) {
	if train, err = ImageFolder(trainRoot, opts...); err != nil {
		return nil, nil, err
	}
	if val, err = ImageFolder(valRoot, opts...); err != nil {
		return nil, nil, err
	}
	if err := SameClasses(train, val); err != nil {
		return nil, nil, err
	}
	return train, val, nil
}

func hidden(name string) bool { return strings.HasPrefix(name, ".") }

// isDir reports whether the entry is a folder, following symbolic links.
func isDir(path string, e os.DirEntry) bool {
	if e.Type()&os.ModeSymlink != 0 {
		st, err := os.Stat(path)
		return err == nil && st.IsDir()
	}
	return e.IsDir()
}

// listImages returns the image files under dir, in torchvision's order:
// sorted by folder path, then by name within a folder, and the entries
// with image names that are not regular files (pipes, devices, sockets),
// which are never opened: opening a named pipe waits for a writer.
func listImages(dir string) (images []string, specials []error, err error) {
	type file struct{ dir, name string }
	var files []file
	seen := map[string]bool{} // real paths of the folders walked, against link cycles
	var walk func(d string) error
	walk = func(d string) error {
		if real, err := filepath.EvalSymlinks(d); err == nil {
			if seen[real] {
				return nil
			}
			seen[real] = true
		}
		entries, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("reading %s: %w", d, fileio.Reason(err))
		}
		for _, e := range entries {
			if hidden(e.Name()) {
				continue
			}
			p := filepath.Join(d, e.Name())
			if isDir(p, e) {
				if err := walk(p); err != nil {
					return err
				}
			} else if data.IsImageFile(e.Name()) {
				if kind := special(p, e); kind != "" {
					specials = append(specials, &data.Error{File: p, Err: fmt.Errorf("%s, %w", kind, ErrNotRegular)})
					continue
				}
				files = append(files, file{d, e.Name()})
			}
		}
		return nil
	}
	if err := walk(dir); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(files, func(a, b file) int {
		if c := strings.Compare(a.dir, b.dir); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = filepath.Join(f.dir, f.name)
	}
	return out, specials, nil
}

// ErrNotRegular is wrapped by the error for an entry with an image name
// that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// special names the kind of a non-regular file (following links), or
// returns "" for a regular one.
func special(path string, e os.DirEntry) string {
	mode := e.Type()
	if mode&os.ModeSymlink != 0 {
		st, err := os.Stat(path)
		if err != nil {
			return "" // a broken link fails as an image, with its reason
		}
		mode = st.Mode().Type()
	}
	return fileio.Kind(mode)
}

// dropBad decodes every image in parallel and removes those that fail.
func (d *Dataset) dropBad() error {
	errs := make([]error, len(d.paths))
	next := make(chan int)
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(d.paths))
	for range workers {
		wg.Go(func() {
			for i := range next {
				_, errs[i] = data.LoadConcurrent(d.paths[i], workers)
			}
		})
	}
	for i := range d.paths {
		next <- i
	}
	close(next)
	wg.Wait()

	var keep []int
	var classErr []error // the first error of each class
	classErr = make([]error, len(d.classes))
	for i, err := range errs {
		if err != nil {
			d.skipped = append(d.skipped, err)
			if classErr[d.labels[i]] == nil {
				classErr[d.labels[i]] = err
			}
			continue
		}
		keep = append(keep, i)
	}
	if len(d.skipped) == 0 {
		return nil
	}
	skipped := d.skipped
	*d = *d.derive(keep)
	d.skipped = skipped
	for c, n := range d.ClassCounts() {
		if n == 0 {
			return fmt.Errorf("image folder %s: class folder %s has no readable images (%v)",
				d.source, filepath.Join(d.source, d.classes[c]), classErr[c])
		}
	}
	return nil
}
