// Command graft loads, inspects, edits, fine-tunes and attacks ONNX
// classifiers. Run "graft help" for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/graft-dev/graft/internal/memlimit"
)

// A command is one subcommand: its flags are parsed by run itself.
type command struct {
	name    string
	args    string // synopsis of the arguments
	short   string // one line for the command list
	summary string // what --help says
	run     func(args []string, stdout io.Writer) error
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// errUsage marks errors caused by the command line, which exit with 2.
var errUsage = errors.New("usage")

func usage(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

func main() {
	// graft's heap is mostly large float buffers without pointers, cheap to
	// collect. Go's default collects when the heap has doubled, so the
	// gradients a training step hands back and drops can pile up to the
	// size of everything it holds: collecting at 10% growth keeps the peak
	// near what the work holds, and no slower (peak RSS, 10% against 25%:
	// a ResNet-18 training step at batch 8, 571 against 623 MiB; ResNet-50,
	// 1781 against 1969; a frozen-backbone epoch, 488 against 554; the
	// default's 1004 for the first). GOGC, when set, still decides.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(10)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one graft command line and returns the exit code: 0 on
// success, 1 on failure, 2 on a usage error. Errors are one line on stderr;
// a panic is reported as an internal error, never as a stack trace.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "graft: internal error: %v\n", r)
			code = 1
		}
	}()
	if len(args) == 0 {
		printHelp(stderr)
		return 2
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				return run([]string{c.name, "--help"}, stdout, stderr)
			}
			fmt.Fprintf(stderr, "graft: unknown command %q (run 'graft help')\n", args[1])
			return 2
		}
		printHelp(stdout)
		return 0
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(stderr, "graft: unknown command %q (run 'graft help')\n", name)
		return 2
	}
	err := c.run(args[1:], stdout)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "graft %s: interrupted before anything was written\n", c.name)
		return 130
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "graft %s: %v\n", c.name, strings.TrimPrefix(err.Error(), "usage: "))
		fmt.Fprintf(stderr, "run 'graft %s --help' for usage\n", c.name)
		return 2
	default:
		// Library errors name their package ("finetune: ..."); the command
		// already says it.
		msg := strings.TrimPrefix(oneLine(err.Error()), c.name+": ")
		fmt.Fprintf(stderr, "graft %s: %s\n", c.name, msg)
		return 1
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "graft: ONNX model surgery, fine-tuning and robustness, in one Go binary.")
	fmt.Fprintln(w, "\nUsage: graft <command> [arguments]\n\nCommands:")
	sorted := append([]*command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.short)
	}
	fmt.Fprintln(w, "\nRun 'graft help <command>' or 'graft <command> --help' for a command's flags.")
}

// interruptible returns a context that the first SIGINT or SIGTERM
// cancels: long work stops at its next check (between batches, phases and
// files) and keeps what it finished. A second signal, or the first when the
// work has not stopped within graceTime, ends the process at once with exit
// code 130: every file graft writes is renamed into place whole, so none is
// half-written, and the temporary files a stop leaves are removed by the
// next write into their folder.
func interruptible() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sig:
			fmt.Fprintf(os.Stderr, "\ngraft: %v: stopping after the current step (again to stop at once)\n", s)
			cancel()
		case <-done:
			return
		}
		select {
		case <-sig:
		case <-time.After(graceTime):
		case <-done:
			return
		}
		fmt.Fprintln(os.Stderr, "graft: stopped at once")
		os.Exit(130)
	}()
	return ctx, func() {
		signal.Stop(sig)
		close(done)
		cancel()
	}
}

// graceTime is how long a stop may take before graft exits at once.
const graceTime = 10 * time.Second

// A flagSet is a command's flags and its --help text.
type flagSet struct {
	*flag.FlagSet
	help func()
}

// newFlags returns a flag set whose --help prints the command's synopsis.
// A bad flag is one line on stderr (see run), not the whole usage.
func newFlags(c *command, stdout io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(c.name, flag.ContinueOnError)}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.Func("memory-limit", "refuse work that needs more than `SIZE` of memory (512MiB, 8GB, ...; default: $GRAFT_MEMORY_LIMIT, else 80% of the machine's)", func(s string) error {
		n, err := memlimit.Parse(s)
		if err != nil {
			return err
		}
		memlimit.Set(n, "--memory-limit")
		return nil
	})
	fs.help = func() {
		fmt.Fprintf(stdout, "Usage: graft %s %s\n\n%s\n", c.name, c.args, c.summary)
		var has bool
		fs.VisitAll(func(*flag.Flag) { has = true })
		if has {
			fmt.Fprintln(stdout, "\nFlags:")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			fs.SetOutput(io.Discard)
		}
	}
	return fs
}

// parse parses flags that may come before or after the positional arguments
// (graft inspect model.onnx --json), returning the positional ones.
func parse(fs *flagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.help()
				return nil, err
			}
			return nil, usage("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			if _, err := memlimit.Get(); err != nil {
				return nil, usage("%v", err)
			}
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
