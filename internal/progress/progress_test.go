package progress

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPlainLinesWhenNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, "encode", 100, "img")
	clock := b.start
	b.now = func() time.Time { return clock }
	for i := 0; i < 10; i++ {
		clock = clock.Add(time.Second)
		b.Add(10)
	}
	b.SetSuffix("loss 0.5")
	b.Finish()
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// One line every 5 s over 10 s, plus the final one.
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), out)
	}
	if !strings.Contains(lines[0], "50.0%") || !strings.Contains(lines[0], "50/100 img") || !strings.Contains(lines[0], "10.0 img/s") || !strings.Contains(lines[0], "ETA 5s") {
		t.Errorf("first line %q", lines[0])
	}
	if !strings.Contains(lines[2], "100/100 img") || !strings.Contains(lines[2], "loss 0.5") || strings.Contains(out, "\r") {
		t.Errorf("final line %q (no carriage returns expected off a terminal)", lines[2])
	}
}

// testBytes is NewBytes with the terminal test and the clock chosen by the
// test.
func testBytes(w io.Writer, label string, total, base int64, tty bool, interval time.Duration, now func() time.Time) *Bar {
	b := newBar(w, label, "B", total, base, tty, interval, now)
	b.bytes = true
	return b
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{1 << 20, "1.0 MiB"},
		{353976522, "337.6 MiB"}, // 353976522 / 2^20 = 337.57...
		{5 << 30, "5.0 GiB"},
	}
	for _, tc := range tests {
		if got := FormatBytes(tc.n); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// fakeClock returns a clock function and a way to advance it.
func fakeClock() (func() time.Time, func(time.Duration)) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time { return now }, func(d time.Duration) { now = now.Add(d) }
}

func TestProgressPlainLines(t *testing.T) {
	var buf bytes.Buffer
	clock, advance := fakeClock()
	const mib = 1 << 20
	p := testBytes(&buf, "RN50.pt", 100*mib, 0, false, 0, clock) // default 5 s off a terminal
	chunk := make([]byte, 10*mib)
	// 10 MiB at the end of each second for 8 s: a report at 5 s only, then
	// the final one.
	for range 8 {
		advance(time.Second)
		p.Write(chunk)
	}
	p.End("done")
	out := buf.String()
	if strings.Contains(out, "\r") {
		t.Errorf("carriage return off a terminal: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	// Hand-derived: at 5 s, 50 MiB of 100 done at 10 MiB/s, 50 MiB left → 5 s.
	want := []string{
		"RN50.pt: 50.0 MiB / 100.0 MiB (50.0%), 10.0 MiB/s, ETA 5s",
		"RN50.pt: 80.0 MiB / 100.0 MiB (80.0%), 10.0 MiB/s, done after 8s",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, lines[i], want[i])
		}
	}
}

func TestProgressResumedRateCountsOnlyNewBytes(t *testing.T) {
	var buf bytes.Buffer
	clock, advance := fakeClock()
	const mib = 1 << 20
	// 60 MiB were already on disk; 10 MiB arrive in 4 s → 2.5 MiB/s, and
	// 30 MiB remain → ETA 12 s.
	p := testBytes(&buf, "x.pt", 100*mib, 60*mib, false, time.Second, clock)
	advance(4 * time.Second)
	p.Write(make([]byte, 10*mib))
	want := "x.pt: 70.0 MiB / 100.0 MiB (70.0%), 2.5 MiB/s, ETA 12s\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestProgressUnknownTotal(t *testing.T) {
	var buf bytes.Buffer
	clock, advance := fakeClock()
	p := testBytes(&buf, "x.pt", -1, 0, false, time.Second, clock)
	advance(2 * time.Second)
	p.Write(make([]byte, 4096))
	want := "x.pt: 4.0 KiB, 2.0 KiB/s\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestProgressTerminalRedrawsOneLine(t *testing.T) {
	var buf bytes.Buffer
	clock, advance := fakeClock()
	p := testBytes(&buf, "x.pt", 2000, 0, true, 0, clock) // default 100 ms on a terminal
	advance(50 * time.Millisecond)
	p.Write(make([]byte, 500)) // before the interval: no redraw
	advance(50 * time.Millisecond)
	p.Write(make([]byte, 500)) // 1000 B in 0.1 s = 10000 B/s, 1000 B left → ETA 0.1 s
	advance(900 * time.Millisecond)
	p.Write(make([]byte, 1000))
	p.End("done")
	out := buf.String()
	first := "\rx.pt: 1000 B / 2.0 KiB (50.0%), 9.8 KiB/s, ETA 0s"
	// 2000 B in 1 s.
	second := "\rx.pt: 2.0 KiB / 2.0 KiB (100.0%), 2.0 KiB/s, ETA 0s"
	final := "\rx.pt: 2.0 KiB / 2.0 KiB (100.0%), 2.0 KiB/s, done after 1s"
	if !strings.HasPrefix(out, first) {
		t.Fatalf("output %q does not start with %q", out, first)
	}
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("want exactly one newline, at the end: %q", out)
	}
	if strings.Count(out, "\r") != 3 {
		t.Errorf("want 3 redraws, got %q", out)
	}
	if !strings.Contains(out, second) || !strings.Contains(out, final) {
		t.Errorf("output %q lacks %q or %q", out, second, final)
	}
	// A shorter line after a longer one is padded with spaces so that no
	// stale characters remain on the terminal.
	buf.Reset()
	p.lastLen = len("x.pt: 2.0 KiB / 2.0 KiB (100.0%), 2.0 KiB/s, done after 1s")
	p.draw(clock(), false, "")
	short := "x.pt: 2.0 KiB / 2.0 KiB (100.0%), 2.0 KiB/s, ETA 0s"
	// 7 spaces = len("done after 1s") - len("ETA 0s").
	if want := "\r" + short + "       "; buf.String() != want {
		t.Errorf("padded redraw = %q, want %q", buf.String(), want)
	}
}

// TestItemsWriteAndOverflow: Write counts like Add, and more items than the
// total do not break the terminal bar.
func TestItemsWriteAndOverflow(t *testing.T) {
	var buf bytes.Buffer
	clock, advance := fakeClock()
	b := newBar(&buf, "x", "img", 2, 0, true, time.Second, clock)
	advance(time.Second)
	b.Write(make([]byte, 3))
	if !strings.Contains(buf.String(), "3/2 img") || !strings.Contains(buf.String(), "150.0%") {
		t.Errorf("got %q", buf.String())
	}
}
