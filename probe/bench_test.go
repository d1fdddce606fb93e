package probe

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
)

// clipLike returns perClass float32 rows per class of synthetic
// CLIP-like features on device: a common offset shared by all images,
// a class direction and per-image noise.
func clipLike(b testing.TB, rng *rand.Rand, means [][]float32, offset []float32, perClass int, device gotch.Device) *train.Features {
	b.Helper()
	k, d := len(means), len(offset)
	x := make([]float32, 0, k*perClass*d)
	y := make([]int64, 0, k*perClass)
	for i := 0; i < perClass; i++ {
		for c := 0; c < k; c++ {
			for j := 0; j < d; j++ {
				x = append(x, offset[j]+means[c][j]+float32(rng.NormFloat64())*0.5)
			}
			y = append(y, int64(c))
		}
	}
	xt := ts.MustOfSlice(x).MustView([]int64{int64(len(y)), int64(d)}, true).MustTo(device, true)
	f := &train.Features{X: xt, Labels: ts.MustOfSlice(y).MustTo(device, true), Y: y}
	b.Cleanup(f.Drop)
	return f
}

// benchData is 16 shots (1600 x 1024 training features, 100 classes) and
// 4 validation shots per class, like CoOp's 16-shot ImageNet-sized splits
// at a tenth of the classes.
func benchData(b testing.TB, device gotch.Device) (trn, val *train.Features) {
	const k, d = 100, 1024
	rng := rand.New(rand.NewPCG(2024, 6))
	offset := make([]float32, d)
	for j := range offset {
		offset[j] = float32(rng.NormFloat64()) * 0.3
	}
	means := make([][]float32, k)
	for c := range means {
		means[c] = make([]float32, d)
		for j := range means[c] {
			means[c][j] = float32(rng.NormFloat64()) * 0.085
		}
	}
	return clipLike(b, rng, means, offset, 16, device), clipLike(b, rng, means, offset, 4, device)
}

func benchDevice(b *testing.B) gotch.Device {
	dev, err := torch.ParseDevice("auto")
	if err != nil {
		b.Fatal(err)
	}
	return dev
}

// BenchmarkFit runs the whole default search (7 coarse fits, 8 rounds) on
// 1600 x 1024 features with 100 classes: L2-normalized features with warm
// and cold starts, and raw features (CoOp's lpclip) with warm starts.
func BenchmarkFit(b *testing.B) {
	lockThread(b)
	dev := benchDevice(b)
	trn, val := benchData(b, dev)
	for _, bc := range []struct {
		name            string
		normalize, cold bool
	}{
		{"normalized/warm", true, false},
		{"normalized/cold", true, true},
		{"raw/warm", false, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var iters, evals, fits int
			var c, acc float64
			for i := 0; i < b.N; i++ {
				o := DefaultOptions()
				o.Normalize, o.ColdStart = bc.normalize, bc.cold
				p := New(o)
				if err := p.Fit(context.Background(), trn, val); err != nil {
					b.Fatal(err)
				}
				c, acc = p.Chosen()
				for _, tr := range p.SearchLog() {
					if !tr.Reused {
						iters += tr.Iterations
						evals += tr.Evaluations
						fits++
					}
				}
				p.Drop()
			}
			b.ReportMetric(float64(fits)/float64(b.N), "fits/op")
			b.ReportMetric(float64(iters)/float64(b.N), "iters/op")
			b.ReportMetric(float64(evals)/float64(b.N), "evals/op")
			b.Logf("%s on %s: chose C=%.4g (val acc %.3f)", bc.name, torch.DeviceName(dev), c, acc)
		})
	}
}

// BenchmarkFitOneC is a single fit at C = 1 from zero on the same data.
func BenchmarkFitOneC(b *testing.B) {
	lockThread(b)
	dev := benchDevice(b)
	trn, _ := benchData(b, dev)
	iters := 0
	for i := 0; i < b.N; i++ {
		o := DefaultOptions()
		o.C = 1
		p := New(o)
		if err := p.Fit(context.Background(), trn, nil); err != nil {
			b.Fatal(err)
		}
		iters += p.SearchLog()[0].Iterations
		p.Drop()
	}
	b.ReportMetric(float64(iters)/float64(b.N), "iters/op")
}
