package loader

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/datasets"
)

// Batch is a batch of preprocessed images. It has the same fields as
// train.ImageBatch, so a *Batch converts to a *train.ImageBatch.
type Batch struct {
	// Pixels holds N images of 3×R×R float32 values each (CHW, channel
	// planes R, G, B), R being the transform's Size.
	Pixels []float32
	// Labels holds the N labels.
	Labels []int64
	// N is the number of images in the batch.
	N int
}

// LoaderOptions configures NewLoader.
type Options struct {
	// Transform turns each decoded image into the batch's pixels, e.g.
	// preprocess.Test(224) or preprocess.Train(224, opts). Required.
	Transform preprocess.Transform
	// BatchSize is the number of images per batch (the last batch may be
	// smaller). Required, > 0.
	BatchSize int
	// Open reads and decodes the image file at path; nil means
	// preprocess.Open. An error from it marks the image as bad. It is
	// called from several goroutines at once.
	Open func(path string) (*preprocess.Image, error)
	// Order is when images are converted to RGB: preprocess.OrderDassl
	// (the zero value; right after decoding, as Dassl's loader does for
	// CoOp and CLIP-Adapter: the dataset pipeline) or
	// preprocess.OrderOpenAI (after resizing and cropping in the image's
	// own mode, as OpenAI's preprocess does: the clip commands). With
	// OrderOpenAI images are read by OpenSource instead of Open.
	Order preprocess.Order
	// OpenSource reads and decodes the image file at path into its own
	// mode, for OrderOpenAI; nil means preprocess.OpenSource.
	OpenSource func(path string) (*preprocess.Source, error)
	// Workers is the number of images decoded and transformed at once;
	// <= 0 means runtime.NumCPU().
	Workers int
	// Prefetch is the most batches in flight: being filled by the workers
	// or ready and not yet returned by Next. It bounds the loader's memory
	// to about Prefetch*BatchSize images (plus the decoded images the
	// workers hold). <= 0 means 2*Workers/BatchSize + 2.
	Prefetch int
	// Shuffle loads the items in a random order drawn from Seed and Epoch
	// only; otherwise they come in list order.
	Shuffle bool
	// DropLast drops the last batch when it is smaller than BatchSize,
	// unless that would leave no batch at all (the rule of Dassl's
	// training loader, used by CoOp and CLIP-Adapter).
	DropLast bool
	// Seed and Epoch determine the shuffle order and the random streams
	// of the transform; see ItemRNG. Use one loader per epoch with
	// Epoch = 0, 1, 2, ... for a new order and new augmentations each
	// epoch.
	Seed  uint64
	Epoch int
	// SkipBadImages makes a missing or undecodable image be skipped and
	// counted (see Loader.Bad) instead of stopping the loader with an
	// error. A batch keeps only its good images, so it can be smaller
	// than BatchSize; a batch whose images are all bad is left out. The
	// other batches are unchanged, so the output stays deterministic.
	SkipBadImages bool
	// Progress, if set, is called by Next after each batch with the number
	// of items gone through (bad ones included) and Len.
	Progress func(done, total int)

	// testHook, if set, is called by a worker before it works on an item
	// of batch number batch. Tests only.
	testHook func(l *Loader, batch int)
}

// ImageError is a loader's error about one image: it could not be read or
// decoded, or the transform failed on it.
type ImageError struct {
	// Path is the image file.
	Path string
	// Err is the underlying error.
	Err error
}

// Error returns the underlying error's message, prefixed with the path
// unless it names it already.
func (e *ImageError) Error() string {
	msg := e.Err.Error()
	if strings.Contains(msg, e.Path) {
		return msg
	}
	return e.Path + ": " + msg
}

// Unwrap returns the underlying error.
func (e *ImageError) Unwrap() error { return e.Err }

// ErrLoaderClosed is returned by Next after Close.
var ErrLoaderClosed = errors.New("datasets: loader closed")

