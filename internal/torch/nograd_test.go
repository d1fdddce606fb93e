package torch

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestNoGradHoldsOnAnUnlockedGoroutine calls NoGrad from a goroutine that
// is not locked to its OS thread while other goroutines keep the scheduler
// moving goroutines between threads, and yields inside fn: grad mode must
// read off inside fn every time. (Before NoGrad locked the thread itself, a
// goroutine could resume on a thread whose mode was still on.) It also
// checks that the mode is restored afterwards.
func TestNoGradHoldsOnAnUnlockedGoroutine(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs two or more Ps for goroutines to change threads")
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { // busy goroutines that compete for the threads
			defer wg.Done()
			for !stop.Load() {
				runtime.Gosched()
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()

	done := make(chan int)
	go func() {
		on := 0
		for i := 0; i < 3000; i++ {
			_ = NoGrad(func() error {
				runtime.Gosched()
				if GradEnabled() {
					on++
				}
				return nil
			})
		}
		done <- on
	}()
	if on := <-done; on != 0 {
		t.Errorf("grad mode was on inside NoGrad in %d of 3000 calls", on)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if !GradEnabled() {
		t.Error("grad mode not restored on this thread")
	}
}
