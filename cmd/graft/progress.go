package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/graft-dev/graft/runtime/train"
)

// A progress prints a training run's progress: a line per phase and per
// epoch, and on a terminal a bar that updates after every batch.
type progress struct {
	w        io.Writer
	epochs   int
	terminal bool
}

func newProgress(w io.Writer, epochs int) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, epochs: epochs, terminal: ok && isTerminal(f)}
}

func (p *progress) phase(s string) { fmt.Fprintln(p.w, s) }

// batch draws the bar: epoch, loss, accuracy, images/s and the epoch's ETA.
func (p *progress) batch(s train.BatchStats) {
	if !p.terminal || s.Total == 0 {
		return
	}
	const width = 24
	frac := float64(s.Seen) / float64(s.Total)
	bar := strings.Repeat("=", int(frac*width)) + strings.Repeat(" ", width-int(frac*width))
	eta := ""
	if s.ImagesPerSec > 0 {
		eta = (time.Duration(float64(s.Total-s.Seen)/s.ImagesPerSec) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "\repoch %d/%d [%s] %3.0f%% loss %.4f acc %5.1f%% %6.0f img/s ETA %-6s",
		s.Epoch+1, p.epochs, bar, 100*frac, s.RunningLoss, 100*s.RunningAccuracy, s.ImagesPerSec, eta)
}

// epoch prints one line per epoch.
func (p *progress) epoch(s train.EpochStats) {
	if p.terminal {
		fmt.Fprint(p.w, "\r\033[K")
	}
	val := ""
	if s.Val != nil {
		val = fmt.Sprintf(", val loss %.4f acc %.2f%%", s.Val.Loss, 100*s.Val.Accuracy)
	}
	fmt.Fprintf(p.w, "epoch %d/%d: loss %.4f acc %.2f%%%s, lr %.3g, %.1fs (%.0f img/s)\n",
		s.Epoch+1, p.epochs, s.Loss, 100*s.Accuracy, val, s.LR, s.Seconds, s.ImagesPerSec)
}
