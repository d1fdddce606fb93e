package cli

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func recovered(fn func()) (msg string) {
	defer func() { msg = Recovered(recover()) }()
	fn()
	return ""
}

//go:noinline
func indexPastEnd(s []int, i int) int { return s[i] }

func TestRecoveredLocatesThePanic(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func()
		want string // a regular expression
	}{
		{"explicit", func() { panic("bad state\nmore detail") },
			`^bad state \(at cli\.TestRecoveredLocatesThePanic\.func1, cli/panic_test\.go:\d+\)$`},
		{"error value", func() { panic(errors.New("broken")) },
			`^broken \(at cli\.TestRecoveredLocatesThePanic\.func2, cli/panic_test\.go:\d+\)$`},
		{"runtime error", func() { indexPastEnd([]int{1}, 3) },
			`^runtime error: index out of range \[3\] with length 1 \(at cli\.indexPastEnd, cli/panic_test\.go:\d+\)$`},
		// Outside the module: the library function, then the caller here.
		{"library", func() { _ = slices.Insert([]int{1}, 5, 2) },
			`^runtime error: .* \(in slices\.Insert\[.*\], slices/slices\.go:\d+, called from cli\.TestRecoveredLocatesThePanic\.func4, cli/panic_test\.go:\d+\)$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := recovered(tc.fn)
			if !regexp.MustCompile(tc.want).MatchString(got) {
				t.Errorf("Recovered = %q, want a match of %s", got, tc.want)
			}
		})
	}
}

// TestReportPanic: a command whose run panics exits with status 1 and one
// line naming the program and where the panic happened; without a panic
// the status is left alone.
func TestReportPanic(t *testing.T) {
	run := func(fn func()) (out string, code int) {
		var b strings.Builder
		func() {
			defer ReportPanic("prog", &b, &code)
			fn()
		}()
		return b.String(), code
	}
	out, code := run(func() { indexPastEnd([]int{1}, 2) })
	if want := regexp.MustCompile(`^prog: internal error: runtime error: index out of range \[2\] with length 1 \(at cli\.indexPastEnd, cli/panic_test\.go:\d+\)\n$`); code != 1 || !want.MatchString(out) {
		t.Errorf("status %d, stderr %q; want 1 and a match of %s", code, out, want)
	}
	if out, code := run(func() {}); code != 0 || out != "" {
		t.Errorf("without a panic: status %d, stderr %q", code, out)
	}
}
