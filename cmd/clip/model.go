package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/sugarme/gotch"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/openclip"
	"github.com/clipadapter/clipgo/clip/preprocess"
	"github.com/clipadapter/clipgo/clip/weights"
	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/experiment"
	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/clipadapter/clipgo/internal/torch"
)

// randomPrefix selects randomly initialized weights: random:ARCH.
const randomPrefix = "random:"

// modelFlags are the flags of every subcommand that takes a model.
type modelFlags struct {
	model     string
	device    string
	batch     int
	precision string
	seed      uint64
	cache     string
	threads   int
	workers   int
	timing    bool
	retain    bool
}

// register declares the model flags on fs.
func (f *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.model, "model", "", "model: a checkpoint `file`, an official name (RN50, ViT-B/32, ...) or random:ARCH")
	fs.StringVar(&f.device, "device", "auto", "`device`: cpu, cuda, cuda:N or auto (CUDA when available)")
	fs.IntVar(&f.batch, "batch", 32, "images or texts encoded at once")
	fs.StringVar(&f.precision, "precision", "fp32", "weight `precision`: fp32, fp16 (CUDA only) or bf16")
	fs.Uint64Var(&f.seed, "seed", 0, "random `seed` of random:ARCH weights")
	fs.StringVar(&f.cache, "cache", "", "download cache `folder` for official weights (default $CLIP_CACHE or ~/.cache/clip)")
	fs.IntVar(&f.threads, "threads", 0, "libtorch intra-op CPU `threads` (0: libtorch's default, OMP_NUM_THREADS or the core count)")
	fs.IntVar(&f.workers, "workers", 0, "images decoded at once (0: the number of CPUs)")
	fs.BoolVar(&f.timing, "timing", false, "report encoding time, throughput and resident memory per batch on stderr")
	fs.BoolVar(&f.retain, "retain-memory", true, cli.RetainMemoryUsage)
}

// check validates the flag values (usage errors) after parsing.
func (f *modelFlags) check(fs *flag.FlagSet) error {
	if err := cli.Required(fs, "model"); err != nil {
		return err
	}
	if f.batch <= 0 {
		return cli.Usagef("-batch must be positive, got %d", f.batch)
	}
	if f.threads < 0 {
		return cli.Usagef("-threads must not be negative, got %d", f.threads)
	}
	if f.workers < 0 {
		return cli.Usagef("-workers must not be negative, got %d", f.workers)
	}
	switch f.precision {
	case "fp32", "fp16", "bf16":
	default:
		return cli.Usagef("-precision must be fp32, fp16 or bf16, got %q", f.precision)
	}
	d := strings.ToLower(strings.TrimSpace(f.device))
	if d != "cpu" && d != "cuda" && d != "auto" && !strings.HasPrefix(d, "cuda:") {
		return cli.Usagef("-device must be cpu, cuda, cuda:N or auto, got %q", f.device)
	}
	return nil
}

// workerCount returns the number of decoding goroutines.
func (f *modelFlags) workerCount() int {
	if f.workers > 0 {
		return f.workers
	}
	return runtime.NumCPU()
}

// load resolves the device and the model (downloading official weights
// when they are not cached, with progress on stderr) and applies -threads
// and -retain-memory.
func (f *modelFlags) load(ctx context.Context, stderr io.Writer) (*clip.Model, gotch.Device, error) {
	device, err := torch.ParseDevice(f.device)
	if err != nil {
		return nil, gotch.CPU, err
	}
	if f.retain {
		if err := torch.RetainFreedMemory(); err != nil {
			return nil, gotch.CPU, fmt.Errorf("-retain-memory: %w", err)
		}
	}
	if f.threads > 0 {
		if err := torch.SetNumThreads(f.threads); err != nil {
			return nil, gotch.CPU, err
		}
	}
	m, _, err := experiment.LoadModel(ctx, config.ModelConfig{
		Name:      f.model,
		Precision: f.precision,
		CacheDir:  f.cache,
		Seed:      f.seed,
	}, device, stderr)
	if err != nil {
		return nil, gotch.CPU, err
	}
	return m, device, nil
}

// resolution returns the input resolution of the model without loading its
// weights: from the archive's tensor shapes for a file, from the registry
// for an official name, from the architecture for random:ARCH. Like
// weights.Resolve, an existing file wins over a name.
func (f *modelFlags) resolution(ctx context.Context) (int, error) {
	name := f.model
	if fi, err := os.Stat(name); err == nil && fi.Mode().IsRegular() {
		cfg, err := clip.ReadConfig(name)
		if err != nil {
			return 0, err
		}
		return cfg.ImageResolution, nil
	}
	if arch, ok := strings.CutPrefix(name, randomPrefix); ok {
		cfg, err := clip.ArchConfig(arch)
		if err != nil {
			return 0, err
		}
		return cfg.ImageResolution, nil
	}
	if c, ok := weights.Lookup(name); ok {
		return c.InputResolution, nil
	}
	// Neither a file nor a known name: Resolve explains (and suggests a
	// name) without downloading anything.
	path, err := weights.Resolve(ctx, name, weights.Options{CacheDir: f.cache})
	if err != nil {
		return 0, err
	}
	cfg, err := clip.ReadConfig(path)
	if err != nil {
		return 0, err
	}
	return cfg.ImageResolution, nil
}

// preprocessing returns the model's image preprocessing without loading
// its weights: from the checkpoint's OpenCLIP configuration for a file or
// an OpenCLIP name, OpenAI's otherwise.
func (f *modelFlags) preprocessing() (preprocess.Config, error) {
	name := f.model
	if fi, err := os.Stat(name); err == nil && fi.Mode().IsRegular() {
		return clip.ReadPreprocessing(name)
	}
	if c, ok := weights.Lookup(name); ok && c.OpenCLIPConfig != nil {
		oc, err := openclip.Parse(c.OpenCLIPConfig)
		if err != nil {
			return preprocess.Config{}, fmt.Errorf("model %s: %w", name, err)
		}
		return clip.OpenCLIPPreprocessing(oc.Preprocess)
	}
	return preprocess.Config{}, nil
}

// checkOutput fails early, before any expensive work, when the output file
// cannot be created: its folder is missing or it names a folder.
func checkOutput(path string) error {
	if path == "" {
		return cli.Usagef("-out is required")
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("output %s: %s is not a folder", path, dir)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("output %s: is a folder", path)
	}
	return nil
}

// checkImages fails early, before the model is loaded, when an image file
// does not exist or is not a regular file. (Decoding errors come later.)
// The error names the first such file and counts the others.
func checkImages(paths []string) error {
	var first error
	bad := 0
	for _, p := range paths {
		var err error
		fi, serr := os.Stat(p)
		switch {
		case serr != nil:
			var pe *fs.PathError
			if errors.As(serr, &pe) {
				serr = pe.Err
			}
			err = fmt.Errorf("image %s: %w", p, serr)
		case !fi.Mode().IsRegular():
			err = fmt.Errorf("image %s: not a regular file", p)
		}
		if err != nil {
			bad++
			if first == nil {
				first = err
			}
		}
	}
	if bad > 1 {
		return fmt.Errorf("%w (and %d more bad image paths)", first, bad-1)
	}
	return first
}
