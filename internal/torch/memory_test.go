package torch

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestTrainingLoopMemoryIsFlat runs 10,000 small forward/backward/update
// steps, dropping every intermediate tensor, and checks that anonymous memory
// stops growing after a warm-up. A control run that keeps one tensor per
// step alive (a handle on the step's 32 KB activation) must exceed the same
// bound, so the measurement can see a leak of C memory. (Before make setup
// removed gotch's 100 KB Go allocation per tensor, that allocation alone
// made any kept tensor visible.)
func TestTrainingLoopMemoryIsFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("long loop")
	}
	const bound = 16 << 20
	const warmup, steps = 1000, 9000
	if growth := trainingLoopGrowth(t, warmup, steps, false); growth > bound {
		t.Errorf("anonymous memory grew by %.1f MiB over %d steps; want it flat (< %d MiB)", float64(growth)/(1<<20), steps, bound>>20)
	}
	const leakWarmup, leakSteps = 100, 1000
	if growth := trainingLoopGrowth(t, leakWarmup, leakSteps, true); growth <= bound {
		t.Errorf("control run that keeps one tensor per step grew by only %.1f MiB over %d steps; want > %d MiB (the measurement misses leaks)", float64(growth)/(1<<20), leakSteps, bound>>20)
	}
}

// trainingLoopGrowth runs warmup steps of a small regression loop, then
// steps more, and returns how much anonymous memory grew over the latter. With
// leak set, each step keeps a handle on its 1024x8 activation (32 KB of C
// memory). Go's heap and the C allocator's free memory are returned to the
// OS before each reading, so the numbers reflect live memory rather than how
// far the heap overshot while the garbage collector ran, or C memory freed
// earlier in the process and reused.
func trainingLoopGrowth(t *testing.T, warmup, steps int, leak bool) int64 {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w := ts.MustRandn([]int64{16, 8}, gotch.Float, gotch.CPU).MustSetRequiresGrad(true, true)
	x := ts.MustRandn([]int64{1024, 16}, gotch.Float, gotch.CPU)
	target := ts.MustRandn([]int64{1024, 8}, gotch.Float, gotch.CPU)
	defer func() {
		w.MustDrop()
		x.MustDrop()
		target.MustDrop()
	}()
	lr := ts.FloatScalar(1e-3)
	var kept []*ts.Tensor
	defer func() {
		for _, k := range kept {
			k.MustDrop()
		}
	}()

	step := func() {
		h := x.MustMm(w, false)
		if leak {
			kept = append(kept, h.MustShallowClone())
		}
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
	for i := 0; i < warmup; i++ {
		step()
	}
	debug.FreeOSMemory()
	TrimFreedMemory()
	before, err := AnonymousBytes()
	if err != nil {
		t.Skip("no RssAnon/VmSwap in /proc/self/status:", err)
	}
	for i := 0; i < steps; i++ {
		step()
	}
	debug.FreeOSMemory()
	TrimFreedMemory()
	after, err := AnonymousBytes()
	if err != nil {
		t.Fatal(err)
	}
	growth := after - before
	t.Logf("leak=%v: anonymous memory after %d steps: %.1f MiB; growth over the last %d steps: %.2f MiB", leak, warmup+steps, float64(after)/(1<<20), steps, float64(growth)/(1<<20))
	return growth
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

// TestAnonymousBytesIgnoresFilePages: pages of a mapped file (as
// libtorch's code is) count in the resident set size, which therefore
// moves when the kernel drops them under memory pressure and reads them
// back; AnonymousBytes, which the leak checks measure, does not count them
// but does count memory the process writes.
func TestAnonymousBytesIgnoresFilePages(t *testing.T) {
	const size = 64 << 20
	if _, err := AnonymousBytes(); err != nil {
		t.Skip("no RssAnon/VmSwap in /proc/self/status:", err)
	}
	file := filepath.Join(t.TempDir(), "pages")
	if err := os.WriteFile(file, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	rss0, _ := ResidentBytes()
	anon0, _ := AnonymousBytes()
	sum := 0
	for i := 0; i < size; i += os.Getpagesize() {
		sum += int(m[i]) // fault the file's pages in
	}
	rss1, _ := ResidentBytes()
	anon1, _ := AnonymousBytes()
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	t.Logf("reading a mapped 64 MiB file: RSS +%.1f MiB, anonymous +%.1f MiB (%d)", mib(rss1-rss0), mib(anon1-anon0), sum)
	if rss1-rss0 < size/2 {
		t.Errorf("RSS grew by %.1f MiB only: the file's pages were not mapped in, the check proves nothing", mib(rss1-rss0))
	}
	if anon1-anon0 > 8<<20 {
		t.Errorf("AnonymousBytes grew by %.1f MiB for file pages, want < 8 MiB", mib(anon1-anon0))
	}
	buf := make([]byte, size)
	for i := 0; i < size; i += os.Getpagesize() {
		buf[i] = 1
	}
	anon2, _ := AnonymousBytes()
	runtime.KeepAlive(buf)
	if anon2-anon1 < size/2 {
		t.Errorf("AnonymousBytes grew by %.1f MiB after writing 64 MiB, want most of it", mib(anon2-anon1))
	}
}
