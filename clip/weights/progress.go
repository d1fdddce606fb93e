package weights

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// byteProgress reports a transfer's progress. It is an io.Writer that counts
// the bytes written through it. On a terminal it redraws one line with '\r';
// elsewhere it writes a plain line every interval. It is not safe for
// concurrent use (one download writes to it).
type byteProgress struct {
	w        io.Writer
	label    string
	tty      bool
	interval time.Duration
	now      func() time.Time

	total   int64 // expected final size; < 0 when unknown
	base    int64 // bytes already present when this transfer started
	done    int64 // bytes present now (base + transferred)
	start   time.Time
	last    time.Time
	lastLen int // length of the last line drawn on a terminal
}

// newByteProgress starts a report for a file of total bytes (< 0: unknown)
// of which base are already present. interval <= 0 picks the default: 100 ms
// on a terminal, 5 s elsewhere.
func newByteProgress(w io.Writer, label string, total, base int64, tty bool, interval time.Duration, now func() time.Time) *byteProgress {
	if interval <= 0 {
		interval = 5 * time.Second
		if tty {
			interval = 100 * time.Millisecond
		}
	}
	if now == nil {
		now = time.Now
	}
	p := &byteProgress{w: w, label: label, tty: tty, interval: interval, now: now, total: total, base: base, done: base}
	p.start = now()
	p.last = p.start
	return p
}

// Write counts len(b) bytes and redraws when the interval has passed.
func (p *byteProgress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if now := p.now(); now.Sub(p.last) >= p.interval {
		p.last = now
		p.draw(now, "")
	}
	return len(b), nil
}

// finish draws the final state with status ("done", "interrupted") in
// place of the ETA, and ends the terminal line.
func (p *byteProgress) finish(status string) {
	p.draw(p.now(), status)
}

// line formats the current state, e.g.
// "RN50.pt: 12.0 MiB / 244.0 MiB (4.9%), 3.0 MiB/s, ETA 1m17s"; with a
// status the ETA becomes e.g. "done after 1m20s".
func (p *byteProgress) line(now time.Time, status string) string {
	var b strings.Builder
	b.WriteString(p.label)
	b.WriteString(": ")
	b.WriteString(formatBytes(p.done))
	if p.total >= 0 {
		pct := 100.0
		if p.total > 0 {
			pct = 100 * float64(p.done) / float64(p.total)
		}
		fmt.Fprintf(&b, " / %s (%.1f%%)", formatBytes(p.total), pct)
	}
	elapsed := now.Sub(p.start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.done-p.base) / elapsed.Seconds()
		fmt.Fprintf(&b, ", %s/s", formatBytes(int64(rate)))
	}
	switch {
	case status != "":
		fmt.Fprintf(&b, ", %s after %s", status, elapsed.Round(time.Second))
	case p.total >= 0 && rate > 0:
		eta := time.Duration(float64(max(p.total-p.done, 0)) / rate * float64(time.Second))
		fmt.Fprintf(&b, ", ETA %s", eta.Round(time.Second))
	}
	return b.String()
}

// draw writes the current state: in place on a terminal, as a new line
// elsewhere; a non-empty status marks the final report. Write errors are
// ignored: progress is advisory.
func (p *byteProgress) draw(now time.Time, status string) {
	final := status != ""
	s := p.line(now, status)
	if !p.tty {
		fmt.Fprintln(p.w, s)
		return
	}
	pad := ""
	if n := p.lastLen - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.lastLen = len(s)
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r%s%s%s", s, pad, end)
}

// formatBytes renders n with a binary unit: "512 B", "1.5 KiB", "337.6 MiB".
func formatBytes(n int64) string {
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
