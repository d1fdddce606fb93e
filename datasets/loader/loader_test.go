package loader

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/datasets"
)

// loaderData writes a synthetic dataset (5 classes x 12 images, 64-96
// pixels) once per test and returns it with all its items.
func loaderData(t *testing.T) (*datasets.Dataset, []datasets.Item) {
	t.Helper()
	dir := t.TempDir()
	if err := datasets.Synth(dir, 5, 12, 3); err != nil {
		t.Fatal(err)
	}
	d, err := datasets.Load(datasets.SynthName, dir)
	if err != nil {
		t.Fatal(err)
	}
	items := slices.Concat(d.Train, d.Val, d.Test)
	if len(items) != 60 {
		t.Fatalf("%d items, want 60", len(items))
	}
	return d, items
}

// reference loads the items in the given order one by one, without the
// loader: image k is tr applied to items[order[k]] with ItemRNG(seed,
// epoch, order[k]).
func reference(t *testing.T, d *datasets.Dataset, items []datasets.Item, order []int, tr preprocess.Transform, seed uint64, epoch int) ([]float32, []int64) {
	t.Helper()
	sz := 3 * tr.Size() * tr.Size()
	pix := make([]float32, len(order)*sz)
	labels := make([]int64, len(order))
	for k, idx := range order {
		img, err := preprocess.Open(d.File(items[idx]))
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Apply(img, ItemRNG(seed, epoch, idx), pix[k*sz:(k+1)*sz]); err != nil {
			t.Fatal(err)
		}
		labels[k] = int64(items[idx].Label)
	}
	return pix, labels
}

// drain reads every batch of l, closes it and returns the concatenated
// pixels and labels and the batch sizes.
func drain(t *testing.T, l *Loader) ([]float32, []int64, []int) {
	return drainRecycling(t, l, false)
}

// drainRecycling is drain, handing every batch back with Recycle after
// copying it if recycle is set.
func drainRecycling(t *testing.T, l *Loader, recycle bool) ([]float32, []int64, []int) {
	t.Helper()
	defer l.Close()
	var pix []float32
	var labels []int64
	var sizes []int
	for {
		b, err := l.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Labels) != b.N || len(b.Pixels)%max(b.N, 1) != 0 {
			t.Fatalf("batch with N=%d has %d labels and %d pixel values", b.N, len(b.Labels), len(b.Pixels))
		}
		pix = append(pix, b.Pixels...)
		labels = append(labels, b.Labels...)
		sizes = append(sizes, b.N)
		if recycle {
			l.Recycle(b)
		}
	}
	if _, err := l.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next after the end: %v, want io.EOF", err)
	}
	return pix, labels, sizes
}

