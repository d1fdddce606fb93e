package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"
)

// modulePath prefixes the functions of this module's packages; those of
// its commands are in package main.
const modulePath = "github.com/clipadapter/clipgo/"

// Recovered describes the value r of a recovered panic on one line: its
// message (first line) and where the panic happened, as the innermost
// function of this module on the panicking stack, preceded by the function
// that panicked when that is outside the module (a library, the runtime's
// callers):
//
//	index out of range [3] with length 3 (at train.(*Loop).step, train/loop.go:231)
//
// Call it from the deferred function that called recover, so that the
// panicking frames are still on the stack.
func Recovered(r any) string {
	msg := FirstLine(fmt.Errorf("%v", r))
	if where := panicSite(); where != "" {
		return msg + " (" + where + ")"
	}
	return msg
}

// ReportPanic is a command's last line of defence: deferred directly
// (defer cli.ReportPanic("train", stderr, &code)), it recovers a panic,
// prints "prog: internal error: " and Recovered's line to stderr instead
// of a Go stack trace, and sets *code to 1.
func ReportPanic(prog string, stderr io.Writer, code *int) {
	if r := recover(); r != nil {
		fmt.Fprintf(stderr, "%s: internal error: %s\n", prog, Recovered(r))
		*code = 1
	}
}

// panicSite locates the panic in progress from the stack of the deferred
// call that recovered it: the frames below runtime.gopanic (runtime
// helpers such as runtime.panicIndex skipped) are the panicking code.
func panicSite() string {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(3, pcs) // Callers, panicSite, Recovered
	frames := runtime.CallersFrames(pcs[:n])
	var below bool
	var origin, own *runtime.Frame
	for {
		f, more := frames.Next()
		switch {
		case !below:
			below = f.Function == "runtime.gopanic"
		case strings.HasPrefix(f.Function, "runtime."):
		case origin == nil:
			origin = &f
			if inModule(f.Function) {
				own = &f
			}
		case inModule(f.Function):
			own = &f
		}
		if own != nil || !more {
			break
		}
	}
	switch {
	case own == nil && origin == nil:
		return ""
	case own == nil:
		return "in " + frameString(*origin)
	case origin == own:
		return "at " + frameString(*own)
	}
	return "in " + frameString(*origin) + ", called from " + frameString(*own)
}

func inModule(function string) bool {
	return strings.HasPrefix(function, modulePath) || strings.HasPrefix(function, "main.")
}

// frameString names a frame's function without its import path and its
// file by its last directory and name.
func frameString(f runtime.Frame) string {
	fn := f.Function
	if i := strings.LastIndex(fn, "/"); i >= 0 {
		fn = fn[i+1:]
	}
	file := filepath.Join(filepath.Base(filepath.Dir(f.File)), filepath.Base(f.File))
	return fmt.Sprintf("%s, %s:%d", fn, file, f.Line)
}
