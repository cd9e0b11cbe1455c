// Package memlimit holds graft's one memory limit: the most memory a single
// piece of work (a decoded file, a compiled session, a new tensor) may need.
// Code that is about to allocate in proportion to a size read from input
// (a header's dimensions, a model's shapes, a flag) estimates the bytes
// first and calls Check, so that oversized work is refused with an error
// naming the tensor and the size instead of growing until the process
// dies.
//
// The limit is, in order of precedence:
//
//   - what Set was given last (the CLI's --memory-limit flag, or
//     runtime.SetMemoryLimit for Go users);
//   - the environment variable GRAFT_MEMORY_LIMIT (512MiB, 8GB, 0.5TiB,
//     or plain bytes);
//   - DefaultFraction (80%) of the memory available to the process: the
//     smaller of the machine's memory and its cgroup's (v1 or v2) limit.
package memlimit

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/dustin/go-humanize"
)

// EnvVar is the environment variable that sets the limit.
const EnvVar = "GRAFT_MEMORY_LIMIT"

// DefaultFraction is the share of the available memory the default limit
// allows: the rest is left to the Go runtime's own overhead (a garbage
// collected heap may briefly hold up to twice its live data), to what the
// estimates leave out, and to the rest of the machine.
const DefaultFraction = 0.8

// ErrExceeded is wrapped by every error Check returns for work over the
// limit.
var ErrExceeded = errors.New("over graft's memory limit")

// A Limit is the limit in force and where it comes from, for messages.
type Limit struct {
	Bytes int64
	From  string // "80% of this machine's memory", "GRAFT_MEMORY_LIMIT", ...
}

var (
	mu      sync.Mutex
	set     *Limit // from Set; nil: from the environment or the machine
	machine struct {
		once sync.Once
		lim  Limit
	}
)

// Set makes n bytes the limit; from says where it came from in messages
// (such as "--memory-limit"). n <= 0 removes a limit set before, so the
// environment or the machine decides again.
func Set(n int64, from string) {
	mu.Lock()
	defer mu.Unlock()
	if n <= 0 {
		set = nil
		return
	}
	set = &Limit{Bytes: n, From: from}
}

// Get returns the limit in force. It fails only when GRAFT_MEMORY_LIMIT is
// set to something that is not a size (and Set has not overridden it); an
// empty GRAFT_MEMORY_LIMIT counts as unset.
func Get() (Limit, error) {
	mu.Lock()
	s := set
	mu.Unlock()
	if s != nil {
		return *s, nil
	}
	if env := os.Getenv(EnvVar); env != "" { // empty counts as unset
		n, err := Parse(env)
		if err != nil {
			return Limit{}, fmt.Errorf("%s=%q: %w", EnvVar, env, err)
		}
		return Limit{Bytes: n, From: "set by " + EnvVar}, nil
	}
	return machineDefault(), nil
}

// machineDefault is DefaultFraction of the smaller of the machine's memory
// and the cgroup's limit, read once.
func machineDefault() Limit {
	machine.once.Do(func() {
		total, where := uint64(0), "this machine's memory"
		if n, err := memlimit.FromSystem(); err == nil {
			total = n
		}
		if n, err := memlimit.FromCgroup(); err == nil && n > 0 && (total == 0 || n < total) {
			total, where = n, "this container's memory limit"
		}
		if total == 0 || total > math.MaxInt64 {
			// Neither is readable (not Linux, say): assume a small machine
			// rather than none.
			total, where = 8<<30, "an assumed 8 GiB (the machine's memory could not be read)"
		}
		machine.lim = Limit{
			Bytes: int64(float64(total) * DefaultFraction),
			From:  fmt.Sprintf("%.0f%% of %s", DefaultFraction*100, where),
		}
	})
	return machine.lim
}

// Parse reads a size: a number with an optional unit, binary (KiB, MiB,
// GiB, TiB) or decimal (kB, MB, GB, TB; K, M, G, T are decimal too),
// in any case, or plain bytes: "512MiB", "8GB", "0.5TiB", "1073741824".
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	n, err := humanize.ParseBytes(t)
	if err != nil || t == "" || t[0] < '0' || t[0] > '9' && t[0] != '.' {
		return 0, fmt.Errorf("not a size (want a number of bytes with an optional unit: 512MiB, 8GB, 0.5TiB)")
	}
	if n == 0 {
		return 0, fmt.Errorf("a memory limit of 0 bytes")
	}
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("too large")
	}
	return int64(n), nil
}

// Format prints a byte count for messages: "13.4 GiB", "512.0 MiB",
// "900 bytes". (go-humanize's IBytes rounds 13.4 GiB to "13 GiB", too
// coarse to compare a need with a limit.)
func Format(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	f, i := float64(n), -1
	for f >= unit && i < 5 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[i])
}

// An Error reports work over the limit.
type Error struct {
	What  string // the tensor, image or file, with its shape
	Need  int64  // bytes
	Limit Limit
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s needs %s, over graft's memory limit of %s (%s); set %s or --memory-limit to change it",
		e.What, Format(e.Need), Format(e.Limit.Bytes), e.Limit.From, EnvVar)
}

func (e *Error) Is(target error) bool { return target == ErrExceeded }

// Check returns an *Error if need bytes are over the limit; what names the
// work ("tensor \"conv1\" [8,64,30000,30000] float32"). Sizes at or above
// math.MaxInt64 (see Mul) are always over.
func Check(what string, need int64) error {
	lim, err := Get()
	if err != nil {
		return err
	}
	if need > lim.Bytes {
		return &Error{What: what, Need: need, Limit: lim}
	}
	return nil
}

// Mul multiplies non-negative sizes, saturating at math.MaxInt64 instead of
// overflowing, so that a product of huge declared dimensions still compares
// as over the limit. A negative factor makes the result math.MaxInt64 too.
func Mul(factors ...int64) int64 {
	for _, f := range factors {
		if f == 0 {
			return 0
		}
	}
	p := uint64(1)
	for _, f := range factors {
		if f < 0 {
			return math.MaxInt64
		}
		hi, lo := bits.Mul64(p, uint64(f))
		if hi != 0 || lo > math.MaxInt64 {
			return math.MaxInt64
		}
		p = lo
	}
	return int64(p)
}

// Add adds non-negative sizes, saturating at math.MaxInt64.
func Add(terms ...int64) int64 {
	var s int64
	for _, t := range terms {
		if t < 0 || s > math.MaxInt64-t {
			return math.MaxInt64
		}
		s += t
	}
	return s
}

// PeakRSS returns the process's peak resident set size in bytes (VmHWM in
// /proc/self/status), or -1 where the system does not tell.
func PeakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}