// sameBits reports the first index where a and b differ bitwise, or -1.
func sameBits(a, b []float32) int {
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// settleGoroutines waits until at most base goroutines are running (for
// up to two minutes: exiting goroutines may wait long for CPU time on a
// loaded machine; goroutines that never exit fail it all the same).
func settleGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines running, want at most %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLoaderDeterministicAcrossWorkers(t *testing.T) {
	d, items := loaderData(t)
	tr := preprocess.Train(40, preprocess.TrainOptions{})
	const seed, epoch = 42, 3
	order := LoadOrder(len(items), true, seed, epoch)
	wantPix, wantLabels := reference(t, d, items, order, tr, seed, epoch)
	for _, c := range []struct {
		workers int
		recycle bool
	}{{1, false}, {2, false}, {8, false}, {2, true}, {8, true}} {
		workers := c.workers
		l, err := New(d, items, Options{Transform: tr, BatchSize: 7, Workers: workers, Shuffle: true, Seed: seed, Epoch: epoch})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(l.Order(), order) {
			t.Fatalf("workers=%d: Order() differs from LoadOrder", workers)
		}
		pix, labels, sizes := drainRecycling(t, l, c.recycle)
		if i := sameBits(pix, wantPix); i >= 0 {
			t.Errorf("workers=%d: pixels differ from the sequential reference at value %d (image %d)", workers, i, i/(3*40*40))
		}
		if !slices.Equal(labels, wantLabels) {
			t.Errorf("workers=%d: labels %v, want %v", workers, labels, wantLabels)
		}
		if want := []int{7, 7, 7, 7, 7, 7, 7, 7, 4}; !slices.Equal(sizes, want) {
			t.Errorf("workers=%d: batch sizes %v, want %v", workers, sizes, want)
		}
	}
}

func TestLoaderListOrder(t *testing.T) {
	d, items := loaderData(t)
	tr := preprocess.Test(32)
	identity := make([]int, len(items))
	for i := range identity {
		identity[i] = i
	}
	wantPix, wantLabels := reference(t, d, items, identity, tr, 0, 0)
	var progress [][2]int
	l, err := New(d, items, Options{Transform: tr, BatchSize: 16, Workers: 4,
		Progress: func(done, total int) { progress = append(progress, [2]int{done, total}) }})
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 60 || l.Batches() != 4 {
		t.Errorf("Len %d, Batches %d; want 60, 4", l.Len(), l.Batches())
	}
	if !slices.Equal(l.Order(), identity) {
		t.Errorf("Order() = %v, want the list order", l.Order())
	}
	pix, labels, sizes := drain(t, l)
	if i := sameBits(pix, wantPix); i >= 0 {
		t.Errorf("pixels differ from the transform of the items in list order at value %d", i)
	}
	if !slices.Equal(labels, wantLabels) {
		t.Errorf("labels %v, want the items' %v", labels, wantLabels)
	}
	if want := []int{16, 16, 16, 12}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes %v, want %v", sizes, want)
	}
	if want := [][2]int{{16, 60}, {32, 60}, {48, 60}, {60, 60}}; !slices.Equal(progress, want) {
		t.Errorf("progress calls %v, want %v", progress, want)
	}
}

func TestLoadOrder(t *testing.T) {
	const n = 50
	isPerm := func(o []int) bool {
		s := slices.Clone(o)
		slices.Sort(s)
		for i, v := range s {
			if v != i {
				return false
			}
		}
		return len(s) == n
	}
	base := LoadOrder(n, true, 7, 0)
	if !isPerm(base) {
		t.Fatalf("not a permutation of 0..%d: %v", n-1, base)
	}
	if slices.IsSorted(base) {
		t.Errorf("shuffled order is sorted")
	}
	if !slices.Equal(base, LoadOrder(n, true, 7, 0)) {
		t.Errorf("same seed and epoch give different orders")
	}
	for _, c := range []struct {
		seed  uint64
		epoch int
	}{{7, 1}, {7, 2}, {8, 0}} {
		o := LoadOrder(n, true, c.seed, c.epoch)
		if !isPerm(o) {
			t.Errorf("seed %d epoch %d: not a permutation", c.seed, c.epoch)
		}
		if slices.Equal(o, base) {
			t.Errorf("seed %d epoch %d: same order as seed 7 epoch 0", c.seed, c.epoch)
		}
	}
	if o := LoadOrder(5, false, 7, 3); !slices.Equal(o, []int{0, 1, 2, 3, 4}) {
		t.Errorf("unshuffled order %v", o)
	}
	// Regression pin: the order for a seed must not change between
	// versions (runs and caches record seeds, not orders).
	if o, want := LoadOrder(10, true, 1, 0), pinnedOrder; !slices.Equal(o, want) {
		t.Errorf("LoadOrder(10, true, 1, 0) = %#v, was %#v", o, want)
	}
}

// pinnedOrder is LoadOrder(10, true, 1, 0) as first implemented.
var pinnedOrder = []int{3, 6, 9, 7, 8, 2, 1, 4, 0, 5}

