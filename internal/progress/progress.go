// Package progress reports the progress of long work: on a terminal a
// single line redrawn in place with rate and ETA, elsewhere a plain line
// every few seconds (logs stay readable).
//
// A Bar counts either items (New: "50/100 img  10.0 img/s") or bytes
// (NewBytes: "50.0 MiB / 100.0 MiB (50.0%), 10.0 MiB/s", for downloads,
// with an unknown total and a resumed transfer's bytes already present).
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
	bytes    bool  // byte mode (NewBytes)
	total    int64 // < 0: unknown (byte mode)
	base     int64 // bytes present before this transfer (byte mode)
	done     int64
	start    time.Time
	last     time.Time
	tty      bool
	interval time.Duration
	suffix   string
	lastLen  int // length of the last line drawn on a terminal (byte mode)
	now      func() time.Time
}

// New returns a bar writing to w. label names the work ("encode train"),
// unit the items ("img").
func New(w io.Writer, label string, total int, unit string) *Bar {
	return newBar(w, label, unit, int64(total), 0, IsTerminal(w), 0, time.Now)
}

// NewBytes returns a bar for a transfer of total bytes (< 0: unknown size)
// of which base were already present (a resumed download: the rate counts
// only the new bytes). Sizes are shown with binary units. interval is the
// time between reports; <= 0 picks the default (100 ms on a terminal, 5 s
// elsewhere). The bar is an io.Writer that counts what is written through
// it; Add(n) counts n bytes too.
func NewBytes(w io.Writer, label string, total, base int64, interval time.Duration) *Bar {
	b := newBar(w, label, "B", total, base, IsTerminal(w), interval, time.Now)
	b.bytes = true
	return b
}

func newBar(w io.Writer, label, unit string, total, base int64, tty bool, interval time.Duration, now func() time.Time) *Bar {
	if interval <= 0 {
		interval = 5 * time.Second
		if tty {
			interval = 100 * time.Millisecond
		}
	}
	b := &Bar{w: w, label: label, unit: unit, total: total, base: base, done: base, tty: tty, interval: interval, now: now}
	b.start = now()
	b.last = b.start
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

// Add advances the bar by n items (bytes in byte mode).
func (b *Bar) Add(n int) {
	b.add(int64(n))
}

// Write counts len(p) bytes (or items) and never fails, so that a Bar can
// sit in an io.MultiWriter next to the file being written.
func (b *Bar) Write(p []byte) (int, error) {
	b.add(int64(len(p)))
	return len(p), nil
}

func (b *Bar) add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	if now := b.now(); now.Sub(b.last) >= b.interval {
		b.last = now
		b.draw(now, false, "")
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
	b.End("done")
}

// End is Finish with a status word: in byte mode the ETA gives way to e.g.
// "interrupted after 1m20s"; item bars show their total time as Finish
// does.
func (b *Bar) End(status string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draw(b.now(), true, status)
}

// draw writes the current state. Write errors are ignored: progress is
// advisory.
func (b *Bar) draw(now time.Time, final bool, status string) {
	if b.bytes {
		b.drawBytes(now, final, status)
		return
	}
	elapsed := now.Sub(b.start).Seconds()
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
		filled := min(max(int(pct/100*width), 0), width)
		bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
		fmt.Fprintf(b.w, "\r\033[K%s %s %5.1f%%  %s  ETA %s%s", b.label, bar, pct, counts, eta, suffix)
		return
	}
	fmt.Fprintf(b.w, "%s: %5.1f%%  %s  ETA %s%s\n", b.label, pct, counts, eta, suffix)
}

// bytesLine formats a byte bar's state, e.g.
// "RN50.pt: 12.0 MiB / 244.0 MiB (4.9%), 3.0 MiB/s, ETA 1m17s"; with a
// status the ETA becomes e.g. "done after 1m20s".
func (b *Bar) bytesLine(now time.Time, status string) string {
	var s strings.Builder
	s.WriteString(b.label)
	s.WriteString(": ")
	s.WriteString(FormatBytes(b.done))
	if b.total >= 0 {
		pct := 100.0
		if b.total > 0 {
			pct = 100 * float64(b.done) / float64(b.total)
		}
		fmt.Fprintf(&s, " / %s (%.1f%%)", FormatBytes(b.total), pct)
	}
	elapsed := now.Sub(b.start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(b.done-b.base) / elapsed.Seconds()
		fmt.Fprintf(&s, ", %s/s", FormatBytes(int64(rate)))
	}
	switch {
	case status != "":
		fmt.Fprintf(&s, ", %s after %s", status, elapsed.Round(time.Second))
	case b.total >= 0 && rate > 0:
		eta := time.Duration(float64(max(b.total-b.done, 0)) / rate * float64(time.Second))
		fmt.Fprintf(&s, ", ETA %s", eta.Round(time.Second))
	}
	if b.suffix != "" {
		s.WriteString("  " + b.suffix)
	}
	return s.String()
}

// drawBytes writes a byte bar's state: in place on a terminal (padded with
// spaces over a longer previous line), as a new line elsewhere.
func (b *Bar) drawBytes(now time.Time, final bool, status string) {
	if final && status == "" {
		status = "done"
	}
	s := b.bytesLine(now, status)
	if !b.tty {
		fmt.Fprintln(b.w, s)
		return
	}
	pad := ""
	if n := b.lastLen - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	b.lastLen = len(s)
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(b.w, "\r%s%s%s", s, pad, end)
}

// FormatBytes renders n with a binary unit: "512 B", "1.5 KiB", "337.6 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
