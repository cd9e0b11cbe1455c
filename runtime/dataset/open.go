package dataset

import (
	"errors"
	"fmt"
	"os"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/runtime/data"
)

// ErrNotApplicable is wrapped by Open's error for an option that does not
// apply to the data found (IDX labels for an image folder, say): a mistake
// on the command line rather than in the data.
var ErrNotApplicable = errors.New("option does not apply")

// OpenOptions say how Open reads a data set.
type OpenOptions struct {
	// Labels is the IDX labels file; empty means the standard name beside
	// the images file (data.IDXLabelsPath). IDX data only.
	Labels string
	// Classes keeps the examples of these labels, relabelled 0, 1, ... in
	// the order given (see Select). IDX data only: an image folder's
	// classes are its sub-folders.
	Classes []int
	// PerClass, when above 0, keeps at most that many examples of each
	// class, chosen by Seed (see PerClass).
	PerClass int
	Seed     int64
	// SkipBad leaves out images that do not decode (see SkipBad). Image
	// folders only.
	SkipBad bool
}

// Open reads the data set at path: an image folder (ImageFolder) when path
// is a folder, else an IDX images file with its labels (IDX).
func Open(path string, o OpenOptions) (*Dataset, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("data %s: %w", path, fileio.Reason(err))
	}
	notFor := func(opt, kind string) error {
		return fmt.Errorf("%w: %s applies to IDX data, and %s is %s", ErrNotApplicable, opt, path, kind)
	}
	var ds *Dataset
	if st.IsDir() {
		switch {
		case o.Labels != "":
			return nil, notFor("a labels file", "an image folder (its sub-folders are the classes)")
		case o.Classes != nil:
			return nil, notFor("choosing classes by label", "an image folder (keep the sub-folders of the classes wanted)")
		}
		var opts []Option
		if o.SkipBad {
			opts = append(opts, SkipBad())
		}
		if ds, err = ImageFolder(path, opts...); err != nil {
			return nil, err
		}
	} else {
		if o.SkipBad {
			return nil, fmt.Errorf("%w: skipping images that do not decode applies to image folders, and %s is a file", ErrNotApplicable, path)
		}
		labels := o.Labels
		if labels == "" {
			if labels, err = data.IDXLabelsPath(path); err != nil {
				if _, imErr := data.ReadIDXImages(path); imErr != nil {
					return nil, imErr // not IDX images at all: say that first
				}
				return nil, err
			}
		}
		if ds, err = IDX(path, labels, o.Classes...); err != nil {
			return nil, err
		}
	}
	if o.PerClass > 0 {
		return ds.PerClass(o.PerClass, o.Seed)
	}
	return ds, nil
}