func TestLoaderEpochsChangeAugmentation(t *testing.T) {
	d, items := loaderData(t)
	items = items[:10]
	tr := preprocess.Train(32, preprocess.TrainOptions{})
	load := func(epoch int) ([]float32, []int64, []int) {
		l, err := New(d, items, Options{Transform: tr, BatchSize: 4, Workers: 2, Shuffle: true, Seed: 5, Epoch: epoch})
		if err != nil {
			t.Fatal(err)
		}
		order := l.Order()
		pix, labels, _ := drain(t, l)
		return pix, labels, order
	}
	p0, l0, o0 := load(0)
	p1, l1, o1 := load(1)
	if slices.Equal(o0, o1) {
		t.Errorf("epochs 0 and 1 have the same order %v", o0)
	}
	// Put both epochs back in item order and compare each item's views.
	sz := 3 * 32 * 32
	byItem := func(p []float32, labels []int64, order []int) ([][]float32, []int64) {
		out := make([][]float32, len(order))
		lab := make([]int64, len(order))
		for k, idx := range order {
			out[idx] = p[k*sz : (k+1)*sz]
			lab[idx] = labels[k]
		}
		return out, lab
	}
	v0, lab0 := byItem(p0, l0, o0)
	v1, lab1 := byItem(p1, l1, o1)
	for i := range items {
		if lab0[i] != int64(items[i].Label) || lab1[i] != int64(items[i].Label) {
			t.Errorf("item %d: labels %d and %d, want %d", i, lab0[i], lab1[i], items[i].Label)
		}
		if sameBits(v0[i], v1[i]) < 0 {
			t.Errorf("item %d: same augmented view in epochs 0 and 1", i)
		}
	}
}

func TestLoaderDropLast(t *testing.T) {
	d, items := loaderData(t)
	for _, c := range []struct {
		n, bs     int
		dropLast  bool
		wantSizes []int
		wantLen   int
	}{
		{60, 7, true, []int{7, 7, 7, 7, 7, 7, 7, 7}, 56},
		{60, 7, false, []int{7, 7, 7, 7, 7, 7, 7, 7, 4}, 60},
		{60, 20, true, []int{20, 20, 20}, 60},
		{5, 7, true, []int{5}, 5}, // never drops everything
	} {
		l, err := New(d, items[:c.n], Options{Transform: preprocess.Test(8), BatchSize: c.bs, Workers: 3, Shuffle: true, Seed: 1, DropLast: c.dropLast})
		if err != nil {
			t.Fatal(err)
		}
		order := l.Order()
		if l.Len() != c.wantLen || l.Batches() != len(c.wantSizes) || len(order) != c.wantLen {
			t.Errorf("n=%d bs=%d drop=%v: Len %d, Batches %d, len(Order) %d; want %d, %d, %d", c.n, c.bs, c.dropLast, l.Len(), l.Batches(), len(order), c.wantLen, len(c.wantSizes), c.wantLen)
		}
		_, labels, sizes := drain(t, l)
		if !slices.Equal(sizes, c.wantSizes) {
			t.Errorf("n=%d bs=%d drop=%v: sizes %v, want %v", c.n, c.bs, c.dropLast, sizes, c.wantSizes)
		}
		// The kept items are the first Len of the shuffled order.
		full := LoadOrder(c.n, true, 1, 0)
		for k, idx := range full[:c.wantLen] {
			if k < len(labels) && labels[k] != int64(items[idx].Label) {
				t.Errorf("n=%d bs=%d drop=%v: label %d is %d, want item %d's %d", c.n, c.bs, c.dropLast, k, labels[k], idx, items[idx].Label)
				break
			}
		}
	}
}

