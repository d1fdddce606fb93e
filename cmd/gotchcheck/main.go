// Command gotchcheck is a one-minute end-to-end check of the prepared gotch:
// it trains a small two-layer network on a synthetic three-class problem on
// the chosen device and reports the loss, accuracy and resident memory.
//
// Usage:
//
//	go run ./cmd/gotchcheck [-device cpu|cuda|auto] [-steps N]
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gotchcheck:", err)
		os.Exit(1)
	}
}

func run() error {
	deviceName := flag.String("device", "auto", "cpu, cuda, cuda:N or auto")
	steps := flag.Int("steps", 300, "training steps")
	flag.Parse()
	runtime.LockOSThread()

	device, err := torch.ParseDevice(*deviceName)
	if err != nil {
		return err
	}
	// Three Gaussian blobs in 2-D, one per class.
	const n, classes = 600, 3
	rng := rand.New(rand.NewPCG(1, 2))
	xs := make([]float32, 0, 2*n)
	ys := make([]int64, 0, n)
	for i := 0; i < n; i++ {
		c := i % classes
		angle := 2 * math.Pi * float64(c) / classes
		xs = append(xs, float32(2*math.Cos(angle)+0.5*rng.NormFloat64()), float32(2*math.Sin(angle)+0.5*rng.NormFloat64()))
		ys = append(ys, int64(c))
	}
	x := ts.MustOfSlice(xs).MustView([]int64{n, 2}, true).MustTo(device, true)
	y := ts.MustOfSlice(ys).MustTo(device, true)

	vs := nn.NewVarStore(device)
	root := vs.Root()
	l1 := nn.NewLinear(root.Sub("l1"), 2, 32, nn.DefaultLinearConfig())
	l2 := nn.NewLinear(root.Sub("l2"), 32, classes, nn.DefaultLinearConfig())
	opt, err := nn.DefaultAdamConfig().Build(vs, 1e-2)
	if err != nil {
		return torch.Err("build optimizer", err)
	}
	forward := func() *ts.Tensor {
		h := l1.Forward(x)
		a := h.MustRelu(true)
		out := l2.Forward(a)
		a.MustDrop()
		return out
	}
	fmt.Printf("gotchcheck: training a 2-32-%d network on %d points on %s\n", classes, n, torch.DeviceName(device))
	var first, last float64
	for step := 1; step <= *steps; step++ {
		logits := forward()
		loss := logits.CrossEntropyForLogits(y)
		logits.MustDrop()
		last = loss.Float64Values()[0]
		if step == 1 {
			first = last
		}
		if err := opt.BackwardStep(loss); err != nil {
			return torch.Err("optimizer step", err)
		}
		loss.MustDrop()
		if step%100 == 0 || step == 1 {
			fmt.Printf("  step %4d  loss %.4f\n", step, last)
		}
	}
	var acc float64
	if err := torch.NoGrad(func() error {
		logits := forward()
		pred := logits.MustArgmax([]int64{1}, false, true)
		correct := pred.MustEqTensor(y, true).MustSum(gotch.Float, true)
		acc = correct.Float64Values()[0] / n
		correct.MustDrop()
		return nil
	}); err != nil {
		return err
	}
	rss, _ := torch.ResidentBytes()
	fmt.Printf("gotchcheck: loss %.4f -> %.4f, train accuracy %.1f%%, resident memory %.0f MiB\n", first, last, 100*acc, float64(rss)/(1<<20))
	if acc < 0.9 || !(last < first) {
		return fmt.Errorf("training did not converge (accuracy %.1f%%): gotch or libtorch is broken", 100*acc)
	}
	fmt.Println("gotchcheck: OK")
	return nil
}
