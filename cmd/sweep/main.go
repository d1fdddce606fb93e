// Command sweep runs a grid of train runs — methods x datasets x shots x
// seeds over base configurations — locally with a pool of workers, or
// writes a Slurm job array that runs one cell per array task.
//
// Usage:
//
//	sweep -config SWEEP.toml [-workers N] [-devices cuda:0,cuda:1] [-set section.key=value ...] [-out DIR]
//	sweep -config SWEEP.toml -list
//	sweep -config SWEEP.toml -slurm [-train-bin PATH] [-submit]
//
// -methods, -datasets, -shots and -seeds (comma-separated) select a part of
// the sweep.
//
// Every cell is an ordinary train run directory under the sweep's out
// directory. Locally, finished cells are skipped and cells with a
// checkpoint are resumed, so an interrupted sweep (Ctrl-C: the running
// cells write a checkpoint) continues when it is started again. A failed
// cell is reported and the others go on; the exit status is 1 if any
// failed, 130 (Ctrl-C) or 143 (SIGTERM) if the sweep was interrupted.
//
// With -slurm it writes sweep.sbatch and manifest.tsv into the out
// directory (see package sweep) and builds ./cmd/train into
// OUT/bin/train unless -train-bin names a binary.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/methods"
	"github.com/clipadapter/clipgo/rundir"
	"github.com/clipadapter/clipgo/sweep"
	"github.com/clipadapter/clipgo/sweep/local"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command with the process's SIGINT and SIGTERM stopping it
// (see runIn).
func run(args []string, stdout, stderr io.Writer) int {
	in := cli.OnSignals()
	defer in.Stop()
	return runIn(in, args, stdout, stderr)
}

// runIn is the command; in stops a local sweep: running cells write a
// checkpoint, no new cell starts, and the exit status is 128 + the
// signal's number (130 for Ctrl-C, 143 for SIGTERM).
func runIn(in *cli.Interrupts, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "sweep file (TOML; see configs/sweeps)")
	out := fs.String("out", "", "override sweep.out")
	workers := fs.Int("workers", 0, "override sweep.workers (cells run at once)")
	devices := fs.String("devices", "", "override sweep.devices: comma-separated, one per worker (cuda:0,cuda:1)")
	list := fs.Bool("list", false, "print the cells and their status, run nothing")
	slurm := fs.Bool("slurm", false, "write a Slurm job array (sweep.sbatch, manifest.tsv) instead of running")
	trainBin := fs.String("train-bin", "", "with -slurm: the train binary (default: build ./cmd/train into OUT/bin/train)")
	submit := fs.Bool("submit", false, "with -slurm: submit the job array with sbatch")
	verbose := fs.Bool("v", false, "debug logging")
	retain := fs.Bool("retain-memory", true, cli.RetainMemoryUsage)
	onlyMethods := fs.String("methods", "", "run only these methods (comma-separated)")
	onlyDatasets := fs.String("datasets", "", "run only these datasets (comma-separated)")
	onlyShots := fs.String("shots", "", "run only these shot counts (comma-separated)")
	onlySeeds := fs.String("seeds", "", "run only these seeds (comma-separated)")
	var sets cli.Strings
	fs.Var(&sets, "set", "override a config value in every cell, section.key=value (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sweep -config SWEEP.toml [-workers N] [-devices LIST] [-set k=v ...] [-out DIR]\n       sweep -config SWEEP.toml -list\n       sweep -config SWEEP.toml -slurm [-train-bin PATH] [-submit]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *config == "" {
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "sweep: unexpected arguments %q\n", fs.Args())
		} else {
			fmt.Fprintln(stderr, "sweep: -config is required")
		}
		fs.Usage()
		return 2
	}
	if (*trainBin != "" || *submit) && !*slurm {
		fmt.Fprintln(stderr, "sweep: -train-bin and -submit go with -slurm")
		return 2
	}
	filter := sweep.Filter{Methods: splitList(*onlyMethods), Datasets: splitList(*onlyDatasets)}
	var err error
	if filter.Shots, err = intList("-shots", *onlyShots); err == nil {
		filter.Seeds, err = intList("-seeds", *onlySeeds)
	}
	if err != nil {
		fmt.Fprintln(stderr, "sweep:", err)
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	f, err := sweep.Load(*config)
	if err != nil {
		fmt.Fprintln(stderr, "sweep:", err)
		return 1
	}
	if *out != "" {
		f.Sweep.Out = *out
	}
	if *workers != 0 {
		f.Sweep.Workers = *workers
	}
	if *devices != "" {
		f.Sweep.Devices = strings.Split(*devices, ",")
	}
	f.Sweep.Set = append(f.Sweep.Set, sets...)
	if err := f.Validate(); err != nil {
		fmt.Fprintf(stderr, "sweep: %s: %v\n", *config, err)
		return 1
	}
	cells, err := f.Expand()
	if err != nil {
		fmt.Fprintf(stderr, "sweep: %s: %v\n", *config, err)
		return 1
	}
	if cells = filter.Apply(cells); len(cells) == 0 {
		fmt.Fprintln(stderr, "sweep: no cell matches -methods/-datasets/-shots/-seeds")
		return 1
	}

	switch {
	case *list:
		grid := ""
		if keys := f.Sweep.GridKeys(); len(keys) > 0 {
			grid = "\t" + strings.Join(keys, "\t")
		}
		fmt.Fprintln(stdout, "index\tmethod\tdataset\tshots\tseed\tepochs"+grid+"\tstatus\tdir")
		for _, c := range cells {
			status := "todo"
			switch {
			case exists(filepath.Join(c.Dir, rundir.ResultFile)):
				status = "finished"
			case exists(filepath.Join(c.Dir, rundir.CheckpointFile)):
				status = "resumable"
			}
			values := ""
			for _, g := range c.Grid {
				values += "\t" + g.Label
			}
			fmt.Fprintf(stdout, "%d\t%s\t%s\t%d\t%d\t%d%s\t%s\t%s\n", c.Index, c.Method, c.Dataset, c.Shots, c.Seed, c.Config.Train.Epochs, values, status, c.Dir)
		}
		fmt.Fprintf(stderr, "sweep: %d cells\n", len(cells))
		return 0
	}
	// Every cell's method configuration, before the first cell starts.
	if err := sweep.CheckCells(cells, methods.All().Check); err != nil {
		fmt.Fprintf(stderr, "sweep: %s: %v\n", *config, err)
		return 1
	}
	if *slurm {
		return writeSlurm(f, *config, cells, *trainBin, *submit, stdout, stderr)
	}
	if *retain {
		if err := torch.RetainFreedMemory(); err != nil {
			fmt.Fprintln(stderr, "sweep: -retain-memory:", err)
			return 1
		}
	}
	return runLocal(in, f, *config, cells, stdout, stderr, log)
}

