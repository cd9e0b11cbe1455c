package main

import (
	"math"
	"strconv"
	"strings"
)

// parseFloatList parses a flag's comma-separated numbers ("0.485,0.456,0.406");
// empty means nil. A value that is not a finite number is a usage error
// naming the flag.
func parseFloatList(flag, s string) ([]float32, error) {
	if s == "" {
		return nil, nil
	}
	var out []float32
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 32)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, usage("%s %q: want comma-separated numbers", flag, s)
		}
		out = append(out, float32(v))
	}
	return out, nil
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
