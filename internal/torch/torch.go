// Package torch holds the toolkit's small helpers on top of gotch: grad-mode
// scopes that restore the previous mode, device selection, readable errors
// (Err), a Scope that frees a computation's intermediate tensors on every
// return path, and a resident-memory probe.
//
// Errors: code a user reaches calls gotch's error-returning functions, never
// the Must* ones (which panic or end the process), and wraps each error
// with Err, naming the operation; callers add which method or model it was.
//
// Memory: every gotch tensor owns C memory that is released when Drop (or
// MustDrop) is called, or later by a finalizer. The toolkit drops every
// intermediate tensor explicitly in loops instead of waiting for the garbage
// collector, runs inference inside NoGrad, and keeps long-lived tensors
// (weights, learned parameters) in stores that are dropped once.
//
// Threads: libtorch's grad mode is per OS thread, so code that drives a model
// calls runtime.LockOSThread first; a goroutine that moves between threads
// would otherwise see a grad mode it did not set.
package torch

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/sugarme/gotch"
	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// NoGrad runs fn with gradient tracking disabled and then restores the
// previous mode (gotch's own ts.NoGrad always turns tracking back on).
// libtorch's grad mode is per OS thread, so NoGrad locks the calling
// goroutine to its thread for the duration (locks nest): without that, the
// goroutine could move to another thread between turning tracking off and
// running fn. (Seen: a test subtest, whose goroutine was not locked, had a
// parameter copy inside NoGrad run with tracking on, about one run in six
// on a GPU machine.) Callers that drive a model across several calls
// should still lock their goroutine, so that the mode they set stays.
func NoGrad(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev, err := SetGradEnabled(false)
	if err != nil {
		return err
	}
	defer SetGradEnabled(prev)
	return fn()
}

// SetGradEnabled sets gradient tracking for this OS thread and returns the
// previous setting. (gotch's ts.GradSetEnabled reads libtorch's 32-bit
// answer as a 64-bit int, so the previous state it returns is unreliable.)
func SetGradEnabled(on bool) (prev bool, err error) {
	arg := 0
	if on {
		arg = 1
	}
	switch int32(lib.AtGradSetEnabled(arg)) {
	case 1:
		return true, nil
	case 0:
		return false, nil
	default:
		return false, Err("set grad mode", ts.TorchErr())
	}
}

// GradEnabled reports whether gradient tracking is on for this OS thread.
func GradEnabled() bool {
	prev, err := SetGradEnabled(true)
	if err != nil {
		return false
	}
	SetGradEnabled(prev)
	return prev
}

// Err wraps a gotch error with what was being done, keeping only the first
// line of libtorch's message (gotch appends a C++ backtrace and a Go stack).
// It returns nil when err is nil.
func Err(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, &shortError{err})
}

type shortError struct{ err error }

func (e *shortError) Error() string { return cli.FirstLine(e.err) }
func (e *shortError) Unwrap() error { return e.err }

// ParseDevice maps "cpu", "cuda", "cuda:N" or "auto" to a device. "auto"
// picks CUDA when libtorch sees a GPU. Asking for CUDA without one is an
// error.
func ParseDevice(name string) (gotch.Device, error) {
	switch n := strings.ToLower(strings.TrimSpace(name)); {
	case n == "" || n == "auto":
		return gotch.CudaIfAvailable(), nil
	case n == "cpu":
		return gotch.CPU, nil
	case n == "cuda" || strings.HasPrefix(n, "cuda:"):
		if !gotch.CUDA.IsAvailable() {
			return gotch.CPU, errors.New("device cuda requested, but libtorch sees no CUDA device (CPU-only libtorch, or no GPU/driver); use -device cpu or auto")
		}
		idx := 0
		if rest, ok := strings.CutPrefix(n, "cuda:"); ok {
			i, err := strconv.Atoi(rest)
			if err != nil || i < 0 || int64(i) >= gotch.CUDA.DeviceCount() {
				return gotch.CPU, fmt.Errorf("device %q: no such CUDA device (%d available)", name, gotch.CUDA.DeviceCount())
			}
			idx = i
		}
		return gotch.CudaBuilder(uint(idx)), nil
	default:
		return gotch.CPU, fmt.Errorf("unknown device %q (want cpu, cuda, cuda:N or auto)", name)
	}
}

// DeviceName returns "cpu" or "cuda:N".
func DeviceName(d gotch.Device) string {
	if d.IsCuda() {
		return fmt.Sprintf("cuda:%d", d.Value)
	}
	return "cpu"
}

// ResidentBytes returns this process's resident set size, read from
// /proc/self/statm.
func ResidentBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("unexpected /proc/self/statm: %q", b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

// PeakResidentBytes returns this process's peak resident set size (the
// VmHWM line of /proc/self/status).
func PeakResidentBytes() (int64, error) {
	v, err := statusKB("VmHWM")
	if err != nil {
		return 0, err
	}
	return v["VmHWM"], nil
}

// AnonymousBytes returns the memory this process has allocated and
// written: its anonymous resident memory plus what of it is swapped out
// (RssAnon + VmSwap in /proc/self/status). Unlike the resident set size it
// does not move when the kernel drops pages of mapped files (libtorch's
// code, hundreds of MiB) under memory pressure and reads them back later,
// so leak checks measure it.
func AnonymousBytes() (int64, error) {
	v, err := statusKB("RssAnon", "VmSwap")
	if err != nil {
		return 0, err
	}
	return v["RssAnon"] + v["VmSwap"], nil
}

// statusKB reads the given "Key: N kB" lines of /proc/self/status, in
// bytes; a missing key is an error.
func statusKB(keys ...string) (map[string]int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok || !slices.Contains(keys, key) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return nil, fmt.Errorf("unexpected /proc/self/status line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/self/status line %q: %w", line, err)
		}
		out[key] = kb << 10
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("no %s line in /proc/self/status", k)
		}
	}
	return out, nil
}
