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

// TestInPlaceOperationsFreeTheirTensor checks make setup's patch of gotch's
// in-place wrappers: a tensor changed in place (Add_, MulScalar_,
// Unsqueeze_) must be freed when it is dropped. Unpatched, each in-place
// call left a second handle on the tensor behind, so its 64 MiB of storage
// outlived Drop and the anonymous memory grew by that much per round. A
// tensor this large is a mapping of its own for glibc, returned to the
// system when freed, so the resident figure sees it.
func TestInPlaceOperationsFreeTheirTensor(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const rounds, size = 8, 64 << 20
	two := ts.FloatScalar(2)
	defer two.MustDrop()
	round := func() {
		x, err := ts.Zeros([]int64{size / 4}, gotch.Float, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		y := ts.MustOnes([]int64{size / 4}, gotch.Float, gotch.CPU)
		if err := x.Add_(y); err != nil {
			t.Fatal(err)
		}
		if err := x.MulScalar_(two); err != nil {
			t.Fatal(err)
		}
		if err := x.Unsqueeze_(0); err != nil {
			t.Fatal(err)
		}
		// Both handles see the in-place changes: shape and values.
		if s, v := x.MustSize(), x.MustSelect(1, 7, false); len(s) != 2 || s[0] != 1 || v.Float64Values()[0] != 2 {
			t.Fatalf("after in-place ops: shape %v, x[0][7] = %v; want [1 %d] and 2", s, v.Float64Values(), size/4)
		} else {
			v.MustDrop()
		}
		x.MustDrop()
		y.MustDrop()
	}
	round()
	before, err := AnonymousBytes()
	if err != nil {
		t.Skip(err)
	}
	for range rounds {
		round()
	}
	after, err := AnonymousBytes()
	if err != nil {
		t.Fatal(err)
	}
	if growth := after - before; growth > size {
		t.Errorf("anonymous memory grew by %.0f MiB over %d rounds that each freed a 64 MiB tensor changed in place; want < 64 MiB (in-place handles leak)", float64(growth)/(1<<20), rounds)
	}
}
