package torch

import (
	"runtime"
	"testing"
)

// TestSetNumThreads sets libtorch's intra-op thread count and reads it back
// through libtorch (at::get_num_threads), then restores it.
func TestSetNumThreads(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev, err := NumThreads()
	if err != nil {
		t.Fatal(err)
	}
	if prev < 1 {
		t.Fatalf("NumThreads() = %d before any change, want >= 1", prev)
	}
	t.Logf("libtorch intra-op threads by default: %d", prev)
	defer SetNumThreads(prev)
	for _, n := range []int{1, 3, prev} {
		if err := SetNumThreads(n); err != nil {
			t.Fatal(err)
		}
		if got, err := NumThreads(); err != nil || got != n {
			t.Errorf("after SetNumThreads(%d): NumThreads() = %d, %v", n, got, err)
		}
	}
	for _, n := range []int{0, -2} {
		if err := SetNumThreads(n); err == nil {
			t.Errorf("SetNumThreads(%d) succeeded", n)
		}
	}
}
