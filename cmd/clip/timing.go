package main

import (
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/clipadapter/clipgo/internal/torch"
)

// timer reports, with -timing, the time and resident memory of each batch
// and the throughput of the whole encoding (model loading excluded: it is
// started after the model is loaded).
type timer struct {
	w       io.Writer // nil: reporting is off
	label   string
	unit    string
	batches int
	// workers is the number of batches encoded at once (0 or 1: one at
	// a time); the model times of batches at once overlap.
	workers int
	start   time.Time
	last    time.Time
	done    int
	n       int
	forward time.Duration
	cpu0    time.Duration // process CPU time at the start
	minRSS  int64
	maxRSS  int64
}

// newTimer returns a timer writing to w when on is set, and a silent one
// otherwise. batches is the number of batches to come.
func newTimer(on bool, w io.Writer, label, unit string, batches int) *timer {
	t := &timer{label: label, unit: unit, batches: batches, minRSS: -1}
	if on {
		t.w = w
	}
	t.start = time.Now()
	t.last = t.start
	t.cpu0 = cpuTime()
	return t
}

// cpuTime returns the user + system CPU time of the process so far (all
// threads: Go's, libtorch's and the BLAS library's), or 0 if unknown.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// batch records a finished batch of n items, forward of whose time was
// spent in the model (the rest waiting for input).
func (t *timer) batch(n int, forward time.Duration) {
	if t.w == nil {
		return
	}
	now := time.Now()
	t.n++
	t.done += n
	t.forward += forward
	rss, err := torch.ResidentBytes()
	rssText := "?"
	if err == nil {
		rssText = fmt.Sprintf("%.1f MiB", mib(rss))
		if t.minRSS < 0 || rss < t.minRSS {
			t.minRSS = rss
		}
		t.maxRSS = max(t.maxRSS, rss)
	}
	fmt.Fprintf(t.w, "%s: batch %d/%d: %d %s in %.3f s (model %.3f s), RSS %s\n",
		t.label, t.n, t.batches, n, t.unit, now.Sub(t.last).Seconds(), forward.Seconds(), rssText)
	t.last = now
}

// finish reports the totals.
func (t *timer) finish() {
	if t.w == nil {
		return
	}
	secs := time.Since(t.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(t.done) / secs
	}
	peak := "?"
	if p, err := torch.PeakResidentBytes(); err == nil {
		peak = fmt.Sprintf("%.1f MiB", mib(p))
	}
	cpuPer := 0.0
	if t.done > 0 {
		cpuPer = (cpuTime() - t.cpu0).Seconds() * 1000 / float64(t.done)
	}
	atOnce := ""
	if t.workers > 1 {
		atOnce = fmt.Sprintf("; %d batches at once, one libtorch thread each", t.workers)
	}
	fmt.Fprintf(t.w, "%s: %d %s in %.3f s (%.2f %s/s; model %.3f s; CPU %.1f ms per item), peak RSS %s, RSS after each batch %.1f-%.1f MiB%s\n",
		t.label, t.done, t.unit, secs, rate, t.unit, t.forward.Seconds(), cpuPer, peak, mib(max(t.minRSS, 0)), mib(t.maxRSS), atOnce)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
