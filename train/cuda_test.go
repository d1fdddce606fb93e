package train

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/sugarme/gotch"
)

// onDevice returns a copy of views on dev.
func onDevice(t *testing.T, views []*Features, dev gotch.Device) []*Features {
	t.Helper()
	out := make([]*Features, len(views))
	for i, v := range views {
		out[i] = &Features{X: v.X.MustTo(dev, false), Labels: v.Labels.MustTo(dev, false), Y: v.Y}
	}
	return out
}

// newTestLoopOn is newTestLoop with the method's weights on dev.
func newTestLoopOn(epochs int, views []*Features, dev gotch.Device) *Loop {
	l := newTestLoop(epochs, views)
	m := l.Method.(*linearMethod)
	w := m.w.MustTo(dev, false).MustDetach(true).MustSetRequiresGrad(true, true)
	m.w.MustDrop()
	m.w = w
	l.Optimizer = NewSGD(m.Parameters(), 0.9, 5e-4)
	return l
}

// TestCheckpointAcrossDevices trains 3 of 6 epochs on one device, saves a
// checkpoint, resumes it on the other, and compares the final weights with
// a run done wholly on the CPU: CUDA -> CPU and CPU -> CUDA. The two
// devices round differently, so the tolerance is 1e-5 relative rather
// than bit equality. Skipped without a CUDA device.
func TestCheckpointAcrossDevices(t *testing.T) {
	if !gotch.CUDA.IsAvailable() {
		t.Skip("no CUDA device")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cuda := gotch.CudaBuilder(0)
	cpuViews := []*Features{blobs(50, 4, 8, 3), blobs(50, 4, 8, 4)}
	gpuViews := onDevice(t, cpuViews, cuda)
	straight := newTestLoop(6, cpuViews)
	if err := straight.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := straight.Method.Parameters()[0].Tensor.Float64Values()
	for _, tc := range []struct {
		name       string
		from, to   gotch.Device
		fromV, toV []*Features
	}{
		{"cuda to cpu", cuda, gotch.CPU, gpuViews, cpuViews},
		{"cpu to cuda", gotch.CPU, cuda, cpuViews, gpuViews},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.LockOSThread() // a subtest runs in a goroutine of its own
			defer runtime.UnlockOSThread()
			ckpt := filepath.Join(t.TempDir(), "last.ckpt")
			first := newTestLoopOn(6, tc.fromV, tc.from)
			first.Hooks.Epoch = append(first.Hooks.Epoch, func(l *Loop, e EpochInfo) error {
				if err := SaveCheckpoint(ckpt, l, nil); err != nil {
					return err
				}
				if e.Epoch == 2 {
					return errStopHere
				}
				return nil
			})
			if err := first.Run(context.Background()); !errors.Is(err, errStopHere) {
				t.Fatalf("first half on %v: %v", tc.from, err)
			}
			resumed := newTestLoopOn(6, tc.toV, tc.to)
			if _, err := LoadCheckpoint(ckpt, resumed); err != nil {
				t.Fatalf("load on %v: %v", tc.to, err)
			}
			if err := resumed.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			w := resumed.Method.Parameters()[0].Tensor
			if d, _ := w.Device(); d.IsCuda() != tc.to.IsCuda() {
				t.Errorf("weights on %v after resuming, want %v", d, tc.to)
			}
			got := w.MustTo(gotch.CPU, false).Float64Values()
			var maxDiff, maxRef float64
			for i := range want {
				maxDiff = math.Max(maxDiff, math.Abs(got[i]-want[i]))
				maxRef = math.Max(maxRef, math.Abs(want[i]))
			}
			t.Logf("%s: max |diff| / max |w| = %.3g against the CPU run", tc.name, maxDiff/maxRef)
			if !(maxDiff/maxRef <= 1e-5) {
				t.Errorf("%s: weights differ from the CPU run by %.3g relative (> 1e-5)", tc.name, maxDiff/maxRef)
			}
		})
	}
}
