package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/experiment"
	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/clipadapter/clipgo/methods"
	"github.com/clipadapter/clipgo/predict"
	"github.com/clipadapter/clipgo/rundir"
	"github.com/clipadapter/clipgo/sweep"
	"github.com/clipadapter/clipgo/train"
)

// LogFile is the file in a cell's run directory that receives the run's
// log and progress when the sweep runs it locally.
const LogFile = "train.log"

// Status is what became of a cell.
type Status int

// Cell statuses.
const (
	NotStarted  Status = iota // the sweep stopped before the cell's turn
	Skipped                   // already finished (result.json present)
	Done                      // ran to a result, fresh or resumed
	Failed                    // the run returned an error
	Interrupted               // stopped by the context; a checkpoint was written
)

var statusNames = [...]string{"not started", "skipped", "done", "failed", "interrupted"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Outcome is what Run did with one cell.
type Outcome struct {
	Cell   sweep.Cell
	Status Status
	// Resumed: the run continued from the cell's checkpoint.
	Resumed bool
	// Device is the model.device the cell ran on ("" : the config's).
	Device string
	Result *rundir.Result
	Err    error
	// Elapsed is the wall time of the run (0 for skipped cells).
	Elapsed time.Duration
}

// Summary is the outcome of Run, one Outcome per cell in cell order.
type Summary struct {
	Outcomes []Outcome
	Elapsed  time.Duration
}

// Count returns the number of cells with status s.
func (s Summary) Count(st Status) int {
	n := 0
	for _, o := range s.Outcomes {
		if o.Status == st {
			n++
		}
	}
	return n
}

// Err is nil when every cell finished (now or before); otherwise it says
// how many failed or were left unfinished.
func (s Summary) Err() error {
	failed, left := s.Count(Failed), s.Count(Interrupted)+s.Count(NotStarted)
	switch {
	case failed > 0 && left > 0:
		return fmt.Errorf("%d of %d cells failed and %d are unfinished", failed, len(s.Outcomes), left)
	case failed > 0:
		return fmt.Errorf("%d of %d cells failed", failed, len(s.Outcomes))
	case left > 0:
		return fmt.Errorf("%w: %d of %d cells are unfinished; run the sweep again to continue", train.ErrInterrupted, left, len(s.Outcomes))
	}
	return nil
}

// Options configures Run.
type Options struct {
	// Workers bounds the cells run at once (default: len(Devices), else 1).
	Workers int
	// Devices gives worker i the model.device Devices[i mod len]; empty
	// keeps each config's device.
	Devices []string
	// Methods is the method registry (nil: methods.All()).
	Methods methods.Registry
	// Eval returns the datasets a finished cell is evaluated on
	// (predict.Evaluate into RUN/eval/<dataset>.json; nil: none), and
	// EvalRoot their data root (empty: the cell's data.root). An
	// evaluation already written is not repeated; a failed one fails the
	// cell (its training is kept) and is tried again by the next run.
	Eval     func(sweep.Cell) []string
	EvalRoot string
	// Progress receives one line per started and finished cell (nil:
	// discarded).
	Progress io.Writer
	// Log receives the sweep's own messages (nil: slog.Default()).
	Log *slog.Logger
}

// Run runs the cells with a bounded pool of workers, each cell an
// in-process experiment.Run into its run directory, whose log goes to
// LogFile there. A finished cell (result.json) is skipped; a cell with a
// checkpoint is resumed from it with the configuration saved in its
// directory, as train -resume does. A failed cell is reported and the
// others go on. When ctx is cancelled no further cell starts and the
// running ones write a checkpoint and stop; running the sweep again
// continues them.
func Run(ctx context.Context, cells []sweep.Cell, o Options) Summary {
	start := time.Now()
	workers := o.Workers
	if workers <= 0 {
		workers = max(len(o.Devices), 1)
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	p := &progressLog{w: o.Progress, total: len(cells), workers: workers, start: start}
	if p.w == nil {
		p.w = io.Discard
	}
	sum := Summary{Outcomes: make([]Outcome, len(cells))}
	for i, c := range cells {
		sum.Outcomes[i] = Outcome{Cell: c, Status: NotStarted}
	}
	// Finished cells are counted first, so the progress counts and the ETA
	// reflect only the work left.
	var todo []int
	for i, c := range cells {
		if exists(filepath.Join(c.Dir, rundir.ResultFile)) && len(o.missingEvals(c)) == 0 {
			sum.Outcomes[i].Status = Skipped
			p.skipped++
			continue
		}
		todo = append(todo, i)
	}
	if p.skipped > 0 {
		p.printf("%d of %d cells already finished, %d to run", p.skipped, len(cells), len(todo))
	}
	if len(todo) > 0 {
		if err := PrepareData(cells); err != nil {
			log.Error("prepare data", "err", err)
			for _, i := range todo {
				sum.Outcomes[i].Status, sum.Outcomes[i].Err = Failed, err
			}
			sum.Elapsed = time.Since(start)
			return sum
		}
	}

	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		dev := ""
		if len(o.Devices) > 0 {
			dev = o.Devices[w%len(o.Devices)]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				c := cells[i]
				p.printf("start   %s on %s -> %s", c, deviceLabel(dev, c), c.Dir)
				out := runCell(ctx, c, dev, o.Methods)
				if out.Status == Done || out.Status == Skipped {
					if err := o.evalCell(ctx, c, dev); err != nil {
						out.Status, out.Err = Failed, err
					}
				}
				sum.Outcomes[i] = out
				p.finish(out)
			}
		}()
	}
feed:
	for _, i := range todo {
		if ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
			break feed
		case jobs <- i:
		}
	}
	close(jobs)
	wg.Wait()
	sum.Elapsed = time.Since(start)
	return sum
}

