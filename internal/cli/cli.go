// Package cli holds what the toolkit's commands share: the usage error
// (exit status 2), flag parsing that turns flag mistakes into one, the exit
// status and one-line message shown for an error, a repeatable string flag
// and the help text of -retain-memory.
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

// Strings is a repeatable string flag: each use appends its value.
type Strings []string

func (s *Strings) String() string     { return strings.Join(*s, ",") }
func (s *Strings) Set(v string) error { *s = append(*s, v); return nil }

// Exit reports the error of subcommand sub of command prog on stderr and
// returns the exit status: 0 for nil and for -h, 2 for a UsageError (with a
// hint to the subcommand's -h), 1 for anything else, shown as its first line.
func Exit(prog, sub string, err error, stderr io.Writer) int {
	var ue UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		// An empty message: the flag package has explained already.
		if ue.Msg != "" {
			fmt.Fprintf(stderr, "%s %s: %s\nrun \"%s %s -h\" for its flags\n", prog, sub, ue.Msg, prog, sub)
		}
		return 2
	default:
		fmt.Fprintf(stderr, "%s %s: %s\n", prog, sub, FirstLine(err))
		return 1
	}
}