// Loader decodes and transforms a list of items in parallel and returns
// them as batches, in a deterministic order. Its output depends only on
// the items, the files and the options other than Workers, Prefetch and
// Progress: the number of workers and their scheduling do not change a
// bit of it.
//
// Next and Close may be called from different goroutines, Next from one
// goroutine at a time.
type Loader struct {
	d       *datasets.Dataset
	items   []datasets.Item
	opt     Options
	order   []int // item indices in load order
	n       int   // items loaded (DropLast applied)
	batches int
	imgLen  int // float32 values per image

	jobs  chan job
	queue chan *pending // batches in order, for Next
	sem   chan struct{} // one token per batch in flight
	spare chan *Batch   // recycled batch memory
	quit  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	// Owned by Next's goroutine.
	err  error // sticky: io.EOF, ErrLoaderClosed or the failure
	done int
	bad  datasets.BadImages

	taken atomic.Int64 // batches Next has taken off the queue
}

// pending is a batch being filled.
type pending struct {
	index  int
	pos    int // position in order of its first item
	pixels []float32
	labels []int64
	errs   []error // per slot: nil or an *ImageError
	fatal  []bool  // per slot: the error is not a bad image but a transform failure
	left   atomic.Int32
	ready  chan struct{}
}

// job is one item to load into one slot of a batch.
type job struct {
	p    *pending
	slot int
}

// NewLoader starts loading items (paths relative to d.ImageDir, see
// Dataset.File) with the options o. The caller must call Close when done
// with the loader, unless Next has returned an error (io.EOF included).
func New(d *datasets.Dataset, items []datasets.Item, o Options) (*Loader, error) {
	if d == nil {
		return nil, errors.New("datasets: NewLoader: nil dataset")
	}
	if o.Transform == nil {
		return nil, errors.New("datasets: NewLoader: no Transform")
	}
	size := o.Transform.Size()
	if size <= 0 {
		return nil, fmt.Errorf("datasets: NewLoader: transform size %d must be positive", size)
	}
	if o.BatchSize <= 0 {
		return nil, fmt.Errorf("datasets: NewLoader: batch size %d must be positive", o.BatchSize)
	}
	if o.Open == nil {
		o.Open = preprocess.Open
	}
	if o.OpenSource == nil {
		o.OpenSource = preprocess.OpenSource
	}
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if o.Prefetch <= 0 {
		o.Prefetch = 2*o.Workers/o.BatchSize + 2
	}

	l := &Loader{
		d:      d,
		items:  slices.Clone(items),
		opt:    o,
		order:  LoadOrder(len(items), o.Shuffle, o.Seed, o.Epoch),
		n:      len(items),
		imgLen: 3 * size * size,
		jobs:   make(chan job),
		queue:  make(chan *pending, o.Prefetch),
		sem:    make(chan struct{}, o.Prefetch),
		spare:  make(chan *Batch, o.Prefetch+1),
		quit:   make(chan struct{}),
	}
	if o.DropLast && l.n >= o.BatchSize {
		l.n -= l.n % o.BatchSize
	}
	l.batches = (l.n + o.BatchSize - 1) / o.BatchSize

	l.wg.Add(1 + o.Workers)
	go l.produce()
	for range o.Workers {
		go l.work()
	}
	return l, nil
}

// Len returns the number of items the loader goes through (all of them,
// unless DropLast drops some).
func (l *Loader) Len() int { return l.n }

// Batches returns the number of batches Next returns, at most: with
// SkipBadImages, batches whose images are all bad are left out.
func (l *Loader) Batches() int { return l.batches }

// Order returns the indices (into the loader's items) of the items in the
// order they are loaded, Len of them.
func (l *Loader) Order() []int { return append([]int(nil), l.order[:l.n]...) }