// spoil makes two of the items bad: item 13's file is truncated and item
// 40's is removed. It returns their paths.
func spoil(t *testing.T, d *datasets.Dataset, items []datasets.Item) (truncated, missing string) {
	t.Helper()
	truncated, missing = d.File(items[13]), d.File(items[40])
	data, err := os.ReadFile(truncated)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, data[:len(data)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(missing); err != nil {
		t.Fatal(err)
	}
	return truncated, missing
}

func TestLoaderBadImageFails(t *testing.T) {
	d, items := loaderData(t)
	truncated, _ := spoil(t, d, items)
	for _, workers := range []int{1, 8} {
		base := runtime.NumGoroutine()
		l, err := New(d, items, Options{Transform: preprocess.Test(16), BatchSize: 5, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		good := 0
		for {
			_, err = l.Next()
			if err != nil {
				break
			}
			good++
		}
		// Item 13 is in batch 2 (items 10..14): batches 0 and 1 come
		// first, then the error, whatever happens to item 40.
		if good != 2 {
			t.Errorf("workers=%d: %d batches before the error, want 2", workers, good)
		}
		if err == nil || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), truncated) {
			t.Fatalf("workers=%d: error %v, want one naming %s", workers, err, truncated)
		}
		var ie *ImageError
		if !errors.As(err, &ie) || ie.Path != truncated {
			t.Errorf("workers=%d: error %v is not an *ImageError for %s", workers, err, truncated)
		}
		if _, err2 := l.Next(); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("workers=%d: Next after the error gave %v, want the same error", workers, err2)
		}
		// The loader stopped its goroutines without Close.
		settleGoroutines(t, base)
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestLoaderSkipBadImages(t *testing.T) {
	d, items := loaderData(t)
	truncated, missing := spoil(t, d, items)
	var want []int64
	for i, it := range items {
		if i != 13 && i != 40 {
			want = append(want, int64(it.Label))
		}
	}
	for _, c := range []struct {
		bs        int
		wantSizes []int
	}{
		// Batches keep their items: the bad ones leave gaps.
		{10, []int{10, 9, 10, 10, 9, 10}},
		// A batch of only a bad image is left out.
		{1, slices.Repeat([]int{1}, 58)},
	} {
		for _, workers := range []int{1, 8} {
			l, err := New(d, items, Options{Transform: preprocess.Test(16), BatchSize: c.bs, Workers: workers, SkipBadImages: true})
			if err != nil {
				t.Fatal(err)
			}
			_, labels, sizes := drain(t, l)
			if !slices.Equal(sizes, c.wantSizes) {
				t.Errorf("bs=%d workers=%d: sizes %v, want %v", c.bs, workers, sizes, c.wantSizes)
			}
			if !slices.Equal(labels, want) {
				t.Errorf("bs=%d workers=%d: labels %v, want %v", c.bs, workers, labels, want)
			}
			bad := l.Bad()
			if bad.Count != 2 || len(bad.First) != 2 ||
				!strings.Contains(bad.First[0], truncated) || !strings.Contains(bad.First[1], missing) {
				t.Errorf("bs=%d workers=%d: Bad() = %+v, want the truncated %s then the missing %s", c.bs, workers, bad, truncated, missing)
			}
		}
	}
}

func TestLoaderCustomOpen(t *testing.T) {
	d := &datasets.Dataset{ImageDir: t.TempDir()} // no files: Open does not read them
	var items []datasets.Item
	for i := range 9 {
		items = append(items, datasets.Item{Path: fmt.Sprintf("c/%d.jpg", i), Label: i % 3})
	}
	broken := d.File(items[4])
	open := func(path string) (*preprocess.Image, error) {
		if path == broken {
			return nil, errors.New("no such picture")
		}
		m := preprocess.NewImage(10, 7)
		for i := range m.Pix {
			m.Pix[i] = 128
		}
		return m, nil
	}
	l, err := New(d, items, Options{Transform: preprocess.Test(4), BatchSize: 4, Workers: 3, Open: open, SkipBadImages: true})
	if err != nil {
		t.Fatal(err)
	}
	pix, labels, sizes := drain(t, l)
	if want := []int{4, 3, 1}; !slices.Equal(sizes, want) {
		t.Errorf("sizes %v, want %v", sizes, want)
	}
	if want := []int64{0, 1, 2, 0, 2, 0, 1, 2}; !slices.Equal(labels, want) {
		t.Errorf("labels %v, want %v", labels, want)
	}
	// A uniform grey image stays 128 through the resize; each channel
	// plane is then (128/255 - mean) / std in float32.
	mean := [3]float32{preprocess.MeanR, preprocess.MeanG, preprocess.MeanB}
	std := [3]float32{preprocess.StdR, preprocess.StdG, preprocess.StdB}
	for i, v := range pix {
		c := i / 16 % 3
		if want := (float32(128)/255 - mean[c]) / std[c]; v != want {
			t.Fatalf("value %d (channel %d) is %v, want %v", i, c, v, want)
		}
	}
	if b := l.Bad(); b.Count != 1 || len(b.First) != 1 || b.First[0] != broken+": no such picture" {
		t.Errorf("Bad() = %+v, want the broken %s", b, broken)
	}
}

func TestLoaderTransformFailureIsFatal(t *testing.T) {
	d, items := loaderData(t)
	// Invalid options make the train transform fail on every image; that
	// is not a bad image, so skipping does not hide it.
	tr := preprocess.Train(16, preprocess.TrainOptions{Scale: [2]float64{0.5, 2}})
	l, err := New(d, items, Options{Transform: tr, BatchSize: 4, Workers: 2, SkipBadImages: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = l.Next()
	if err == nil || !strings.Contains(err.Error(), d.File(items[0])) || !strings.Contains(err.Error(), "scale") {
		t.Errorf("error %v, want the transform's error naming %s", err, d.File(items[0]))
	}
	if l.Bad().Count != 0 {
		t.Errorf("transform failures counted as bad images: %+v", l.Bad())
	}
}

func TestLoaderRecycle(t *testing.T) {
	d, items := loaderData(t)
	l, err := New(d, items, Options{Transform: preprocess.Test(8), BatchSize: 4, Workers: 2, Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	first, err := l.Next()
	if err != nil {
		t.Fatal(err)
	}
	mem := &first.Pixels[0]
	l.Recycle(first)
	l.Recycle(&Batch{Pixels: make([]float32, 3), Labels: make([]int64, 4)}) // too small: ignored
	// With one batch in flight, batch 1 may already have been started
	// in fresh memory; batch 2 is filled in the recycled one.
	reused := false
	for range 2 {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Pixels) != 4*3*8*8 {
			t.Fatalf("batch of %d values, want %d", len(b.Pixels), 4*3*8*8)
		}
		reused = reused || &b.Pixels[0] == mem
	}
	if !reused {
		t.Errorf("the recycled batch's memory was not reused")
	}
}

func TestLoaderClose(t *testing.T) {
	d, items := loaderData(t)
	items = slices.Concat(items, items, items, items) // 240 items
	opt := Options{Transform: preprocess.Train(32, preprocess.TrainOptions{}), BatchSize: 4, Workers: 8}

	t.Run("after one batch", func(t *testing.T) {
		base := runtime.NumGoroutine()
		l, err := New(d, items, opt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Next(); err != nil {
			t.Fatal(err)
		}
		if n := runtime.NumGoroutine(); n < base+opt.Workers {
			t.Fatalf("%d goroutines while loading, want at least %d", n, base+opt.Workers)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		settleGoroutines(t, base)
		if _, err := l.Next(); !errors.Is(err, ErrLoaderClosed) {
			t.Errorf("Next after Close: %v, want ErrLoaderClosed", err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})

	t.Run("before any batch", func(t *testing.T) {
		base := runtime.NumGoroutine()
		l, err := New(d, items, opt)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		settleGoroutines(t, base)
	})

	t.Run("while Next waits", func(t *testing.T) {
		base := runtime.NumGoroutine()
		o := opt
		started := make(chan struct{})
		var once sync.Once
		// Workers hang on their first item until the loader stops.
		o.testHook = func(l *Loader, batch int) {
			once.Do(func() { close(started) })
			<-l.quit
		}
		l, err := New(d, items, o)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			<-started
			time.Sleep(20 * time.Millisecond)
			l.Close()
		}()
		if _, err := l.Next(); !errors.Is(err, ErrLoaderClosed) {
			t.Errorf("Next interrupted by Close: %v, want ErrLoaderClosed", err)
		}
		l.Close()
		settleGoroutines(t, base)
	})

	t.Run("after the end", func(t *testing.T) {
		base := runtime.NumGoroutine()
		l, err := New(d, items[:20], opt)
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := l.Next(); err != nil {
				break
			}
		}
		// EOF alone releases the goroutines.
		settleGoroutines(t, base)
		l.Close()
	})
}

// TestLoaderPrefetchBound checks that at most Prefetch batches are in
// flight, and that the workers do run that far ahead. Before each Next the
// consumer waits until the workers have started every batch the bound
// allows (it used to sleep 15 ms and hope they had, which a loaded machine
// did not always grant); the slow variant makes the workers take 30 ms an
// item, as on such a machine.
func TestLoaderPrefetchBound(t *testing.T) {
	d, items := loaderData(t)
	for _, tc := range []struct {
		prefetch int
		slow     time.Duration
	}{{1, 0}, {2, 0}, {3, 0}, {2, 30 * time.Millisecond}} {
		var worst, started atomic.Int64
		started.Store(-1)
		opt := Options{Transform: preprocess.Test(16), BatchSize: 4, Workers: 8, Prefetch: tc.prefetch,
			// Batches in flight when a worker starts on batch b: b and
			// every batch since the last one Next took.
			testHook: func(l *Loader, batch int) {
				inFlight := int64(batch) - l.taken.Load() + 1
				atomicMax(&worst, inFlight)
				atomicMax(&started, int64(batch))
				time.Sleep(tc.slow)
			}}
		l, err := New(d, items, opt)
		if err != nil {
			t.Fatal(err)
		}
		const batches = 15
		n := 0
		for {
			// Let the workers run as far ahead as allowed: start batch
			// n + prefetch - 1 (n is the number Next has taken).
			want := int64(min(n+tc.prefetch-1, batches-1))
			waitFor(t, func() bool { return started.Load() >= want }, "workers to start batch %d", want)
			if _, err := l.Next(); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
				break
			}
			n++
		}
		l.Close()
		if n != batches {
			t.Errorf("prefetch %d: %d batches, want %d", tc.prefetch, n, batches)
		}
		if w := worst.Load(); w != int64(tc.prefetch) {
			t.Errorf("prefetch %d (items taking %v): at most %d batches in flight, want exactly %d", tc.prefetch, tc.slow, w, tc.prefetch)
		}
	}
}

// atomicMax raises a to v if v is larger.
func atomicMax(a *atomic.Int64, v int64) {
	for {
		w := a.Load()
		if v <= w || a.CompareAndSwap(w, v) {
			return
		}
	}
}

// waitFor polls cond until it holds. It fails only after two minutes: the
// conditions it is used for hold once the goroutines involved get CPU
// time, however loaded the machine.
func waitFor(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for "+format, args...)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNewLoaderOptions(t *testing.T) {
	d := &datasets.Dataset{ImageDir: t.TempDir()}
	items := []datasets.Item{{Path: "a.jpg"}}
	tr := preprocess.Test(8)
	for _, c := range []struct {
		name string
		d    *datasets.Dataset
		opt  Options
		want string // error substring, "" for success
	}{
		{"nil dataset", nil, Options{Transform: tr, BatchSize: 1}, "nil dataset"},
		{"no transform", d, Options{BatchSize: 1}, "no Transform"},
		{"bad size", d, Options{Transform: preprocess.Test(0), BatchSize: 1}, "transform size 0"},
		{"bad batch", d, Options{Transform: tr}, "batch size 0"},
		{"ok", d, Options{Transform: tr, BatchSize: 1}, ""},
	} {
		l, err := New(c.d, items, c.opt)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			} else {
				l.Close()
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	// Defaults: NumCPU workers, 2*Workers/BatchSize + 2 batches in flight.
	l, err := New(d, items, Options{Transform: tr, BatchSize: 2, Workers: 8})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if l.opt.Prefetch != 10 {
		t.Errorf("default prefetch %d for 8 workers and batches of 2, want 10", l.opt.Prefetch)
	}
	l, err = New(d, nil, Options{Transform: tr, BatchSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if l.opt.Workers != runtime.NumCPU() {
		t.Errorf("default workers %d, want %d", l.opt.Workers, runtime.NumCPU())
	}
	// No items: no batches.
	if _, err := l.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("empty loader: %v, want io.EOF", err)
	}
	l.Close()
}
