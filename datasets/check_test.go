package datasets

import (
	"context"
	"errors"
	"image"
	_ "image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func decodeFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, _, err = image.Decode(f)
	return err
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	if err := Synth(dir, 3, 10, 1); err != nil {
		t.Fatal(err)
	}
	d, err := Load(SynthName, dir)
	if err != nil {
		t.Fatal(err)
	}
	// Break two images: truncate one (val), delete another (test).
	trunc, gone := d.File(d.Val[1]), d.File(d.Test[2])
	b, _ := os.ReadFile(trunc)
	os.WriteFile(trunc, b[:len(b)/3], 0o644)
	os.Remove(gone)

	var active, peak int32
	var mu sync.Mutex
	var calls, lastDone, lastTotal int
	bad, err := Check(context.Background(), d, CheckOptions{
		Workers: 2,
		Decode: func(p string) error {
			n := atomic.AddInt32(&active, 1)
			for {
				old := atomic.LoadInt32(&peak)
				if n <= old || atomic.CompareAndSwapInt32(&peak, old, n) {
					break
				}
			}
			defer atomic.AddInt32(&active, -1)
			return decodeFile(p)
		},
		Progress: func(done, total int) {
			mu.Lock()
			calls++
			lastDone, lastTotal = done, total
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if bad.Count != 2 || len(bad.First) != 2 {
		t.Fatalf("bad = %+v, want 2", bad)
	}
	// Reported in list order (val before test), naming the files.
	if !strings.Contains(bad.First[0], trunc) || !strings.Contains(bad.First[1], gone) {
		t.Errorf("first = %q", bad.First)
	}
	if calls != 30 || lastDone != 30 || lastTotal != 30 {
		t.Errorf("progress: %d calls, last %d/%d; want 30, 30/30", calls, lastDone, lastTotal)
	}
	if peak > 2 {
		t.Errorf("%d decodes at once with 2 workers", peak)
	}
	if bad.Err() == nil || !strings.Contains(bad.String(), "2 bad image(s)") {
		t.Errorf("summary %q", bad.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Check(ctx, d, CheckOptions{Decode: decodeFile}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

func TestBadImages(t *testing.T) {
	var b BadImages
	if b.Err() != nil || b.String() != "no bad images" {
		t.Errorf("zero value: %v %q", b.Err(), b.String())
	}
	for i := range 13 {
		p := filepath.Join("img", string(rune('a'+i))+".jpg")
		if i%2 == 0 {
			b.Add(p, errors.New("unexpected EOF"))
		} else {
			b.Add(p, &os.PathError{Op: "open", Path: p, Err: os.ErrNotExist})
		}
	}
	if b.Count != 13 || len(b.First) != BadImagesListed {
		t.Fatalf("count %d, listed %d", b.Count, len(b.First))
	}
	if b.First[0] != filepath.Join("img", "a.jpg")+": unexpected EOF" {
		t.Errorf("first[0] = %q", b.First[0])
	}
	if b.First[1] != "open "+filepath.Join("img", "b.jpg")+": file does not exist" {
		t.Errorf("first[1] = %q (path must not be repeated)", b.First[1])
	}
	if !strings.HasSuffix(b.String(), "; and 3 more") {
		t.Errorf("String() = %q", b.String())
	}
}