// Bad returns the images skipped so far with SkipBadImages, in load order.
// Call it from Next's goroutine, e.g. after Next returned io.EOF.
func (l *Loader) Bad() datasets.BadImages {
	return datasets.BadImages{Count: l.bad.Count, First: append([]string(nil), l.bad.First...)}
}

// Next returns the next batch, or io.EOF after the last one. A bad image
// (without SkipBadImages) or a transform failure ends the loading: Next
// returns an error naming the image (an *ImageError, wrapped), after the
// batches before the one that holds it, and the same error from then on.
// After Close, Next returns ErrLoaderClosed. The batch belongs to the
// caller, who may hand it back with Recycle when done with it.
func (l *Loader) Next() (*Batch, error) {
	if l.err == nil {
		select {
		case <-l.quit:
			l.err = ErrLoaderClosed
		default:
		}
	}
	for l.err == nil {
		var p *pending
		var ok bool
		select {
		case p, ok = <-l.queue:
		case <-l.quit:
			l.err = ErrLoaderClosed
			return nil, l.err
		}
		if !ok {
			l.wg.Wait() // the goroutines are on their way out
			l.err = io.EOF
			return nil, l.err
		}
		select {
		case <-p.ready:
		case <-l.quit:
			l.err = ErrLoaderClosed
			return nil, l.err
		}
		l.taken.Add(1)
		<-l.sem
		b, err := l.finish(p)
		if err != nil {
			l.err = err
			l.stop()
			return nil, err
		}
		if l.opt.Progress != nil {
			l.opt.Progress(l.done, l.n)
		}
		if b != nil {
			return b, nil
		}
		// All of the batch's images were bad: go on with the next one.
	}
	return nil, l.err
}

// finish turns a filled batch into the caller's Batch, handling its bad
// images; it returns a nil Batch if none is left.
func (l *Loader) finish(p *pending) (*Batch, error) {
	n := len(p.labels)
	l.done += n
	kept := 0
	for s := range n {
		if err := p.errs[s]; err != nil {
			if p.fatal[s] || !l.opt.SkipBadImages {
				return nil, fmt.Errorf("datasets: load batch %d: %w", p.index, err)
			}
			ie := err.(*ImageError)
			l.bad.Add(ie.Path, ie.Err)
			continue
		}
		if kept != s {
			copy(p.pixels[kept*l.imgLen:(kept+1)*l.imgLen], p.pixels[s*l.imgLen:(s+1)*l.imgLen])
			p.labels[kept] = p.labels[s]
		}
		kept++
	}
	if kept == 0 {
		return nil, nil
	}
	return &Batch{Pixels: p.pixels[:kept*l.imgLen], Labels: p.labels[:kept], N: kept}, nil
}

// Recycle hands the memory of a batch returned by Next back to the loader,
// which fills later batches in it instead of allocating new ones; this
// saves the allocation and the page faults of a fresh batch. The caller
// must not use b afterwards. Recycling is optional, and b is ignored if
// it is nil or too small; it may be called from any goroutine.
func (l *Loader) Recycle(b *Batch) {
	if b == nil || cap(b.Pixels) < l.opt.BatchSize*l.imgLen || cap(b.Labels) < l.opt.BatchSize {
		return
	}
	select {
	case l.spare <- b:
	default: // enough spares already
	}
}

// Close stops the loader: the workers finish the image they are working
// on and exit, and Close returns once they have. It may be called more
// than once, and concurrently with Next.
func (l *Loader) Close() error {
	l.stop()
	return nil
}

func (l *Loader) stop() {
	l.once.Do(func() { close(l.quit) })
	l.wg.Wait()
}

