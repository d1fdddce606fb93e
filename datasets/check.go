package datasets

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// BadImagesListed is how many problems BadImages keeps in First.
const BadImagesListed = 10

// BadImages counts images that could not be read (missing, truncated,
// undecodable) and keeps the first few, for a loader that skips bad images
// instead of failing, and for Check. Its zero value is ready to use; it is
// not safe for concurrent use.
type BadImages struct {
	// Count is the number of bad images seen.
	Count int
	// First describes the first BadImagesListed of them, "path: reason".
	First []string
}

// Add records that the image at path could not be read because of err.
func (b *BadImages) Add(path string, err error) {
	b.Count++
	if len(b.First) >= BadImagesListed {
		return
	}
	msg := err.Error()
	if !strings.Contains(msg, path) {
		msg = path + ": " + msg
	}
	b.First = append(b.First, msg)
}

// String summarises b in one line.
func (b *BadImages) String() string {
	if b.Count == 0 {
		return "no bad images"
	}
	s := fmt.Sprintf("%d bad image(s): %s", b.Count, strings.Join(b.First, "; "))
	if b.Count > len(b.First) {
		s += fmt.Sprintf("; and %d more", b.Count-len(b.First))
	}
	return s
}

// Err returns nil when there were no bad images, else an error carrying
// String's summary.
func (b *BadImages) Err() error {
	if b.Count == 0 {
		return nil
	}
	return errors.New(b.String())
}

// CheckOptions configures Check.
type CheckOptions struct {
	// Decode opens and fully decodes the image file at path. Required.
	Decode func(path string) error
	// Workers is the number of images decoded at once; <= 0 means
	// runtime.NumCPU().
	Workers int
	// Progress, if set, is called after each image with the number done
	// and the total, from one goroutine at a time.
	Progress func(done, total int)
	// OnBad, if set, is called for every bad image as it is found (in
	// completion order), from the same goroutine as Progress.
	OnBad func(path string, err error)
}

// Check decodes every image of d's train, val and test lists (each file
// once) with a bounded pool of workers and returns the problems found, in
// list order. The error is non-nil only when ctx is cancelled.
func Check(ctx context.Context, d *Dataset, opt CheckOptions) (*BadImages, error) {
	if opt.Decode == nil {
		return nil, errors.New("datasets.Check: no Decode function")
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	var paths []string
	seen := map[string]bool{}
	for _, l := range [][]Item{d.Train, d.Val, d.Test} {
		for _, it := range l {
			if !seen[it.Path] {
				seen[it.Path] = true
				paths = append(paths, it.Path)
			}
		}
	}
	type result struct {
		i   int
		err error
	}
	jobs := make(chan int)
	results := make(chan result, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				err := opt.Decode(d.File(Item{Path: paths[i]}))
				results <- result{i, err}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for i := range paths {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	var bad []result
	done := 0
	for r := range results {
		done++
		if r.err != nil {
			bad = append(bad, r)
			if opt.OnBad != nil {
				opt.OnBad(d.File(Item{Path: paths[r.i]}), r.err)
			}
		}
		if opt.Progress != nil {
			opt.Progress(done, len(paths))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(bad, func(a, b result) int { return a.i - b.i })
	b := &BadImages{}
	for _, r := range bad {
		b.Add(d.File(Item{Path: paths[r.i]}), r.err)
	}
	return b, nil
}
