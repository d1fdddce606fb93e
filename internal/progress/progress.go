// Package progress reports the progress of long work: on a terminal a
// single bar redrawn in place with rate and ETA, elsewhere a plain line
// every few seconds (logs stay readable).
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Bar reports progress towards a total. It is safe for concurrent use.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	label    string
	unit     string
	total    int
	done     int
	start    time.Time
	last     time.Time
	tty      bool
	interval time.Duration
	suffix   string
	now      func() time.Time
}

// New returns a bar writing to w. label names the work ("encode train"),
// unit the items ("img").
func New(w io.Writer, label string, total int, unit string) *Bar {
	b := &Bar{w: w, label: label, total: total, unit: unit, tty: IsTerminal(w), interval: 5 * time.Second, now: time.Now}
	b.start = b.now()
	b.last = b.start
	if b.tty {
		b.interval = 100 * time.Millisecond
	}
	return b
}

// IsTerminal reports whether w is a character device (a terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Add advances the bar by n items.
func (b *Bar) Add(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	if now := b.now(); now.Sub(b.last) >= b.interval {
		b.last = now
		b.draw(false)
	}
}

// SetSuffix sets text shown after the counts (a loss, say).
func (b *Bar) SetSuffix(s string) {
	b.mu.Lock()
	b.suffix = s
	b.mu.Unlock()
}

// Finish draws the final state and ends the line.
func (b *Bar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draw(true)
}

func (b *Bar) draw(final bool) {
	elapsed := b.now().Sub(b.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(b.done) / elapsed
	}
	eta := "?"
	if rate > 0 && b.total > 0 {
		eta = (time.Duration(float64(b.total-b.done)/rate) * time.Second).Round(time.Second).String()
	}
	pct := 0.0
	if b.total > 0 {
		pct = 100 * float64(b.done) / float64(b.total)
	}
	suffix := ""
	if b.suffix != "" {
		suffix = "  " + b.suffix
	}
	counts := fmt.Sprintf("%d/%d %s  %.1f %s/s", b.done, b.total, b.unit, rate, b.unit)
	if final {
		line := fmt.Sprintf("%s: %s in %s%s", b.label, counts, time.Duration(elapsed*float64(time.Second)).Round(time.Millisecond), suffix)
		if b.tty {
			fmt.Fprintf(b.w, "\r\033[K%s\n", line)
		} else {
			fmt.Fprintln(b.w, line)
		}
		return
	}
	if b.tty {
		const width = 24
		filled := int(pct / 100 * width)
		bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
		fmt.Fprintf(b.w, "\r\033[K%s %s %5.1f%%  %s  ETA %s%s", b.label, bar, pct, counts, eta, suffix)
		return
	}
	fmt.Fprintf(b.w, "%s: %5.1f%%  %s  ETA %s%s\n", b.label, pct, counts, eta, suffix)
}
