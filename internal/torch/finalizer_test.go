package torch

import (
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestArgumentsSurviveGarbageCollection passes tensors whose Go values are
// not used again to long libtorch calls while another goroutine forces
// garbage collections. gotch frees a tensor's C memory from a finalizer;
// before `make setup` patched its functions to keep their arguments alive
// across the C call, this crashed with SIGSEGV or returned wrong products
// (2 of 3 runs with libtorch 1.13 here). Each result is compared with the
// first one.
func TestArgumentsSurviveGarbageCollection(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	defer func() { close(stop); <-done }()

	const n = 1024
	data := make([]float32, n*n)
	for i := range data {
		data[i] = float32(i%7) * 0.1
	}
	w := ts.MustOfSlice(data).MustView([]int64{n, n}, true)
	defer w.MustDrop()
	want := math.NaN()
	for i := 0; i < 300; i++ {
		x := ts.MustOfSlice(data).MustView([]int64{n, n}, true)
		y, err := x.Matmul(w, false) // x is not used after this call
		if err != nil {
			t.Fatal(err)
		}
		z, err := y.LogSoftmax(-1, gotch.Float, true)
		if err != nil {
			t.Fatal(err)
		}
		s, err := z.Sum(gotch.Double, true)
		if err != nil {
			t.Fatal(err)
		}
		got := s.Float64Values()[0]
		s.MustDrop()
		if i == 0 {
			want = got
		} else if math.Abs(got-want) > 1e-9*math.Abs(want) {
			t.Fatalf("result %d sums to %.10g, the first to %.10g: an input was freed during the call", i, got, want)
		}
	}
}
