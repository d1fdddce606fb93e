package torch

import (
	"runtime"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestTrainingLoopMemoryIsFlat runs 10,000 small forward/backward/update
// steps, dropping every intermediate tensor, and checks that resident memory
// stops growing after a warm-up.
func TestTrainingLoopMemoryIsFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("long loop")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w := ts.MustRandn([]int64{16, 8}, gotch.Float, gotch.CPU).MustSetRequiresGrad(true, true)
	x := ts.MustRandn([]int64{32, 16}, gotch.Float, gotch.CPU)
	target := ts.MustRandn([]int64{32, 8}, gotch.Float, gotch.CPU)
	lr := ts.FloatScalar(1e-3)

	step := func() {
		h := x.MustMm(w, false)
		a := h.MustRelu(true)
		d := a.MustSub(target, true)
		loss := d.MustSquare(true).MustMean(gotch.Float, true)
		loss.MustBackward()
		g := w.MustGrad(false)
		if err := NoGrad(func() error {
			upd := g.MustMulScalar(lr, false)
			w.MustSub_(upd)
			upd.MustDrop()
			g.MustZero_()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		g.MustDrop()
		loss.MustDrop()
	}
	const warmup, steps = 1000, 10000
	for i := 0; i < warmup; i++ {
		step()
	}
	runtime.GC()
	before, err := ResidentBytes()
	if err != nil {
		t.Skip("no /proc/self/statm:", err)
	}
	for i := warmup; i < steps; i++ {
		step()
	}
	runtime.GC()
	after, _ := ResidentBytes()
	growth := after - before
	t.Logf("resident memory after %d steps: %.1f MiB; growth over the last %d steps: %.2f MiB", steps, float64(after)/(1<<20), steps-warmup, float64(growth)/(1<<20))
	if growth > 16<<20 {
		t.Errorf("resident memory grew by %.1f MiB over %d steps; want it flat (< 16 MiB)", float64(growth)/(1<<20), steps-warmup)
	}
}

// TestPeakResidentBytes checks that the peak resident size is read and is
// at least the current one.
func TestPeakResidentBytes(t *testing.T) {
	cur, err := ResidentBytes()
	if err != nil {
		t.Fatal(err)
	}
	peak, err := PeakResidentBytes()
	if err != nil {
		t.Fatal(err)
	}
	if cur <= 0 || peak < cur {
		t.Errorf("peak %d B, current %d B: want 0 < current <= peak", peak, cur)
	}
}
