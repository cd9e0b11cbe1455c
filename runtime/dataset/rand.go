package dataset

import (
	"math/rand"
	randv2 "math/rand/v2"
)

// Every random choice of the package comes from a PCG generator keyed by
// the caller's seed and a stream number. The draws are spelled out here
// rather than left to math/rand's Shuffle or Perm, so that orders and
// augmentations stay the same across Go releases.

// Stream tags keep the generators of different uses apart.
const (
	streamSplit   = 0x73706c6974 // "split"
	streamLimit   = 0x6c696d6974 // "limit"
	streamAugment = 0x6175676d   // "augm"
)

// mix is splitmix64's finalizer: a bijection that scatters nearby inputs.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// below returns a uniform draw from [0, n) by rejection.
func below(rng *randv2.PCG, n uint64) uint64 {
	limit := -n % n // 2^64 mod n: draws below it would bias the result
	for {
		if x := rng.Uint64(); x >= limit {
			return x % n
		}
	}
}

// shuffle permutes idx (Fisher-Yates from the end) with rng.
func shuffle(idx []int, rng *randv2.PCG) {
	for i := len(idx) - 1; i > 0; i-- {
		j := int(below(rng, uint64(i+1)))
		idx[i], idx[j] = idx[j], idx[i]
	}
}

// epochOrder returns 0..n-1, shuffled for the epoch when shuffled is set.
// The shuffle is the one NewMemory draws from the same seed and
// epoch, so an IDX data set visits its examples in the same order through
// a Loader as through an in-memory source.
func epochOrder(n int, shuffled bool, seed int64, epoch int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	if shuffled {
		shuffle(idx, randv2.NewPCG(uint64(seed), uint64(epoch)))
	}
	return idx
}

// classRand is the generator for a per-class choice (split, limit).
func classRand(seed int64, stream uint64, class int) *randv2.PCG {
	return randv2.NewPCG(uint64(seed), mix(mix(stream)^uint64(class)))
}

// AugmentRand returns the random source of one example's augmentation in
// one epoch: a generator that depends on seed, epoch and the example's
// index in the data set only, so an augmented batch is the same whichever
// worker decodes which image, and whatever order the workers finish in.
func AugmentRand(seed int64, epoch, index int) *rand.Rand {
	stream := mix(mix(mix(streamAugment)^uint64(epoch)) ^ uint64(index))
	return rand.New(pcgSource{randv2.NewPCG(uint64(seed), stream)})
}

// pcgSource adapts a PCG generator to math/rand's Source, which the
// random transforms of runtime/data take.
type pcgSource struct{ p *randv2.PCG }

func (s pcgSource) Int63() int64    { return int64(s.p.Uint64() >> 1) }
func (s pcgSource) Uint64() uint64  { return s.p.Uint64() }
func (s pcgSource) Seed(seed int64) { s.p.Seed(uint64(seed), 0) }