func runLocal(in *cli.Interrupts, f *sweep.File, config string, cells []sweep.Cell, stdout, stderr io.Writer, log *slog.Logger) int {
	if err := saveSweepFile(f.Sweep.Out, config); err != nil {
		fmt.Fprintln(stderr, "sweep:", err)
		return 1
	}
	// After the first signal in removes its handler: a second Ctrl-C kills
	// the process.
	ctx := in.Context()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stderr, "sweep: stopping: running cells write a checkpoint (Ctrl-C again to abort)")
		case <-finished:
		}
	}()
	workers := f.Sweep.Workers
	if workers == 0 {
		workers = max(len(f.Sweep.Devices), 1)
	}
	fmt.Fprintf(stderr, "sweep: %d cells from %s into %s, %d worker(s)\n", len(cells), config, f.Sweep.Out, workers)
	sum := local.Run(ctx, cells, local.Options{
		Workers: workers, Devices: f.Sweep.Devices, Progress: stderr, Log: log,
		Eval: f.Sweep.EvalDatasets, EvalRoot: f.Sweep.EvalRoot,
	})
	fmt.Fprintf(stdout, "sweep: %d cells: %d done, %d already finished, %d failed, %d interrupted, %d not started (%s)\n",
		len(cells), sum.Count(local.Done), sum.Count(local.Skipped), sum.Count(local.Failed),
		sum.Count(local.Interrupted), sum.Count(local.NotStarted), sum.Elapsed.Round(time.Second))
	for _, o := range sum.Outcomes {
		if o.Status == local.Failed {
			fmt.Fprintf(stdout, "  failed: %s: %v (log: %s)\n", o.Cell, cli.FirstLine(o.Err), filepath.Join(o.Cell.Dir, local.LogFile))
		}
	}
	err := sum.Err()
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "sweep: all cells finished; tables and plots: go run ./cmd/report -runs %s\n", f.Sweep.Out)
		return 0
	case sum.Count(local.Failed) > 0:
		fmt.Fprintln(stderr, "sweep:", err)
		return 1
	default:
		fmt.Fprintln(stderr, "sweep:", err)
		return in.Status(130)
	}
}

func writeSlurm(f *sweep.File, config string, cells []sweep.Cell, trainBin string, submit bool, stdout, stderr io.Writer) int {
	if err := saveSweepFile(f.Sweep.Out, config); err != nil {
		fmt.Fprintln(stderr, "sweep:", err)
		return 1
	}
	if trainBin == "" {
		trainBin = filepath.Join(f.Sweep.Out, "bin", "train")
		fmt.Fprintf(stderr, "sweep: building ./cmd/train into %s\n", trainBin)
		cmd := exec.Command(goTool(), "build", "-o", trainBin, "./cmd/train")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(stderr, "sweep: go build ./cmd/train: %v (run from the repository root, or pass -train-bin)\n", err)
			return 1
		}
	} else if st, err := os.Stat(trainBin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		fmt.Fprintf(stderr, "sweep: -train-bin %s is not an executable file\n", trainBin)
		return 1
	}
	// Synthetic data is generated once here, not by concurrent array tasks.
	if err := local.PrepareData(cells); err != nil {
		fmt.Fprintln(stderr, "sweep:", err)
		return 1
	}
	script, err := sweep.WriteSlurm(f.Sweep.Out, cells, sweep.SlurmOptions{TrainBin: trainBin, Spec: f.Slurm})
	if err != nil {
		fmt.Fprintln(stderr, "sweep:", err)
		return 1
	}
	fmt.Fprintf(stdout, "sweep: %d cells; job array %s, manifest %s\n", len(cells), script, filepath.Join(filepath.Dir(script), sweep.ManifestFile))
	if !submit {
		fmt.Fprintf(stdout, "submit with: sbatch %s\n", script)
		return 0
	}
	cmd := exec.Command("sbatch", script)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(stderr, "sweep: sbatch %s: %v\n", script, err)
		return 1
	}
	return 0
}

// saveSweepFile copies the sweep file into the out directory, beside the
// run directories it produced.
func saveSweepFile(out, config string) error {
	b, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("out directory: %w", err)
	}
	return rundir.WriteFileAtomic(filepath.Join(out, "sweep.toml"), b)
}

// goTool returns the go command: the one on PATH, else this toolchain's.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); exists(p) {
		return p
	}
	return "go"
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(flagName, s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number", flagName, f)
		}
		out = append(out, n)
	}
	return out, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
