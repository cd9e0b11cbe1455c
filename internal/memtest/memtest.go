// Package memtest runs a piece of work in a child process (the test binary
// re-executed on one test) and reports its error and the child's peak
// resident memory, so tests can check that oversized work is refused
// before it allocates: a refusal that came after allocating gigabytes
// would show in the peak even though the error text is right.
package memtest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/graft-dev/graft/internal/memlimit"
)

const envCase = "GRAFT_MEMTEST_CASE"

// A Result is what the child reported.
type Result struct {
	Err     string // the work's error, "" for none
	PeakRSS int64  // bytes: VmHWM of /proc/self/status at the end
}

// Run runs work in a child process and returns what it reported. Call it
// from a test function (and nowhere else in that test): in the child, Run
// runs work, prints the result and exits; in the parent, it starts the
// child on the same test with env added to its environment (KEY=VALUE).
func Run(t *testing.T, work func() error, env ...string) Result {
	t.Helper()
	if os.Getenv(envCase) == t.Name() {
		var r Result
		if err := work(); err != nil {
			r.Err = err.Error()
		}
		r.PeakRSS = memlimit.PeakRSS()
		json.NewEncoder(os.Stdout).Encode(r)
		os.Exit(0)
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc/self/status to read the peak memory from")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), envCase+"="+t.Name()), env...)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("child process: %v\nstdout: %s\nstderr: %s", err, out, lastLines(stderr, 20))
	}
	var r Result
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &r) == nil {
			return r
		}
	}
	t.Fatalf("the child process reported nothing: %s", out)
	return r
}

// Child reports whether this process is a child started by Run, so a test
// can skip the setup only its parent needs.
func Child() bool { return os.Getenv(envCase) != "" }

// Want fails the test unless the child's error is exactly want and its
// peak memory stayed under maxRSS bytes.
func (r Result) Want(t *testing.T, want string, maxRSS int64) {
	t.Helper()
	if r.Err != want {
		t.Errorf("error:\n got %s\nwant %s", r.Err, want)
	}
	r.WantPeakUnder(t, maxRSS)
}

// WantPeakUnder fails the test unless the child's peak memory stayed under
// maxRSS bytes.
func (r Result) WantPeakUnder(t *testing.T, maxRSS int64) {
	t.Helper()
	if r.PeakRSS <= 0 || r.PeakRSS >= maxRSS {
		t.Errorf("peak RSS %s, want under %s", mib(r.PeakRSS), mib(maxRSS))
	} else {
		t.Logf("peak RSS %s", mib(r.PeakRSS))
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
