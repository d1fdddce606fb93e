package cli

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Interrupts is a command's handling of Ctrl-C (SIGINT) and SIGTERM: the
// first signal cancels Context (the work stops at its next batch); the
// signal is remembered so that the exit status of the stopped command is
// 128 + its number (130, 143), as a shell reports a process killed by it.
// Once the first signal has arrived the handler is removed, so a second
// one ends the process at once.
type Interrupts struct {
	ctx    context.Context
	cancel context.CancelFunc
	stop   func()
	mu     sync.Mutex
	sig    syscall.Signal
}

// OnSignals returns Interrupts fed by the process's SIGINT and SIGTERM.
// Call Stop when the command is done.
func OnSignals() *Interrupts {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	return FromSignals(ch, func() { signal.Stop(ch) })
}

// FromSignals returns Interrupts fed by ch; stop (may be nil) is called on
// the first signal and by Stop. Tests send signals into ch.
func FromSignals(ch <-chan os.Signal, stop func()) *Interrupts {
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	in := &Interrupts{ctx: ctx, cancel: cancel}
	in.stop = func() {
		once.Do(func() {
			if stop != nil {
				stop()
			}
		})
	}
	go func() {
		select {
		case s := <-ch:
			in.mu.Lock()
			if ss, ok := s.(syscall.Signal); ok {
				in.sig = ss
			} else {
				in.sig = syscall.SIGINT
			}
			in.mu.Unlock()
			in.stop()
			cancel()
		case <-ctx.Done():
		}
	}()
	return in
}

// Context is cancelled by the first signal (or by Stop).
func (in *Interrupts) Context() context.Context { return in.ctx }

// Signal returns the signal that arrived, or 0.
func (in *Interrupts) Signal() syscall.Signal {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.sig
}

// Status returns the exit status of a command that ended with code: 128 +
// the signal's number when a signal arrived and the command did not
// succeed, code otherwise.
func (in *Interrupts) Status(code int) int {
	if s := in.Signal(); s != 0 && code != 0 {
		return 128 + int(s)
	}
	return code
}

// Stop removes the signal handler and releases the context.
func (in *Interrupts) Stop() {
	in.stop()
	in.cancel()
}
