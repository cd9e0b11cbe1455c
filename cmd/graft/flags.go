package main

import (
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/internal/fileio"
	"github.com/graft-dev/graft/onnx"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// parseNumbers parses a flag's comma-separated numbers ("0.485,0.456");
// empty means nil. NaN and infinities are refused.
func parseNumbers(flag, s string) ([]float64, error) {
	if s == "" {
		return nil, nil
	}
	var out []float64
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, usage("%s %q: %q is not a number", flag, s, strings.TrimSpace(part))
		}
		out = append(out, v)
	}
	return out, nil
}

// parseFloatList is parseNumbers for float32 values (means, stds).
func parseFloatList(flag, s string) ([]float32, error) {
	v, err := parseNumbers(flag, s)
	if v == nil || err != nil {
		return nil, err
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out, nil
}

// parseIntList parses a flag's comma-separated integers ("5,6,7").
func parseIntList(flag, s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil, usage("%s %q: %q is not an integer", flag, s, strings.TrimSpace(part))
		}
		out = append(out, v)
	}
	return out, nil
}

// isTerminal reports whether f is a character device (a terminal), where
// progress is drawn as an updating line; elsewhere graft prints plain lines.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// parseMeanStdFlags parses --mean and --std, which go together; a std of 0
// is refused.
func parseMeanStdFlags(mean, std string) (m, s []float32, err error) {
	if (mean == "") != (std == "") {
		return nil, nil, usage("--mean and --std go together")
	}
	if m, err = parseFloatList("--mean", mean); err != nil {
		return nil, nil, err
	}
	if s, err = parseFloatList("--std", std); err != nil {
		return nil, nil, err
	}
	for _, v := range s {
		if v == 0 {
			return nil, nil, usage("--std values must not be 0")
		}
	}
	return m, s, nil
}

// modelPlan starts the output plan of a command that reads the model at
// path: the model file and its external data are inputs no output may
// replace, unless forced with --force.
func modelPlan(path string, m *onnx.Model) *fileio.Plan {
	plan := &fileio.Plan{ForceFlag: "--force"}
	plan.Input(path, "the model")
	for _, f := range m.ExternalDataFiles() {
		plan.Input(f, "the model's external data")
	}
	return plan
}
