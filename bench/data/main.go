// Command data measures the image loading pipeline: decoding and the
// training transform (RandomResizedCrop to -size with bicubic resampling,
// random horizontal flip, normalization) of the JPEGs under -root, batched
// by loader.Loader with -workers workers. It is the Go half of
// bench/data/run.sh, which compares it with PIL + torchvision's DataLoader
// (torch_loader.py) on the same files.
//
// Usage:
//
//	go run ./bench/data -root DIR [-workers 2] [-n 2000] [-size 224] [-batch 32] [-cpuprofile FILE]
//
// DIR is an image folder, DIR/<class>/<image>, read as
// datasets.ImageFolder reads it (classes and files in byte order), which is
// also torchvision.datasets.ImageFolder's order. The list is repeated
// until -n images are loaded. The clock starts when the first batch
// arrives (so worker start-up is not counted, on either side) and stops
// after the last. Besides wall-clock images/s it reports the CPU time the
// process used per image over the same span (user + system, all threads),
// which is less sensitive to other load on the machine. The last line
// printed is "images/s R".
//
// Batches are handed back with Loader.Recycle once "used" (as a consumer
// that copies them to a device does), unless -recycle=false.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/datasets/loader"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/data:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("data", flag.ContinueOnError)
	root := fs.String("root", "", "image folder root/<class>/<image> (required)")
	workers := fs.Int("workers", 2, "loader workers")
	n := fs.Int("n", 2000, "images to load (the folder is repeated as needed)")
	size := fs.Int("size", 224, "output side")
	batch := fs.Int("batch", 32, "batch size")
	seed := fs.Uint64("seed", 1, "augmentation seed")
	recycle := fs.Bool("recycle", true, "hand each batch back to the loader with Recycle")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *root == "" {
		return errors.New("-root is required")
	}
	if *n < 2**batch {
		return fmt.Errorf("-n %d must be at least two batches (%d)", *n, 2**batch)
	}
	d, err := datasets.ImageFolder(*root, 0, 0, 0)
	if err != nil {
		return err
	}
	files := d.Train
	items := make([]datasets.Item, *n)
	for i := range items {
		items[i] = files[i%len(files)]
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	l, err := loader.New(d, items, loader.Options{
		Transform: preprocess.Train(*size, preprocess.TrainOptions{}),
		BatchSize: *batch,
		Workers:   *workers,
		Seed:      *seed,
	})
	if err != nil {
		return err
	}
	defer l.Close()
	var start time.Time
	var startCPU time.Duration
	counted, batches := 0, 0
	for {
		b, err := l.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if batches == 0 {
			start, startCPU = time.Now(), cpuTime()
		} else {
			counted += b.N
		}
		batches++
		if *recycle {
			l.Recycle(b)
		}
	}
	elapsed, cpu := time.Since(start), cpuTime()-startCPU
	rate := float64(counted) / elapsed.Seconds()
	fmt.Fprintf(stdout, "go: %d files, %d images in %d batches of %d (workers %d, GOMAXPROCS %d); timed %d images in %.2f s\n",
		len(files), *n, batches, *batch, *workers, runtime.GOMAXPROCS(0), counted, elapsed.Seconds())
	fmt.Fprintf(stdout, "cpu ms/image %.2f\n", cpu.Seconds()*1000/float64(counted))
	fmt.Fprintf(stdout, "images/s %.1f\n", rate)
	return nil
}

// cpuTime returns the user + system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
