// Command encspeed is the Go half of the GPU encoder benchmark
// (bench/gpu/run.sh): images/s of clip.Model.EncodeImage alone, on a random
// fp32 input batch already on the device, as torch_speed.py's "model" mode
// measures PyTorch eager.
//
// Usage:
//
//	go run ./bench/gpu/encspeed -model FILE.pt [-device cuda] [-precision fp16] [-batch 256] [-iters 20]
//	                            [-at-once N] [-in X.npy -ref F.npy]
//
// Three warm-up batches run first; the timed batches are followed by a CUDA
// synchronisation. On the CPU, -at-once N encodes N batches at a time, each
// on one libtorch thread (torch.ForEachBatch, what the toolkit's image
// encoding does with N libtorch threads); the default, 1, encodes one
// batch at a time on all of libtorch's threads. With -in, the features of
// X.npy's rows are compared with PyTorch's (-ref) and the largest
// difference relative to the reference's largest magnitude is printed.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/internal/npy"
	"github.com/clipadapter/clipgo/internal/torch"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "encspeed:", err)
		os.Exit(1)
	}
}

func run() error {
	model := flag.String("model", "", "archive `file`")
	device := flag.String("device", "cuda", "device")
	precision := flag.String("precision", "fp16", "fp16 or fp32")
	batch := flag.Int("batch", 256, "images per batch")
	iters := flag.Int("iters", 20, "timed batches")
	in := flag.String("in", "", "input images .npy [N, 3, R, R] for the feature comparison")
	ref := flag.String("ref", "", "PyTorch features .npy of -in")
	atOnce := flag.Int("at-once", 1, "batches encoded at once on the CPU, one libtorch thread each")
	flag.Parse()
	runtime.LockOSThread()
	dev, err := torch.ParseDevice(*device)
	if err != nil {
		return err
	}
	prec, err := clip.ParsePrecision(*precision)
	if err != nil {
		return err
	}
	t0 := time.Now()
	m, err := clip.Load(*model, dev, clip.WithPrecision(prec))
	if err != nil {
		return err
	}
	defer m.Drop()
	load := time.Since(t0)
	r := int64(m.Config().ImageResolution)
	x, err := ts.Randn([]int64{int64(*batch), 3, r, r}, gotch.Float, dev)
	if err != nil {
		return torch.Err("random input", err)
	}
	sync := func() error {
		if dev.IsCuda() {
			return ts.CudaSynchronize()
		}
		return nil
	}
	step := func() error {
		f, err := m.EncodeImage(x)
		if err != nil {
			return err
		}
		f.MustDrop()
		return nil
	}
	threads, err := torch.NumThreads()
	if err != nil {
		return err
	}
	// steps runs n batches, *atOnce at a time.
	steps := func(n int) error {
		left := n
		return torch.ForEachBatch(*atOnce, threads,
			func() (int, bool, error) { left--; return left, left >= 0, nil },
			func(int) (struct{}, error) { return struct{}{}, step() },
			func(int, struct{}) error { return nil }, nil)
	}
	if err := steps(3 * max(*atOnce, 1)); err != nil {
		return err
	}
	if err := sync(); err != nil {
		return err
	}
	start := time.Now()
	if err := steps(*iters); err != nil {
		return err
	}
	if err := sync(); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	agree := ""
	if *in != "" {
		shape, data, err := npy.Read(*in)
		if err != nil {
			return err
		}
		dims := make([]int64, len(shape))
		for i, s := range shape {
			dims[i] = int64(s)
		}
		xin := ts.MustOfSlice(data).MustView(dims, true).MustTo(dev, true)
		f, err := m.EncodeImage(xin)
		if err != nil {
			return err
		}
		got, err := torch.Values[float32](f)
		if err != nil {
			return err
		}
		_, want, err := npy.Read(*ref)
		if err != nil {
			return err
		}
		if len(got) != len(want) {
			return fmt.Errorf("features: %d values, PyTorch %d", len(got), len(want))
		}
		var maxDiff, maxRef float64
		for i := range got {
			maxDiff = math.Max(maxDiff, math.Abs(float64(got[i])-float64(want[i])))
			maxRef = math.Max(maxRef, math.Abs(float64(want[i])))
		}
		agree = fmt.Sprintf("; features vs PyTorch: max |diff| / max |ref| = %.2e", maxDiff/maxRef)
	}
	if *atOnce > 1 {
		agree += fmt.Sprintf("; %d batches at once", *atOnce)
	}
	fmt.Printf("go: model %s %s batch %d: %.1f images/s, %.2f ms per batch (load %.1f s)%s\n",
		*model, *precision, *batch, float64(*iters**batch)/secs, 1000*secs/float64(*iters), load.Seconds(), agree)
	return nil
}
