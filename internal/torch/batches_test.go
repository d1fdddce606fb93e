package torch

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// counter yields the batches 0..n-1, failing at failAt (when >= 0).
func counter(n, failAt int) func() (int, bool, error) {
	i := 0
	return func() (int, bool, error) {
		if i == failAt {
			return 0, false, fmt.Errorf("batch %d cannot be read", i)
		}
		if i == n {
			return 0, false, nil
		}
		i++
		return i - 1, true, nil
	}
}

// TestForEachBatchOrderAndThreads runs batches that finish out of order
// (the early ones take longest) and checks that emit sees them in order,
// that each worker ran with one libtorch thread and gradients off, and
// that the caller's thread count is unchanged afterwards.
func TestForEachBatchOrderAndThreads(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	threads, err := NumThreads()
	if err != nil {
		t.Fatal(err)
	}
	const n = 12
	for _, workers := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(workers, " workers"), func(t *testing.T) {
			var mu sync.Mutex
			seenThreads := map[int]bool{}
			gradOn := false
			var running, most atomic.Int32
			var got []int
			err := ForEachBatch(workers, threads, counter(n, -1),
				func(b int) (int, error) {
					now := running.Add(1)
					defer running.Add(-1)
					for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
					}
					nt, err := NumThreads()
					if err != nil {
						return 0, err
					}
					mu.Lock()
					seenThreads[nt] = true
					gradOn = gradOn || GradEnabled()
					mu.Unlock()
					time.Sleep(time.Duration(n-b) * 2 * time.Millisecond)
					return b * b, nil
				},
				func(b, r int) error {
					if r != b*b {
						return fmt.Errorf("batch %d: result %d, want %d", b, r, b*b)
					}
					got = append(got, b)
					return nil
				}, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]int, n)
			for i := range want {
				want[i] = i
			}
			if !slices.Equal(got, want) {
				t.Errorf("emitted %v, want %v", got, want)
			}
			if workers > 1 {
				if !seenThreads[1] || len(seenThreads) != 1 {
					t.Errorf("libtorch threads seen by the work: %v, want 1 only", seenThreads)
				}
				if gradOn {
					t.Error("gradients were on in a worker")
				}
				if most.Load() < 2 {
					t.Errorf("at most %d batches ran at once with %d workers", most.Load(), workers)
				}
			} else if !seenThreads[threads] || len(seenThreads) != 1 {
				t.Errorf("one worker: libtorch threads seen %v, want the caller's %d", seenThreads, threads)
			}
			if int(most.Load()) > max(workers, 1) {
				t.Errorf("%d batches ran at once with %d workers", most.Load(), workers)
			}
			if nt, err := NumThreads(); err != nil || nt != threads {
				t.Errorf("caller's libtorch threads after: %d, %v; want %d", nt, err, threads)
			}
		})
	}
}

// TestForEachBatchErrors checks that an error of next, work or emit is
// returned, that no batch is emitted after a failed one, and that every
// result not emitted is discarded.
func TestForEachBatchErrors(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	threads, err := NumThreads()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                     string
		failNext, failWork, fail int // batch numbers, -1: none
		errSub                   string
	}{
		{"next", 5, -1, -1, "batch 5 cannot be read"},
		{"work", -1, 4, -1, "work failed on batch 4"},
		{"emit", -1, -1, 3, "emit refused batch 3"},
	}
	for _, tc := range tests {
		for _, workers := range []int{1, 2, 4} {
			t.Run(fmt.Sprint(tc.name, " ", workers), func(t *testing.T) {
				var made, discarded atomic.Int32
				var emitted []int
				err := ForEachBatch(workers, threads, counter(20, tc.failNext),
					func(b int) (int, error) {
						if b == tc.failWork {
							return 0, fmt.Errorf("work failed on batch %d", b)
						}
						made.Add(1)
						return b, nil
					},
					func(b, r int) error {
						if b == tc.fail {
							discarded.Add(1) // emit owns what it is given
							return fmt.Errorf("emit refused batch %d", b)
						}
						emitted = append(emitted, b)
						return nil
					},
					func(int) { discarded.Add(1) })
				if err == nil || err.Error() != tc.errSub {
					t.Fatalf("error %v, want %q", err, tc.errSub)
				}
				failed := max(tc.failNext, tc.failWork, tc.fail)
				for i, b := range emitted {
					if b != i || b >= failed {
						t.Errorf("emitted %v: want a prefix of 0..%d", emitted, failed-1)
						break
					}
				}
				if workers == 1 && len(emitted) != failed {
					t.Errorf("one worker emitted %v, want 0..%d", emitted, failed-1)
				}
				if int(made.Load()) != len(emitted)+int(discarded.Load()) {
					t.Errorf("%d results made, %d emitted, %d discarded", made.Load(), len(emitted), discarded.Load())
				}
				if nt, err := NumThreads(); err != nil || nt != threads {
					t.Errorf("caller's libtorch threads after: %d, %v; want %d", nt, err, threads)
				}
			})
		}
	}
}

