package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/methods"
	"github.com/clipadapter/clipgo/rundir"
	"github.com/clipadapter/clipgo/sweep"
	"github.com/clipadapter/clipgo/train"
)

// demoSweep is a quick sweep on configs/demo.toml (synthetic data, tiny
// random CLIP): methods x 1 dataset x shots x 1 seed.
func demoSweep(t *testing.T, out string, methods string, shots string, extra string) []sweep.Cell {
	t.Helper()
	base, err := filepath.Abs("../../configs/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := sweep.Parse(`[sweep]
methods = [` + methods + `]
datasets = ["synthetic"]
shots = [` + shots + `]
seeds = [1]
base = "` + base + `"
out = "` + out + `"
set = ["data.root=` + filepath.Join(out, "data") + `", "data.synth_classes=4", "data.synth_per_class=12",
       "model.device=cpu", "train.eval_every=0", "train.augment_views=2"]
` + extra)
	if err != nil {
		t.Fatal(err)
	}
	cells, err := f.Expand()
	if err != nil {
		t.Fatal(err)
	}
	return cells
}

// syncBuffer is a bytes.Buffer safe for the workers' progress lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func statuses(sum Summary) []Status {
	var out []Status
	for _, o := range sum.Outcomes {
		out = append(out, o.Status)
	}
	return out
}

// TestRunLocalRunsSkipsAndReportsFailures: a sweep with a failing cell runs
// the others, reports the failure, and a second run skips the finished
// cells without touching them.
func TestRunLocalRunsSkipsAndReportsFailures(t *testing.T) {
	out := t.TempDir()
	// "nope" passes config checks but is not in the method table.
	cells := demoSweep(t, out, `"zeroshot", "nope", "linear-probe"`, "1, 2", "")
	var progress syncBuffer
	sum := Run(context.Background(), cells, Options{Workers: 2, Methods: methods.All(), Progress: &progress})
	want := []Status{Done, Done, Failed, Failed, Done, Done}
	if got := statuses(sum); !equalStatuses(got, want) {
		t.Fatalf("statuses %v, want %v\n%s", got, want, progress.String())
	}
	if err := sum.Err(); err == nil || !strings.Contains(err.Error(), "2 of 6 cells failed") {
		t.Errorf("Err() = %v", err)
	}
	if !strings.Contains(sum.Outcomes[2].Err.Error(), `unknown method "nope"`) {
		t.Errorf("failure: %v", sum.Outcomes[2].Err)
	}
	p := progress.String()
	for _, want := range []string{"FAILED  nope synthetic 1-shot seed 1", "/6] done    linear-probe synthetic 2-shot seed 1: test top-1", "ETA"} {
		if !strings.Contains(p, want) {
			t.Errorf("progress lacks %q:\n%s", want, p)
		}
	}
	mtimes := map[string]time.Time{}
	for _, o := range sum.Outcomes {
		if o.Status != Done {
			continue
		}
		var r rundir.Result
		b, err := os.ReadFile(filepath.Join(o.Cell.Dir, rundir.ResultFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if r.Method != o.Cell.Method || r.Shots != o.Cell.Shots || r.Seed != 1 || r.Test.Top1 != o.Result.Test.Top1 {
			t.Errorf("%s: result.json %+v", o.Cell, r)
		}
		st, _ := os.Stat(filepath.Join(o.Cell.Dir, rundir.ResultFile))
		mtimes[o.Cell.Dir] = st.ModTime()
	}

	progress = syncBuffer{}
	sum = Run(context.Background(), cells, Options{Workers: 1, Methods: methods.All(), Progress: &progress})
	want = []Status{Skipped, Skipped, Failed, Failed, Skipped, Skipped}
	if got := statuses(sum); !equalStatuses(got, want) {
		t.Fatalf("rerun statuses %v, want %v", got, want)
	}
	if !strings.Contains(progress.String(), "4 of 6 cells already finished, 2 to run") {
		t.Errorf("rerun progress:\n%s", progress.String())
	}
	for dir, m := range mtimes {
		st, _ := os.Stat(filepath.Join(dir, rundir.ResultFile))
		if !st.ModTime().Equal(m) {
			t.Errorf("%s: a finished cell was run again", dir)
		}
	}
}

// TestRunLocalInterruptAndResume cancels the sweep while a cell trains:
// the cell writes a checkpoint, later cells do not start, and the next run
// resumes the cell from its checkpoint (each epoch logged once) and runs
// the rest.
func TestRunLocalInterruptAndResume(t *testing.T) {
	out := t.TempDir()
	cells := demoSweep(t, out, `"coop"`, "2, 4", "epochs_by_shots = {2 = 60, 4 = 5}\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	metrics := filepath.Join(cells[0].Dir, rundir.MetricsFile)
	go func() {
		// No time limit (the deferred cancel ends it): a loaded machine
		// only makes it wait longer.
		for ctx.Err() == nil {
			if b, _ := os.ReadFile(metrics); bytes.Count(b, []byte("\n")) >= 3 {
				cancel()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var progress syncBuffer
	sum := Run(ctx, cells, Options{Workers: 1, Methods: methods.All(), Progress: &progress})
	if got := statuses(sum); !equalStatuses(got, []Status{Interrupted, NotStarted}) {
		t.Fatalf("statuses %v, want [interrupted not started]\n%s", got, progress.String())
	}
	if err := sum.Err(); !errors.Is(err, train.ErrInterrupted) {
		t.Errorf("Err() = %v, want ErrInterrupted", err)
	}
	if _, err := os.Stat(filepath.Join(cells[0].Dir, rundir.CheckpointFile)); err != nil {
		t.Fatal("no checkpoint after the interruption")
	}

	progress = syncBuffer{}
	sum = Run(context.Background(), cells, Options{Workers: 1, Methods: methods.All(), Progress: &progress})
	if got := statuses(sum); !equalStatuses(got, []Status{Done, Done}) {
		t.Fatalf("statuses %v, want [done done]\n%s", got, progress.String())
	}
	if !sum.Outcomes[0].Resumed || sum.Outcomes[1].Resumed {
		t.Errorf("resumed: %v %v, want true false", sum.Outcomes[0].Resumed, sum.Outcomes[1].Resumed)
	}
	if sum.Err() != nil {
		t.Errorf("Err() = %v", sum.Err())
	}
	b, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	var epochs []int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct{ Epoch int }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		epochs = append(epochs, rec.Epoch)
	}
	if len(epochs) != 60 {
		t.Fatalf("metrics.jsonl has %d epochs, want 60", len(epochs))
	}
	for i, e := range epochs {
		if e != i+1 {
			t.Fatalf("metrics.jsonl epochs %v: want 1..60 once each", epochs)
		}
	}
	log, _ := os.ReadFile(filepath.Join(cells[0].Dir, LogFile))
	if !strings.Contains(string(log), "msg=resumed") {
		t.Errorf("%s does not record the resume", LogFile)
	}
}

func equalStatuses(a, b []Status) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRunLocalEvaluatesFinishedCells: with [sweep] eval, each finished
// cell is evaluated on the listed datasets once (RUN/eval/<dataset>.json);
// a missing evaluation of a finished cell is made by the next run without
// training again.
func TestRunLocalEvaluatesFinishedCells(t *testing.T) {
	out := t.TempDir()
	data := filepath.Join(out, "data")
	if err := datasets.Synth(data, 4, 12, 1); err != nil {
		t.Fatal(err)
	}
	ds, err := datasets.Load(datasets.SynthName, data)
	if err != nil {
		t.Fatal(err)
	}
	// An ImageNet-R-like copy of two classes (one image each).
	shift := t.TempDir()
	var cn strings.Builder
	for _, c := range []string{ds.ClassNames[1], ds.ClassNames[2]} {
		fmt.Fprintf(&cn, "%s %s\n", c, c)
		p := filepath.Join(shift, "imagenet-rendition", "imagenet-r", c, "x.png")
		os.MkdirAll(filepath.Dir(p), 0o755)
		f, _ := os.Create(p)
		png.Encode(f, image.NewGray(image.Rect(0, 0, 20, 20)))
		f.Close()
	}
	os.WriteFile(filepath.Join(shift, "imagenet-rendition", "classnames.txt"), []byte(cn.String()), 0o644)

	spec := func(root string) string {
		return `eval = ["imagenet_r"]
eval_from = ["synthetic"]
eval_root = "` + root + `"`
	}
	cells := demoSweep(t, out, `"linear-probe"`, "1", spec(shift))
	o := Options{Workers: 1, Methods: methods.All(), Eval: func(c sweep.Cell) []string { return []string{"imagenet_r"} }, EvalRoot: shift}
	sum := Run(context.Background(), cells, o)
	if got := statuses(sum); !equalStatuses(got, []Status{Done}) {
		t.Fatalf("statuses %v: %v", got, sum.Outcomes[0].Err)
	}
	evalFile := rundir.EvalFile(cells[0].Dir, "imagenet_r")
	evals, err := rundir.ReadEvals(cells[0].Dir)
	if err != nil {
		t.Fatal(err)
	}
	if e := evals["imagenet_r"]; e.Classes != 2 || e.Test.N != 2 || !e.Restricted || e.Method != "linear-probe" {
		t.Errorf("eval/imagenet_r.json: %+v", e)
	}
	st, _ := os.Stat(evalFile)

	// Finished and evaluated: nothing to do.
	sum = Run(context.Background(), cells, o)
	if got := statuses(sum); !equalStatuses(got, []Status{Skipped}) {
		t.Fatalf("rerun statuses %v", got)
	}
	if st2, _ := os.Stat(evalFile); !st2.ModTime().Equal(st.ModTime()) {
		t.Error("the evaluation was made again")
	}
	// A missing evaluation is made without training again; one that fails
	// fails the cell.
	os.Remove(evalFile)
	bad := o
	bad.EvalRoot = filepath.Join(out, "nowhere")
	sum = Run(context.Background(), cells, bad)
	if got := statuses(sum); !equalStatuses(got, []Status{Failed}) || !strings.Contains(sum.Outcomes[0].Err.Error(), "evaluate on imagenet_r") {
		t.Fatalf("bad eval root: %v %v", statuses(sum), sum.Outcomes[0].Err)
	}
	sum = Run(context.Background(), cells, o)
	if got := statuses(sum); !equalStatuses(got, []Status{Skipped}) {
		t.Fatalf("statuses %v: %v", got, sum.Outcomes[0].Err)
	}
	if _, err := os.Stat(evalFile); err != nil {
		t.Errorf("evaluation not made again: %v", err)
	}
	// The sweep file's eval keys give the same list.
	f, err := sweep.Parse(`[sweep]
methods = ["zeroshot"]
datasets = ["synthetic", "dtd"]
base = "x.toml"
out = "o"
` + spec(shift))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Sweep.EvalDatasets(sweep.Cell{Dataset: "synthetic"}); len(got) != 1 || got[0] != "imagenet_r" {
		t.Errorf("EvalDatasets(synthetic) = %v", got)
	}
	if got := f.Sweep.EvalDatasets(sweep.Cell{Dataset: "dtd"}); got != nil {
		t.Errorf("EvalDatasets(dtd) = %v", got)
	}
	if _, err := sweep.Parse("[sweep]\nmethods=[\"zeroshot\"]\ndatasets=[\"x\"]\nbase=\"b\"\nout=\"o\"\neval=[\"imagenet_q\"]\n"); err == nil || !strings.Contains(err.Error(), `unknown dataset "imagenet_q"`) {
		t.Errorf("unknown eval dataset: %v", err)
	}
}
