// Command clip runs OpenAI's CLIP models from the command line: it tokenizes
// texts, preprocesses images, encodes images and texts into features, and
// classifies images zero-shot.
//
// Usage:
//
//	clip tokenize [-context 77] [-truncate] TEXT...
//	clip preprocess -model M -out FILE.npy IMG...
//	clip encode-image -model M -out FILE.npy IMG...
//	clip encode-text -model M -out FILE.npy TEXT...
//	clip zeroshot -model M -classes "a,b,c" [-templates FILE] IMG...
//	clip version
//
// tokenize prints {"tokens": [[id, ...], ...]}, one row of -context ids per
// text (start token, the text's BPE ids, end token, zeros).
//
// preprocess writes the images after CLIP's test transform as a float32
// array [N, 3, R, R], R being the model's input resolution. For an official
// model name R is known without downloading the weights; for a file, only
// the archive's tensor shapes are read.
//
// encode-image and encode-text write the features [N, D] (float32, not
// normalized) of the images or texts.
//
// zeroshot builds CLIP's zero-shot classifier from the class names and the
// prompt templates (a file with one template per line, "{}" standing for
// the class name; default "a photo of a {}.") and prints, for each image,
// its five most probable classes with their probabilities in percent.
//
// The model M is a file (a TorchScript archive such as ViT-B-32.pt, or a
// state dict), an official model name (RN50, ..., ViT-L/14@336px; the
// weights are downloaded into the cache on first use), or random:ARCH for
// randomly initialized weights of an official architecture or "tiny"
// (seeded by -seed; for tests and benchmarks). Every subcommand that takes
// a model also takes -device cpu|cuda|cuda:N|auto, -batch N, -precision
// fp32|fp16 (fp16 needs CUDA), -seed, -cache DIR, -threads N (libtorch's
// intra-op CPU threads), -workers N (images decoded at once) and
// -retain-memory (on by default: the C allocator keeps the memory of freed
// tensors for the next batches instead of unmapping it, which saves a page
// fault per 4 KiB of every large activation; the resident memory then
// stays at its high-water mark).
//
// Output arrays are NumPy .npy files (format 1.0, little-endian float32, C
// order), written atomically: when the command fails, no new file is left
// at -out. Images are decoded in parallel and encoded in batches; progress
// goes to stderr, and -timing adds the encoding time, the images (or texts)
// per second and the resident memory after each batch.
//
// version prints the libtorch the build links against (as `make setup`
// prepared it) and the gotch release.
//
// Usage errors exit with status 2, other errors with status 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/clipadapter/clipgo/internal/torch"
)

func main() {
	os.Exit(runInterruptible(cli.OnSignals(), os.Args[1:], os.Stdout, os.Stderr))
}

// runInterruptible runs the command under in: the first SIGINT or SIGTERM
// stops it at its next batch, and its exit status is then 128 + the
// signal's number (130, 143).
func runInterruptible(in *cli.Interrupts, args []string, stdout, stderr io.Writer) int {
	defer in.Stop()
	return in.Status(run(in.Context(), args, stdout, stderr))
}

const usage = `usage: clip <command> [flags] ARGS...

commands:
  tokenize [-context 77] [-truncate] TEXT...
        print the token ids of each text as JSON
  preprocess -model M -out FILE.npy IMG...
        write the preprocessed images, float32 [N, 3, R, R]
  encode-image -model M -out FILE.npy IMG...
        write the image features, float32 [N, D] (not normalized)
  encode-text -model M -out FILE.npy TEXT...
        write the text features, float32 [N, D] (not normalized)
  zeroshot -model M -classes "a,b,c" [-templates FILE] IMG...
        print each image's five most probable classes
  version
        print the libtorch and gotch this build links against

M is a model file, an official model name (RN50, ViT-B/32, ...) or
random:ARCH (random weights). Run "clip <command> -h" for a command's flags.
`

// commands maps each subcommand to its implementation.
var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"tokenize":     runTokenize,
	"preprocess":   runPreprocess,
	"encode-image": runEncodeImage,
	"encode-text":  runEncodeText,
	"zeroshot":     runZeroshot,
	"version":      runVersion,
}

// runVersion prints the libtorch and gotch the build links against.
func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return cli.Usagef("version takes no arguments")
	}
	fmt.Fprintf(stdout, "%s; gotch %s (%d wrappers stubbed)\n", torch.Libtorch, torch.GotchVersion, torch.StubbedWrappers)
	if core := torch.BLASCore(); core != "" {
		fmt.Fprintf(stdout, "BLAS: OpenBLAS, %s kernels\n", core)
	}
	if w := torch.BLASWarning(); w != "" {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return nil
}

// run is the command: it returns the exit status. A panic (gotch reports
// some failures that way) becomes one line: the panic's first line and the
// function and file line where it happened, never a Go stack trace.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	defer cli.ReportPanic("clip", stderr, &code)
	// One OS thread for the whole command: libtorch's thread count (-threads)
	// and grad mode are settings of the OS thread that makes them (see
	// torch.SetNumThreads), so the thread that sets them must be the one
	// that drives the model.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "clip: unknown command %q\n%s", name, usage)
		return 2
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	return cli.Exit("clip", name, err, stderr)
}

// parse parses a subcommand's flags (see cli.Parse) and checks that at
// least minArgs positional arguments, the what, follow them.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer, minArgs int, what string) error {
	if err := cli.Parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() < minArgs {
		return cli.Usagef("no %s given", what)
	}
	return nil
}
