package dataset

import (
	"fmt"
	"strconv"
	"strings"
)

// A Shard is part Index of Count of a data set, for running one command on
// many machines at once (a Kubernetes Indexed Job, a Slurm job array, GNU
// parallel): each machine works on one shard, and the parts are merged.
//
// The split is fixed by the data set's own order (after any limit) and a
// block size, the batch size of the work: the examples are cut into
// consecutive blocks of Block examples, and block b belongs to shard
// b mod Count. With blocks of 100 and 3 shards, shard 0 holds examples
// 0-99, 300-399, ...; shard 1 holds 100-199, 400-499, .... Every machine
// that lists the same data set computes the same split, and every shard
// processes exactly the batches that one machine running the whole data
// set would: results per example, and so merged results, are bit for bit
// those of the single run.
//
// The zero Shard (and Count 1) is the whole data set.
type Shard struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

// ParseShard parses "I/N", 0 <= I < N: the form of the --shard flag, which
// takes a batch system's 0-based task index directly.
func ParseShard(s string) (Shard, error) {
	i, n, ok := strings.Cut(s, "/")
	index, err1 := strconv.Atoi(strings.TrimSpace(i))
	count, err2 := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: want I/N, the 0-based shard I of N (0/4, 1/4, 2/4, 3/4)", s)
	}
	sh := Shard{Index: index, Count: count}
	if err := sh.Check(); err != nil {
		return Shard{}, err
	}
	return sh, nil
}

// Check refuses a shard outside 0 <= Index < Count.
func (s Shard) Check() error {
	if s.Count == 0 && s.Index == 0 {
		return nil
	}
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard %d/%d: want I/N with 0 <= I < N", s.Index, s.Count)
	}
	return nil
}

// Whole reports whether s is the whole data set.
func (s Shard) Whole() bool { return s.Count <= 1 }

// String returns "I/N", or "0/1" for the whole data set.
func (s Shard) String() string {
	if s.Whole() {
		return "0/1"
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// Examples returns the examples of shard s among n split into blocks of
// block (see Shard), in increasing order.
func (s Shard) Examples(n, block int) []int {
	if block < 1 {
		block = 1
	}
	count, index := max(s.Count, 1), s.Index
	var out []int
	for lo := index * block; lo < n; lo += count * block {
		for i := lo; i < min(lo+block, n); i++ {
			out = append(out, i)
		}
	}
	return out
}

// Block returns the number (in the whole data set) of the k-th block of
// shard s.
func (s Shard) Block(k int) int { return s.Index + k*max(s.Count, 1) }
