// Command coopbench is the Go half of the CoOp text-side benchmark
// (bench/coop/run.sh): CoOp training steps per second and the time to
// build a zero-shot classifier, with the text side's savings (cut after
// the batch's last end-of-text token, shared prefix encoded once) or
// without them (every prompt over all 77 positions, as CoOp's code runs
// it).
//
// Usage:
//
//	go run ./bench/coop -classes 100 [-arch RN50 | -width 256 -layers 4 -heads 4] [-steps 3] [-warmup 1]
//	                    [-batch 32] [-threads N] [-savings=true] [-max-text-batch 0] [-tokens OUT.npy]
//	go run ./bench/coop -zeroshot -classes 1000 [...]
//	go run ./bench/coop -device cuda -precision fp16 -classes 1000 [...]
//
// The model is randomly initialized (its weights do not change the work):
// the text transformer of -arch, or one of -width/-layers/-heads, with a
// small image tower that is never run. Class names are synthetic, one to
// four common words (1 to 8 BPE tokens, like ImageNet's), the same for a
// given -classes on every run. A CoOp step is what train.Loop does: the
// class prompts with 16 learned context vectors at the front (class token
// at the end) through the text transformer, logits against a batch of
// cached image features, cross-entropy, backward, SGD with momentum. The
// image features are fixed random vectors on both sides of the
// benchmark: the step is the text side's work. -tokens writes the prompt
// skeletons' token ids [C, 77] for the PyTorch half (with -zeroshot:
// the template prompts', [7·C, 77], class-major).
//
// It prints one line "steps/s X cpu_s/step Y" (or "classifier_seconds X
// cpu_s Y"): wall-time rate and process CPU seconds (user + system) per
// step.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/tokenizer"
	"github.com/clipadapter/clipgo/coop"
	"github.com/clipadapter/clipgo/experiment"
	"github.com/clipadapter/clipgo/internal/npy"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/train"
	"github.com/clipadapter/clipgo/zeroshot"
)

var words = strings.Fields(`red fox great white shark golden retriever sea lion pup tabby cat
	steel arch bridge electric guitar paper towel grand piano hot air balloon spiny lobster
	african elephant barn owl garden spider coral reef snow leopard mountain bike wooden spoon
	police van water tower stone wall fire truck sports car goldfish tiger beetle volcano
	toucan broccoli cheeseburger lighthouse typewriter keyboard umbrella windsor tie
	yellow lady's slipper red wine pomegranate shopping cart triumphal arch espresso`)

// classNames returns n synthetic class names of one to four words.
func classNames(n int) []string {
	rng := rand.New(rand.NewPCG(1, 20))
	out := make([]string, n)
	for i := range out {
		k := 1 + rng.IntN(4)
		parts := make([]string, k)
		for j := range parts {
			parts[j] = words[rng.IntN(len(words))]
		}
		out[i] = strings.Join(parts, " ")
	}
	return out
}

// cpuSeconds returns the process's user and system CPU time: with one
// libtorch thread, a measure of the work that other processes sharing the
// CPUs do not inflate as much as wall time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "coopbench:", err)
		os.Exit(1)
	}
}

