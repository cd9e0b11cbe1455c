package memlimit

import (
	"bufio"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"512MiB", 512 << 20},
		{"8GB", 8e9},
		{"0.5TiB", 1 << 39},
		{"1073741824", 1 << 30},
		{"2g", 2e9},
		{" 3 GiB ", 3 << 30},
	} {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "lots", "-1GB", "12 parsecs", "0", "0MiB", "99999999999EiB", ".GB"} {
		if n, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %d, want an error", in, n)
		}
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{
		900:                  "900 bytes",
		1536:                 "1.5 KiB",
		512 << 20:            "512.0 MiB",
		134 * (1 << 30) / 10: "13.4 GiB",
		math.MaxInt64:        "8.0 EiB",
	} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestMulAdd(t *testing.T) {
	if got := Mul(60000, 60000, 4); got != 14_400_000_000 {
		t.Errorf("Mul = %d", got)
	}
	if got := Mul(1<<40, 1<<40); got != math.MaxInt64 {
		t.Errorf("overflowing Mul = %d, want saturation", got)
	}
	if got := Mul(1<<40, 1<<40, 0); got != 0 {
		t.Errorf("Mul with a zero factor = %d", got)
	}
	if got := Add(math.MaxInt64-1, 5); got != math.MaxInt64 {
		t.Errorf("overflowing Add = %d", got)
	}
}

// memTotal reads MemTotal from /proc/meminfo, in bytes.
func memTotal(t *testing.T) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Skip("no /proc/meminfo")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

func TestPrecedence(t *testing.T) {
	t.Setenv(EnvVar, "")
	os.Unsetenv(EnvVar)
	defer Set(0, "")
	lim, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	total := memTotal(t)
	if lim.Bytes <= 0 || float64(lim.Bytes) > DefaultFraction*float64(total)+1 {
		t.Errorf("default limit %d, want at most 80%% of MemTotal %d", lim.Bytes, total)
	}
	if !strings.HasPrefix(lim.From, "80% of this ") {
		t.Errorf("default limit from %q", lim.From)
	}

	t.Setenv(EnvVar, "3GiB")
	if lim, err := Get(); err != nil || lim.Bytes != 3<<30 || lim.From != "set by GRAFT_MEMORY_LIMIT" {
		t.Errorf("with %s=3GiB: %+v, %v", EnvVar, lim, err)
	}
	Set(5<<30, "--memory-limit")
	if lim, err := Get(); err != nil || lim.Bytes != 5<<30 || lim.From != "--memory-limit" {
		t.Errorf("after Set: %+v, %v", lim, err)
	}
	Set(0, "")
	t.Setenv(EnvVar, "plenty")
	_, err = Get()
	if err == nil || err.Error() != `GRAFT_MEMORY_LIMIT="plenty": not a size (want a number of bytes with an optional unit: 512MiB, 8GB, 0.5TiB)` {
		t.Errorf("bad environment value: %v", err)
	}
	if err := Check("x", 1); err == nil {
		t.Error("Check passes with a bad environment value")
	}
}

func TestCheck(t *testing.T) {
	defer Set(0, "")
	Set(192*(1<<30)/10, "80% of this machine's memory")
	if err := Check("small", 1<<30); err != nil {
		t.Fatal(err)
	}
	err := Check(`tensor "x" [8,3,60000,60000] float32`, 134*(1<<30)/10*2)
	want := `tensor "x" [8,3,60000,60000] float32 needs 26.8 GiB, over graft's memory limit of 19.2 GiB (80% of this machine's memory); set GRAFT_MEMORY_LIMIT or --memory-limit to change it`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if !errors.Is(err, ErrExceeded) {
		t.Error("the error does not wrap ErrExceeded")
	}
	if Check("saturated", math.MaxInt64) == nil {
		t.Error("a saturated size passes")
	}
}