// produce hands the items to the workers, batch by batch, holding at most
// Prefetch batches in flight.
func (l *Loader) produce() {
	defer l.wg.Done()
	defer close(l.jobs)
	defer close(l.queue)
	bs := l.opt.BatchSize
	for b := range l.batches {
		select {
		case l.sem <- struct{}{}:
		case <-l.quit:
			return
		}
		pos := b * bs
		n := min(bs, l.n-pos)
		p := &pending{
			index: b,
			pos:   pos,
			errs:  make([]error, n),
			fatal: make([]bool, n),
			ready: make(chan struct{}),
		}
		// Every slot is written in full (or dropped), so recycled memory
		// needs no clearing.
		select {
		case r := <-l.spare:
			p.pixels, p.labels = r.Pixels[:n*l.imgLen], r.Labels[:n]
		default:
			p.pixels, p.labels = make([]float32, n*l.imgLen), make([]int64, n)
		}
		p.left.Store(int32(n))
		// The queue holds at most Prefetch batches, as many as there are
		// tokens, so this does not block.
		l.queue <- p
		for s := range n {
			select {
			case l.jobs <- job{p, s}:
			case <-l.quit:
				return
			}
		}
	}
}

// work loads items until the jobs run out or the loader stops.
func (l *Loader) work() {
	defer l.wg.Done()
	for {
		select {
		case j, ok := <-l.jobs:
			if !ok {
				return
			}
			l.load(j)
		case <-l.quit:
			return
		}
	}
}

// load decodes and transforms one item into its slot.
func (l *Loader) load(j job) {
	p, s := j.p, j.slot
	if h := l.opt.testHook; h != nil {
		h(l, p.index)
	}
	idx := l.order[p.pos+s]
	it := l.items[idx]
	path := l.d.File(it)
	p.labels[s] = int64(it.Label)
	dst := p.pixels[s*l.imgLen : (s+1)*l.imgLen]
	if fatal, err := l.decodeInto(path, ItemRNG(l.opt.Seed, l.opt.Epoch, idx), dst); err != nil {
		p.errs[s] = &ImageError{Path: path, Err: err}
		p.fatal[s] = fatal
	}
	if p.left.Add(-1) == 0 {
		close(p.ready)
	}
}

// decodeInto reads the image at path and transforms it into dst in the
// loader's order. fatal is false for errors reading or decoding the image
// (a bad image), true for transform failures.
func (l *Loader) decodeInto(path string, rng *rand.Rand, dst []float32) (fatal bool, err error) {
	if l.opt.Order == preprocess.OrderOpenAI {
		src, err := l.opt.OpenSource(path)
		if err != nil {
			return false, err
		}
		return true, preprocess.ApplyOrdered(l.opt.Transform, src, preprocess.OrderOpenAI, rng, dst)
	}
	img, err := l.opt.Open(path)
	if err != nil {
		return false, err
	}
	return true, l.opt.Transform.Apply(img, rng, dst)
}

// Stream tags keep the shuffle's and the items' random streams apart.
const (
	itemStreamTag    = 0x9e3779b97f4a7c15
	shuffleStreamTag = 0xd1b54a32d192ed03
)

// mix64 is SplitMix64's finalizer, a bijective scrambling of 64 bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// ItemRNG returns the random generator a Loader gives the transform for
// the item at index (in the loader's items) in epoch epoch: a PCG seeded
// with (mix(seed ^ mix(epoch ^ tag)), index). It depends on nothing else,
// so an item's augmentation does not depend on the shuffle order or the
// workers, and can be reproduced on its own.
func ItemRNG(seed uint64, epoch, index int) *rand.Rand {
	s := mix64(seed ^ mix64(uint64(epoch)^itemStreamTag))
	return rand.New(rand.NewPCG(s, uint64(index)))
}

// LoadOrder returns the order in which a Loader with n items loads them:
// 0, 1, ..., n-1 without shuffle, else a permutation drawn (Fisher-Yates,
// math/rand/v2's Shuffle) from a PCG seeded with (mix(seed ^ tag),
// mix(epoch)).
func LoadOrder(n int, shuffle bool, seed uint64, epoch int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	if shuffle {
		rng := rand.New(rand.NewPCG(mix64(seed^shuffleStreamTag), mix64(uint64(epoch))))
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	return order
}