// TestForEachBatchTensors runs real libtorch work (a matrix product per
// batch) on two workers and compares it with the same work done serially
// with the caller's threads: the results agree to float32 rounding.
func TestForEachBatchTensors(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	threads, err := NumThreads()
	if err != nil {
		t.Fatal(err)
	}
	w := ts.MustRandn([]int64{96, 64}, gotch.Float, gotch.CPU)
	defer w.MustDrop()
	inputs := make([]*ts.Tensor, 6)
	for i := range inputs {
		inputs[i] = ts.MustRandn([]int64{50, 96}, gotch.Float, gotch.CPU)
		defer inputs[i].MustDrop()
	}
	run := func(workers int) [][]float32 {
		i := 0
		var out [][]float32
		err := ForEachBatch(workers, threads,
			func() (*ts.Tensor, bool, error) {
				if i == len(inputs) {
					return nil, false, nil
				}
				i++
				return inputs[i-1], true, nil
			},
			func(x *ts.Tensor) (*ts.Tensor, error) {
				y, err := x.Matmul(w, false)
				return y, Err("matmul", err)
			},
			func(_ *ts.Tensor, y *ts.Tensor) error {
				defer y.MustDrop()
				v, err := Values[float32](y)
				out = append(out, v)
				return err
			},
			func(y *ts.Tensor) { y.MustDrop() })
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	serial, parallel := run(1), run(2)
	if len(serial) != len(inputs) || len(parallel) != len(inputs) {
		t.Fatalf("%d and %d results, want %d", len(serial), len(parallel), len(inputs))
	}
	for b := range serial {
		for k := range serial[b] {
			if d := serial[b][k] - parallel[b][k]; d > 1e-4 || d < -1e-4 {
				t.Fatalf("batch %d value %d: serial %g, two workers %g", b, k, serial[b][k], parallel[b][k])
			}
		}
	}
}

// TestBatchWorkers checks the policy: one batch per libtorch thread on the
// CPU, never more than the batches, one elsewhere or when the number of
// batches is unknown.
func TestBatchWorkers(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev, err := NumThreads()
	if err != nil {
		t.Fatal(err)
	}
	defer SetNumThreads(prev)
	if err := SetNumThreads(3); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		device          gotch.Device
		batches, wantWk int
	}{
		{gotch.CPU, 10, 3},
		{gotch.CPU, 2, 2},
		{gotch.CPU, 1, 1},
		{gotch.CPU, 0, 1},
		{gotch.CudaIfAvailable(), 10, 3},
	}
	for _, tc := range tests {
		want := tc.wantWk
		if tc.device.IsCuda() {
			want = 1
		}
		w, th := BatchWorkers(tc.device, tc.batches)
		if w != want || th != 3 {
			t.Errorf("BatchWorkers(%v, %d) = %d, %d; want %d, 3", tc.device, tc.batches, w, th, want)
		}
	}
	if err := SetNumThreads(1); err != nil {
		t.Fatal(err)
	}
	if w, _ := BatchWorkers(gotch.CPU, 10); w != 1 {
		t.Errorf("one libtorch thread: %d workers, want 1", w)
	}
}
