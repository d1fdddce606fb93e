// Package cli holds what the toolkit's commands share: the usage error
// (exit status 2), flag parsing that turns flag mistakes into one, and the
// one-line form in which errors are shown to users.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// UsageError marks a mistake in how a command was invoked. An empty Msg
// means the flag package has already explained the problem.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return UsageError{fmt.Sprintf(format, args...)}
}

// Parse parses args into fs, which prints its own messages and help to
// stderr. -h returns flag.ErrHelp; any other flag mistake returns an empty
// UsageError.
func Parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return UsageError{}
	}
	return nil
}

// Required returns a UsageError for the first of names that was not set on
// the command line, or nil.
func Required(fs *flag.FlagSet, names ...string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, n := range names {
		if !set[n] {
			return Usagef("-%s is required", n)
		}
	}
	return nil
}

// FirstLine returns the first non-blank line of err's message, trimmed:
// what users are shown. gotch's errors carry libtorch's C++ backtrace and
// a Go stack dump on the lines after it.
func FirstLine(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	for _, line := range strings.Split(msg, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return strings.TrimSpace(msg)
}

// RetainMemoryUsage is the help text of the -retain-memory flag that the
// commands running models share (see torch.RetainFreedMemory).
const RetainMemoryUsage = "keep memory freed by libtorch for the next batches instead of returning it to the OS (fewer page faults on CPU; resident memory stays at its peak)"
