package torch

import (
	"runtime"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestCUDAMatmulMatchesCPU checks that the prepared gotch reaches the GPU:
// a matrix product on CUDA equals the CPU one, and ParseDevice("auto")
// picks CUDA. It is skipped without a CUDA device.
func TestCUDAMatmulMatchesCPU(t *testing.T) {
	if !gotch.CUDA.IsAvailable() {
		t.Skip("no CUDA device")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d, err := ParseDevice("auto")
	if err != nil || !d.IsCuda() {
		t.Fatalf("ParseDevice(auto) = %v, %v; want CUDA", d, err)
	}
	a := ts.MustOfSlice([]float32{1, 2, 3, 4, 5, 6}).MustView([]int64{2, 3}, true)
	b := ts.MustOfSlice([]float32{1, 0, -1, 2, 0.5, 1}).MustView([]int64{3, 2}, true)
	want := a.MustMm(b, false).Float64Values()
	got := a.MustTo(d, false).MustMm(b.MustTo(d, false), true).MustTo(gotch.CPU, true).Float64Values()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("cuda mm[%d] = %g, cpu %g", i, got[i], want[i])
		}
	}
}
