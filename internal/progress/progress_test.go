package progress

import (
	"bytes"
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