// missingEvals returns the evaluations of c not written yet.
func (o Options) missingEvals(c sweep.Cell) []string {
	if o.Eval == nil {
		return nil
	}
	var out []string
	for _, d := range o.Eval(c) {
		name, _ := datasets.ConfigName(d)
		if !exists(rundir.EvalFile(c.Dir, name)) {
			out = append(out, d)
		}
	}
	return out
}

// evalCell evaluates the finished cell c on its missing evaluations, with
// its log appended to the cell's LogFile.
func (o Options) evalCell(ctx context.Context, c sweep.Cell, dev string) error {
	todo := o.missingEvals(c)
	if len(todo) == 0 {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(c.Dir, LogFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	root := o.EvalRoot
	if root == "" {
		root = c.Config.Data.Root
	}
	for _, d := range todo {
		fmt.Fprintf(logf, "# sweep %s: evaluate on %s\n", time.Now().UTC().Format(time.RFC3339), d)
		_, err := predict.Evaluate(ctx, c.Dir, d, root, predict.EvalOptions{Options: predict.Options{
			Device: dev, Methods: o.Methods, Progress: logf, Log: slog.New(slog.NewTextHandler(logf, nil)),
		}})
		if err != nil {
			fmt.Fprintf(logf, "# sweep: evaluation on %s failed: %v\n", d, err)
			return fmt.Errorf("evaluate on %s: %w", d, err)
		}
	}
	return nil
}

func deviceLabel(dev string, c sweep.Cell) string {
	if dev != "" {
		return dev
	}
	return c.Config.Model.Device
}

// runCell runs one cell: fresh, or resumed from its checkpoint.
func runCell(ctx context.Context, c sweep.Cell, dev string, reg methods.Registry) (out Outcome) {
	out = Outcome{Cell: c, Device: dev}
	start := time.Now()
	defer func() {
		out.Elapsed = time.Since(start)
		if r := recover(); r != nil {
			out.Status, out.Err = Failed, fmt.Errorf("internal error: %s", cli.Recovered(r))
		}
	}()
	if exists(filepath.Join(c.Dir, rundir.ResultFile)) {
		out.Status = Skipped
		return out
	}
	var devSet []string
	if dev != "" {
		devSet = []string{"model.device=" + strconv.Quote(dev)}
	}
	var cfg *config.Config
	var err error
	if exists(filepath.Join(c.Dir, rundir.CheckpointFile)) {
		out.Resumed = true
		cfg, err = config.Load(filepath.Join(c.Dir, rundir.ConfigFile), devSet)
	} else {
		cfg, err = config.Load(c.Base, append(append([]string(nil), c.Sets...), devSet...))
		// Metrics of an attempt that died before its first checkpoint.
		if err == nil {
			err = removeIfExists(filepath.Join(c.Dir, rundir.MetricsFile))
		}
	}
	if err == nil {
		err = os.MkdirAll(c.Dir, 0o755)
	}
	if err != nil {
		out.Status, out.Err = Failed, err
		return out
	}
	logf, err := os.OpenFile(filepath.Join(c.Dir, LogFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		out.Status, out.Err = Failed, err
		return out
	}
	defer logf.Close()
	fmt.Fprintf(logf, "# sweep %s: %s (resume=%v, device=%q)\n", time.Now().UTC().Format(time.RFC3339), c, out.Resumed, dev)
	runLog := slog.New(slog.NewTextHandler(logf, nil))
	res, err := experiment.Run(ctx, experiment.Options{Config: cfg, Methods: reg, Dir: c.Dir, Resume: out.Resumed, Progress: logf, Log: runLog})
	switch {
	case errors.Is(err, train.ErrInterrupted):
		out.Status, out.Err = Interrupted, err
	case err != nil:
		fmt.Fprintf(logf, "# sweep: failed: %v\n", err)
		out.Status, out.Err = Failed, err
	default:
		out.Status, out.Result = Done, res
	}
	return out
}

// PrepareData generates each synthetic dataset the cells use once, before
// the cells run concurrently (experiment.LoadData generates it on first use,
// with the data.seed of the first cell that uses the root).
//
// experiment.LoadData decides whether to generate by looking for
// <root>/SYNTHETIC, while datasets.Synth writes its marker one level
// down (<root>/caltech-101/SYNTHETIC), so every run would generate the
// dataset again — and concurrent cells would delete each other's images.
// PrepareData therefore also writes <root>/SYNTHETIC once the data exist.
func PrepareData(cells []sweep.Cell) error {
	done := map[string]bool{}
	for _, c := range cells {
		d := c.Config.Data
		if !strings.EqualFold(d.Dataset, "synthetic") || done[d.Root] {
			continue
		}
		done[d.Root] = true
		marker := filepath.Join(d.Root, "SYNTHETIC")
		if exists(marker) {
			continue
		}
		if _, _, err := experiment.LoadData(d); err != nil {
			return fmt.Errorf("synthetic data in %s: %w", d.Root, err)
		}
		note := fmt.Sprintf("synthetic dataset generated by the sweep: %d classes, %d images per class, seed %d\n", d.SynthClasses, d.SynthPerClass, d.Seed)
		if err := rundir.WriteFileAtomic(marker, []byte(note)); err != nil {
			return fmt.Errorf("synthetic data in %s: %w", d.Root, err)
		}
	}
	return nil
}

// progressLog prints the sweep's progress lines.
type progressLog struct {
	mu       sync.Mutex
	w        io.Writer
	total    int
	workers  int
	start    time.Time
	skipped  int // cells finished before the sweep started
	finished int // cells handed to a worker since, any status
	ran      int // of which Done
	busy     time.Duration
}

func (p *progressLog) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "sweep: "+format+"\n", args...)
}

func (p *progressLog) finish(o Outcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished++
	var what string
	switch o.Status {
	case Done:
		p.ran++
		p.busy += o.Elapsed
		verb := "done   "
		if o.Resumed {
			verb = "resumed"
		}
		what = fmt.Sprintf("%s %s: test top-1 %.2f%% (%s)", verb, o.Cell, o.Result.Test.Top1, o.Elapsed.Round(time.Second))
	case Failed:
		what = fmt.Sprintf("FAILED  %s: %s (log: %s)", o.Cell, cli.FirstLine(o.Err), filepath.Join(o.Cell.Dir, LogFile))
	case Interrupted:
		what = fmt.Sprintf("stopped %s: checkpoint written", o.Cell)
	case Skipped:
		what = fmt.Sprintf("skipped %s: already finished", o.Cell)
	default:
		what = fmt.Sprintf("%s %s", o.Status, o.Cell)
	}
	n := p.skipped + p.finished
	eta := "ETA unknown"
	if p.ran > 0 {
		left := p.total - n
		mean := p.busy / time.Duration(p.ran)
		eta = "ETA " + (mean * time.Duration(left) / time.Duration(p.workers)).Round(time.Second).String()
	}
	width := len(strconv.Itoa(p.total))
	fmt.Fprintf(p.w, "sweep: [%*d/%d] %s; %s elapsed, %s\n", width, n, p.total, what, time.Since(p.start).Round(time.Second), eta)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
