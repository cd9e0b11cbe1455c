package attacks

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/internal/memlimit"
)

// Detail is every example's outcome in one shard of a sweep, by the
// example's index in the whole sweep: what Merge needs to compute the
// whole sweep's numbers exactly as one machine would (the mean confidence
// is summed over the examples in the sweep's order, so it needs each
// example's confidence, not a shard's sum).
type Detail struct {
	// Total is the number of examples in the whole sweep, Classes the
	// model's classes and Samples the number of first examples the whole
	// sweep's examples.png shows.
	Total   int `json:"total"`
	Classes int `json:"classes"`
	Samples int `json:"samples"`
	// Index lists the shard's examples (increasing indices into the whole
	// sweep); the other fields are by example, in that order.
	Index     []int `json:"index"`
	Labels    []int `json:"labels"`
	Targets   []int `json:"targets,omitempty"` // targeted sweeps only
	CleanPred []int `json:"clean_pred"`
	// Pred and Confidence are by eps (Settings.Eps), then by example: the
	// prediction on the attacked input and its probability.
	Pred       [][]int      `json:"pred"`
	Confidence [][]Fraction `json:"confidence"`
	// Grid holds the shard's examples among the sweep's first Samples, for
	// examples.png; GridShape is one example's shape.
	Grid      []GridExample `json:"grid,omitempty"`
	GridShape []int         `json:"grid_shape,omitempty"`
}

// A GridExample is one example of examples.png: its clean input and its
// attacked input at each eps.
type GridExample struct {
	Index int      `json:"index"`
	Clean Pixels   `json:"clean"`
	Adv   []Pixels `json:"adv"`
}

// Pixels are input values, stored in JSON exactly: base64 of their
// little-endian IEEE 754 float64 bits.
type Pixels []float64

