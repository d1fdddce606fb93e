package torch

import (
	"runtime"
	"sync"

	"github.com/sugarme/gotch"
)

// BatchWorkers returns how many batches of inference to run at once on
// device, out of batches (0 when not known), and the libtorch thread count
// to give back afterwards. On the CPU, with more than one libtorch thread
// and at least two batches, it is one batch per thread (at most batches):
// each batch then runs on one thread, with no hand-over between threads
// inside an operation. On a 2-core machine (batches of 100, model alone)
// changed ViT-B/32's images/s by -1% to +16% and RN50's by +20% to +53%
// with libtorch 2.11 (MKL and OpenMP), and ViT-B/32's by -2% to +21% with
// Debian's libtorch 1.13 (OpenBLAS), depending on the day's host; the
// README has the figures. Elsewhere it is 1. The thread count is the
// calling OS thread's (see SetNumThreads).
func BatchWorkers(device gotch.Device, batches int) (workers, threads int) {
	threads, err := NumThreads()
	if err != nil || device.IsCuda() || threads < 2 || batches < 2 {
		return 1, threads
	}
	return min(threads, batches), threads
}

// ForEachBatch runs work on each batch that next yields (ok false after the
// last one) and hands each result to emit, in the batches' order, on the
// calling goroutine. With workers > 1, up to workers batches run at once,
// each worker on an OS thread of its own with one libtorch thread and
// gradients off; a worker's thread gets threads libtorch threads back
// before it is released. next is called by one worker at a time. With
// workers <= 1 everything runs on the calling goroutine, one batch after
// the other.
//
// The first error of next, work or emit ends the loop: no batch is taken
// after it, running work is waited for, and the error is returned. emit
// owns the results it is given; discard is called on every other result
// (it may be nil when results need no clean-up).
func ForEachBatch[B, R any](workers, threads int, next func() (B, bool, error), work func(B) (R, error), emit func(B, R) error, discard func(R)) error {
	if discard == nil {
		discard = func(R) {}
	}
	if workers <= 1 {
		for {
			b, ok, err := next()
			if err != nil || !ok {
				return err
			}
			r, err := work(b)
			if err != nil {
				return err
			}
			if err := emit(b, r); err != nil {
				return err
			}
		}
	}
	type result struct {
		seq int
		b   B
		r   R
		err error
	}
	var (
		mu      sync.Mutex
		taken   int  // batches taken so far
		stopped bool // no more batches are taken
	)
	stop := func() { mu.Lock(); stopped = true; mu.Unlock() }
	// take returns the next batch and its sequence number.
	take := func() (int, B, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		var zero B
		if stopped {
			return 0, zero, false, nil
		}
		b, ok, err := next()
		if err != nil || !ok {
			stopped = true
			return 0, zero, false, err
		}
		taken++
		return taken - 1, b, true, nil
	}
	results := make(chan result, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if err := SetNumThreads(1); err != nil {
				results <- result{err: err}
				return
			}
			defer func() { _ = SetNumThreads(threads) }() // it succeeded with 1 just above
			for {
				seq, b, ok, err := take()
				if err != nil {
					results <- result{err: err}
					return
				}
				if !ok {
					return
				}
				var r R
				err = NoGrad(func() error {
					var err error
					r, err = work(b)
					return err
				})
				results <- result{seq: seq, b: b, r: r, err: err}
				if err != nil {
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()
	var firstErr error
	waiting := map[int]result{} // finished out of order
	emitted := 0
	for res := range results {
		if res.err != nil {
			if firstErr == nil {
				firstErr = res.err
				stop()
			}
			continue
		}
		if firstErr != nil {
			discard(res.r)
			continue
		}
		waiting[res.seq] = res
		for firstErr == nil {
			w, ok := waiting[emitted]
			if !ok {
				break
			}
			delete(waiting, emitted)
			emitted++
			if err := emit(w.b, w.r); err != nil {
				firstErr = err
				stop()
			}
		}
	}
	for _, w := range waiting {
		discard(w.r)
	}
	return firstErr
}
