package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/graft-dev/graft/runtime/train"
)

// isTerminal reports whether f is a character device (a terminal), where
// progress is drawn as a bar; elsewhere graft prints plain lines.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// onBatch draws the progress bar on a terminal: epoch, loss, accuracy,
// images/s and the epoch's ETA.
func (j *finetuneJob) onBatch(s train.BatchStats) {
	if !j.terminal || s.Total == 0 {
		return
	}
	const width = 24
	frac := float64(s.Seen) / float64(s.Total)
	bar := strings.Repeat("=", int(frac*width)) + strings.Repeat(" ", width-int(frac*width))
	eta := ""
	if s.ImagesPerSec > 0 {
		eta = (time.Duration(float64(s.Total-s.Seen)/s.ImagesPerSec) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(j.progress, "\repoch %d/%d [%s] %3.0f%% loss %.4f acc %5.1f%% %6.0f img/s ETA %-6s",
		s.Epoch+1, j.epochs, bar, 100*frac, s.RunningLoss, 100*s.RunningAccuracy, s.ImagesPerSec, eta)
}

// onEpoch prints one line per epoch.
func (j *finetuneJob) onEpoch(s train.EpochStats) {
	if j.terminal {
		fmt.Fprint(j.progress, "\r\033[K")
	}
	val := ""
	if s.Val != nil {
		val = fmt.Sprintf(", val loss %.4f acc %.2f%%", s.Val.Loss, 100*s.Val.Accuracy)
	}
	fmt.Fprintf(j.progress, "epoch %d/%d: loss %.4f acc %.2f%%%s, lr %.3g, %.1fs (%.0f img/s)\n",
		s.Epoch+1, j.epochs, s.Loss, 100*s.Accuracy, val, s.LR, s.Seconds, s.ImagesPerSec)
}