// MarshalJSON writes the values as base64.
func (p Pixels) MarshalJSON() ([]byte, error) {
	b := make([]byte, 8*len(p))
	for i, v := range p {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	return json.Marshal(b)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (p *Pixels) UnmarshalJSON(data []byte) error {
	var b []byte
	if err := json.Unmarshal(data, &b); err != nil {
		return err
	}
	if len(b)%8 != 0 {
		return fmt.Errorf("pixels: %d bytes, not a whole number of float64 values", len(b))
	}
	*p = make(Pixels, len(b)/8)
	for i := range *p {
		(*p)[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return nil
}

func newDetail(eps, samples int) *Detail {
	return &Detail{Samples: samples, Pred: make([][]int, eps), Confidence: make([][]Fraction, eps)}
}

// success reports whether the attack at eps j succeeded on example i: the
// prediction is the target (targeted) or not the label (untargeted), as
// Criterion.Success says.
func (d *Detail) success(j, i int) bool {
	if d.Targets != nil {
		return d.Pred[j][i] == d.Targets[i]
	}
	return d.Pred[j][i] != d.Labels[i]
}

// grid returns the pictures' examples, nil if none.
func (d *Detail) grid(eps []float64) *Grid {
	if len(d.Grid) == 0 {
		return nil
	}
	g := &Grid{Eps: eps, Shape: slices.Clone(d.GridShape), Adv: make([][][]float64, len(eps)),
		Pred: make([][]int, len(eps)), Success: make([][]bool, len(eps))}
	for _, e := range d.Grid {
		i, _ := slices.BinarySearch(d.Index, e.Index)
		g.Labels = append(g.Labels, d.Labels[i])
		if d.Targets != nil {
			g.Targets = append(g.Targets, d.Targets[i])
		}
		g.Clean = append(g.Clean, e.Clean)
		g.CleanPred = append(g.CleanPred, d.CleanPred[i])
		for j := range eps {
			g.Adv[j] = append(g.Adv[j], e.Adv[j])
			g.Pred[j] = append(g.Pred[j], d.Pred[j][i])
			g.Success[j] = append(g.Success[j], d.success(j, i))
		}
	}
	return g
}

// check refuses a detail that does not describe eps radii of examples of
// the given classes consistently (a hand-edited or truncated file).
func (d *Detail) check(eps int) error {
	n := len(d.Index)
	switch {
	case d.Classes < 1:
		return fmt.Errorf("%d classes", d.Classes)
	case d.Total < n:
		return fmt.Errorf("%d examples of a sweep of %d", n, d.Total)
	case d.Samples < 0:
		return fmt.Errorf("%d samples", d.Samples)
	case len(d.Labels) != n || len(d.CleanPred) != n || (d.Targets != nil && len(d.Targets) != n):
		return fmt.Errorf("%d examples with %d labels, %d targets, %d clean predictions", n, len(d.Labels), len(d.Targets), len(d.CleanPred))
	case len(d.Pred) != eps || len(d.Confidence) != eps:
		return fmt.Errorf("predictions for %d and confidences for %d radii, want %d", len(d.Pred), len(d.Confidence), eps)
	}
	for j := range eps {
		if len(d.Pred[j]) != n || len(d.Confidence[j]) != n {
			return fmt.Errorf("eps %d: %d predictions, %d confidences for %d examples", j, len(d.Pred[j]), len(d.Confidence[j]), n)
		}
	}
	class := func(what string, v []int) error {
		for i, c := range v {
			if c < 0 || c >= d.Classes {
				return fmt.Errorf("%s %d of example %d is not one of %d classes", what, c, i, d.Classes)
			}
		}
		return nil
	}
	for _, err := range []error{class("label", d.Labels), class("target", d.Targets), class("clean prediction", d.CleanPred)} {
		if err != nil {
			return err
		}
	}
	for j := range eps {
		if err := class("prediction", d.Pred[j]); err != nil {
			return err
		}
	}
	for i, x := range d.Index {
		if x < 0 || x >= d.Total || (i > 0 && x <= d.Index[i-1]) {
			return fmt.Errorf("example index %d (at %d) is not in increasing order within [0, %d)", x, i, d.Total)
		}
	}
	size := 1
	for _, s := range d.GridShape {
		if s < 1 || s > 1<<16 {
			return fmt.Errorf("grid shape %v", d.GridShape)
		}
		size *= s
	}
	if len(d.Grid) > 0 && (len(d.GridShape) < 2 || len(d.GridShape) > 3) {
		return fmt.Errorf("grid shape %v", d.GridShape)
	}
	for _, g := range d.Grid {
		if _, ok := slices.BinarySearch(d.Index, g.Index); !ok || g.Index >= d.Samples {
			return fmt.Errorf("grid example %d is not one of the shard's first %d examples", g.Index, d.Samples)
		}
		if len(g.Clean) != size || len(g.Adv) != eps {
			return fmt.Errorf("grid example %d: %d values and %d radii, want %d and %d", g.Index, len(g.Clean), len(g.Adv), size, eps)
		}
		for _, a := range g.Adv {
			if len(a) != size {
				return fmt.Errorf("grid example %d: %d attacked values, want %d", g.Index, len(a), size)
			}
		}
	}
	return nil
}

// Merge combines the reports of the shards of one sweep (see
// RobustnessOptions.Shard), in any order, into the report of the whole
// sweep. The result equals the report one machine makes of the whole
// sweep, every count, accuracy, confidence and picture bit for bit, but
// for Seconds, which is the shards' total: the numbers come from the same
// code over the same per-example outcomes in the same order.
//
// It refuses parts that do not belong together, naming the difference:
// other settings (model SHA-256, data and its fingerprint, attack, eps,
// batch size, limit, ...), another shard count or sweep size, a shard
// given twice or missing, and reports that are not a shard's.
func Merge(parts ...*Report) (*Report, error) {
	if len(parts) == 0 {
		return nil, errors.New("merge: no reports")
	}
	first := parts[0]
	for k, r := range parts {
		if r == nil || r.Shard == nil || r.Detail == nil {
			return nil, fmt.Errorf("merge: report %d is not a shard's report (made without a shard)", k+1)
		}
		name := fmt.Sprintf("shard %v", *r.Shard)
		if err := r.Shard.Check(); err != nil {
			return nil, fmt.Errorf("merge: report %d: %w", k+1, err)
		}
		if err := r.Detail.check(len(r.Settings.Eps)); err != nil {
			return nil, fmt.Errorf("merge: %s: %w", name, err)
		}
		if len(r.Points) != len(r.Settings.Eps) {
			return nil, fmt.Errorf("merge: %s: %d points for %d radii", name, len(r.Points), len(r.Settings.Eps))
		}
		if k == 0 {
			continue
		}
		if r.Shard.Count != first.Shard.Count {
			return nil, fmt.Errorf("merge: %v and %v come from splits into %d and %d shards", *first.Shard, *r.Shard, first.Shard.Count, r.Shard.Count)
		}
		if diff := settingsDiff(first.Settings, r.Settings); diff != "" {
			return nil, fmt.Errorf("merge: shards %v and %v were made with other settings: %s", *first.Shard, *r.Shard, diff)
		}
		a, b := first.Detail, r.Detail
		switch {
		case a.Total != b.Total:
			return nil, fmt.Errorf("merge: shards %v and %v split sweeps of %d and %d examples", *first.Shard, *r.Shard, a.Total, b.Total)
		case a.Classes != b.Classes:
			return nil, fmt.Errorf("merge: shards %v and %v have %d and %d classes", *first.Shard, *r.Shard, a.Classes, b.Classes)
		case a.Samples != b.Samples:
			return nil, fmt.Errorf("merge: shards %v and %v show %d and %d examples in examples.png", *first.Shard, *r.Shard, a.Samples, b.Samples)
		case (a.Targets != nil) != (b.Targets != nil):
			return nil, fmt.Errorf("merge: shard %v is targeted and %v not", *first.Shard, *r.Shard)
		case len(a.GridShape) > 0 && len(b.GridShape) > 0 && !slices.Equal(a.GridShape, b.GridShape):
			return nil, fmt.Errorf("merge: shards %v and %v have inputs of shape %v and %v", *first.Shard, *r.Shard, a.GridShape, b.GridShape)
		}
	}
	sorted := slices.Clone(parts)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Shard.Index < sorted[j].Shard.Index })
	count := max(first.Shard.Count, 1)
	for k := 1; k < len(sorted); k++ {
		if sorted[k].Shard.Index == sorted[k-1].Shard.Index {
			return nil, fmt.Errorf("merge: shard %v is given twice", *sorted[k].Shard)
		}
	}
	if len(sorted) != count {
		var missing []string
		have := map[int]bool{}
		for _, r := range sorted {
			have[r.Shard.Index] = true
		}
		for i := range count {
			if !have[i] {
				missing = append(missing, fmt.Sprintf("%d/%d", i, count))
			}
		}
		return nil, fmt.Errorf("merge: %d of %d shards given; missing %s", len(sorted), count, strings.Join(missing, ", "))
	}

	// Lay every example's outcome out in the sweep's order.
	total, eps := first.Detail.Total, len(first.Settings.Eps)
	block := max(first.Settings.BatchSize, 1)
	from := make([]int, total) // the shard of each example, -1 for none
	for i := range from {
		from[i] = -1
	}
	for _, r := range sorted {
		for _, x := range r.Detail.Index {
			if from[x] >= 0 {
				return nil, fmt.Errorf("merge: example %d is in shards %d/%d and %v", x, from[x], count, *r.Shard)
			}
			if (x/block)%count != r.Shard.Index {
				return nil, fmt.Errorf("merge: example %d is in shard %v, but the split in blocks of %d puts it in shard %d/%d", x, *r.Shard, block, (x/block)%count, count)
			}
			from[x] = r.Shard.Index
		}
	}
	for x, s := range from {
		if s < 0 {
			return nil, fmt.Errorf("merge: example %d of %d is in no shard", x, total)
		}
	}
	all := newDetail(eps, first.Detail.Samples)
	all.Total, all.Classes, all.GridShape = total, first.Detail.Classes, first.Detail.GridShape
	targeted := first.Detail.Targets != nil
	at := make([]int, count) // the next example of each shard
	for x := range total {
		s := from[x]
		d, i := sorted[s].Detail, at[s]
		at[s]++
		all.Index = append(all.Index, x)
		all.Labels = append(all.Labels, d.Labels[i])
		if targeted {
			all.Targets = append(all.Targets, d.Targets[i])
		}
		all.CleanPred = append(all.CleanPred, d.CleanPred[i])
		for j := range eps {
			all.Pred[j] = append(all.Pred[j], d.Pred[j][i])
			all.Confidence[j] = append(all.Confidence[j], d.Confidence[j][i])
		}
	}
	maxPert := make([]float64, eps)
	var seconds float64
	for _, r := range sorted {
		all.Grid = append(all.Grid, r.Detail.Grid...)
		for j, p := range r.Points {
			maxPert[j] = math.Max(maxPert[j], p.MaxPerturbation)
		}
		seconds += r.Seconds
		if len(all.GridShape) == 0 {
			all.GridShape = r.Detail.GridShape
		}
	}
	sort.Slice(all.Grid, func(i, j int) bool { return all.Grid[i].Index < all.Grid[j].Index })
	if want := min(all.Samples, total); len(all.Grid) != want {
		return nil, fmt.Errorf("merge: the shards hold %d of the first %d examples for examples.png", len(all.Grid), want)
	}
	r := summarize(first.Settings, all, maxPert)
	r.Seconds = seconds
	return r, nil
}

// settingsDiff names the first field in which a and b differ, with both
// values, or returns "".
func settingsDiff(a, b Settings) string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	t := va.Type()
	for i := range t.NumField() {
		fa, fb := va.Field(i).Interface(), vb.Field(i).Interface()
		if reflect.DeepEqual(fa, fb) {
			continue
		}
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		ja, _ := json.Marshal(fa)
		jb, _ := json.Marshal(fb)
		return fmt.Sprintf("%s %s and %s", name, ja, jb)
	}
	return ""
}

// ReadReport reads a report.json that WriteDir wrote: path is the file or
// its folder.
func ReadReport(path string) (*Report, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, ReportJSON)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("report %s: %w", path, fileio.Reason(err))
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("report %s: not a regular file", path)
	}
	// Decoding JSON takes a few times the file's size.
	if err := memlimit.Check("report "+path, memlimit.Mul(4, st.Size(), 1)); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("report %s: %w", path, fileio.Reason(err))
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("report %s: not a graft robustness report: %w", path, err)
	}
	if r.Settings.Attack.Name == "" || len(r.Settings.Eps) == 0 {
		return nil, fmt.Errorf("report %s: not a graft robustness report (no attack or eps)", path)
	}
	return &r, nil
}