func run() error {
	arch := flag.String("arch", "RN50", "architecture whose text transformer is used")
	width := flag.Int("width", 0, "text transformer width (overrides -arch with -layers and -heads)")
	layers := flag.Int("layers", 0, "text transformer layers (with -width)")
	heads := flag.Int("heads", 0, "text transformer heads (with -width)")
	classes := flag.Int("classes", 100, "number of classes")
	steps := flag.Int("steps", 3, "timed steps")
	warmup := flag.Int("warmup", 1, "untimed steps first")
	batch := flag.Int("batch", 32, "image features per step")
	threads := flag.Int("threads", 0, "libtorch threads (0: libtorch's default)")
	savings := flag.Bool("savings", true, "cut after the last end-of-text token and share the prefix")
	maxText := flag.Int("max-text-batch", 0, "CoOp's max_text_batch (chunks with recomputation)")
	zs := flag.Bool("zeroshot", false, "time building a zero-shot classifier (7 ImageNet templates) instead")
	tokensOut := flag.String("tokens", "", "write the prompt skeletons' token ids to this .npy and exit")
	verbose := flag.Bool("v", false, "print each step's phases")
	deviceName := flag.String("device", "cpu", "device (cpu, cuda, cuda:N)")
	precision := flag.String("precision", "fp32", "frozen encoder precision: fp32, fp16 (CUDA) or bf16")
	flag.Parse()
	runtime.LockOSThread()
	// As cmd/train does by default (-retain-memory).
	if err := torch.RetainFreedMemory(); err != nil {
		return err
	}
	if *threads > 0 {
		if err := torch.SetNumThreads(*threads); err != nil {
			return err
		}
	}
	cfg, err := clip.ArchConfig(*arch)
	if err != nil {
		return err
	}
	if *width > 0 {
		cfg.TransformerWidth, cfg.TransformerLayers, cfg.TransformerHeads = *width, *layers, *heads
	}
	tiny, _ := clip.ArchConfig("tiny")
	cfg.ImageResolution, cfg.VisionLayers, cfg.VisionWidth, cfg.VisionPatchSize =
		tiny.ImageResolution, tiny.VisionLayers, tiny.VisionWidth, tiny.VisionPatchSize
	device, err := torch.ParseDevice(*deviceName)
	if err != nil {
		return err
	}
	prec, err := clip.ParsePrecision(*precision)
	if err != nil {
		return err
	}
	opts := []clip.Option{clip.WithPrecision(prec)}
	if !*savings {
		opts = append(opts, clip.WithFullTextContext())
	}
	model, err := clip.New(cfg, device, 1, opts...)
	if err != nil {
		return err
	}
	defer model.Drop()
	tok, err := tokenizer.New()
	if err != nil {
		return err
	}
	text := &clip.TextSide{Model: model, Tokenizer: tok, Device: device}
	names := classNames(*classes)

	templates := experiment.EnsembleTemplates[:]
	if *tokensOut != "" {
		var texts []string
		for _, n := range names {
			if *zs {
				for _, t := range templates {
					texts = append(texts, strings.ReplaceAll(t, "{}", n))
				}
			} else {
				texts = append(texts, strings.TrimSpace(strings.Repeat("X ", 16))+" "+n+".")
			}
		}
		rows, err := tok.Tokenize(texts, cfg.ContextLength, false)
		if err != nil {
			return err
		}
		var flat []int64
		for _, r := range rows {
			flat = append(flat, r...)
		}
		return npy.WriteInt64(*tokensOut, []int{len(rows), cfg.ContextLength}, flat)
	}

	if *zs {
		start, cpu0 := time.Now(), cpuSeconds()
		w, err := zeroshot.Classifier(text, names, templates)
		if err != nil {
			return err
		}
		w.Drop()
		fmt.Printf("classifier_seconds %.3f cpu_s %.3f (%d classes x %d templates)\n", time.Since(start).Seconds(), cpuSeconds()-cpu0, len(names), len(templates))
		return nil
	}

	m := coop.New(coop.Options{NCtx: 16, NoPrefixSharing: !*savings, MaxTextBatch: *maxText})
	ctx := &train.Context{Text: text, ClassNames: names, FeatureDim: int64(cfg.EmbedDim), Device: device, Seed: 1,
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if err := m.Init(ctx, nil); err != nil {
		return err
	}
	defer m.Drop()
	opt := train.NewSGD(m.Parameters(), 0.9, 5e-4)
	feats := ts.MustRandn([]int64{int64(*batch), int64(cfg.EmbedDim)}, gotch.Float, device)
	defer feats.MustDrop()
	lv := make([]int64, *batch)
	for i := range lv {
		lv[i] = int64(i % *classes)
	}
	labels := ts.MustOfSlice(lv).MustTo(device, true)
	defer labels.MustDrop()
	step := func() error {
		t0 := time.Now()
		logits, err := m.Logits(feats, true)
		if err != nil {
			return err
		}
		defer logits.MustDrop()
		loss := logits.CrossEntropyForLogits(labels)
		defer loss.MustDrop()
		t1 := time.Now()
		if err := loss.Backward(); err != nil {
			return err
		}
		t2 := time.Now()
		if err := m.FinishBackward(); err != nil {
			return err
		}
		t3 := time.Now()
		err = opt.Step(0.002)
		if *verbose {
			fmt.Fprintf(os.Stderr, "forward %.3f s, backward %.3f s, recompute %.3f s, update %.3f s\n",
				t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), t3.Sub(t2).Seconds(), time.Since(t3).Seconds())
		}
		return err
	}
	for i := 0; i < *warmup; i++ {
		if err := step(); err != nil {
			return err
		}
	}
	if device.IsCuda() {
		if err := ts.CudaSynchronize(); err != nil {
			return err
		}
	}
	start, cpu0 := time.Now(), cpuSeconds()
	for i := 0; i < *steps; i++ {
		if err := step(); err != nil {
			return err
		}
	}
	if device.IsCuda() {
		if err := ts.CudaSynchronize(); err != nil {
			return err
		}
	}
	el, cpu := time.Since(start).Seconds(), cpuSeconds()-cpu0
	fmt.Printf("steps/s %.4f cpu_s/step %.4f (%d classes, %d steps in %.2f s)\n", float64(*steps)/el, cpu/float64(*steps), *classes, *steps, el)
	return nil
}
