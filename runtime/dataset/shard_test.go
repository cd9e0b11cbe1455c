package dataset

import (
	"slices"
	"testing"
)

func TestParseShard(t *testing.T) {
	for s, want := range map[string]Shard{"0/1": {0, 1}, "2/7": {2, 7}, " 6 / 7 ": {6, 7}} {
		got, err := ParseShard(s)
		if err != nil || got != want {
			t.Errorf("ParseShard(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "3", "7/7", "-1/3", "1/0", "a/b", "1/3/4"} {
		if _, err := ParseShard(s); err == nil {
			t.Errorf("ParseShard(%q) accepted", s)
		}
	}
}

// The split is the documented one: blocks of the batch size dealt round
// robin; the shards of any count are disjoint and together hold every
// example once, in order within each shard.
func TestShardExamples(t *testing.T) {
	got := Shard{1, 3}.Examples(10, 2)
	if want := []int{2, 3, 8, 9}; !slices.Equal(got, want) {
		t.Errorf("shard 1/3 of 10 in blocks of 2: %v, want %v", got, want)
	}
	if got := (Shard{}).Examples(5, 3); !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
		t.Errorf("the whole data set: %v", got)
	}
	for _, n := range []int{1, 7, 100, 2000} {
		for _, count := range []int{1, 3, 7} {
			for _, block := range []int{1, 32, 100} {
				seen := make([]int, n)
				for i := range count {
					ex := Shard{i, count}.Examples(n, block)
					if !slices.IsSorted(ex) {
						t.Fatalf("shard %d/%d not in order", i, count)
					}
					for k, e := range ex {
						seen[e]++
						if b := e / block; b%count != i || (Shard{i, count}).Block(k/block) != b {
							t.Fatalf("example %d (block %d) in shard %d/%d", e, b, i, count)
						}
					}
				}
				for e, c := range seen {
					if c != 1 {
						t.Fatalf("n %d, %d shards, blocks of %d: example %d in %d shards", n, count, block, e, c)
					}
				}
			}
		}
	}
}
