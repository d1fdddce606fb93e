// Package rundir defines a run directory: its file names, the result and
// versions it records, atomic writes of its files, its lock, and reading a
// finished run back. It has no cgo: report and the sweep planner use it
// without linking libtorch.
package rundir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/clipadapter/clipgo/internal/fsutil"
	"github.com/clipadapter/clipgo/metrics"
)

// Files of a run directory.
const (
	ConfigFile     = "config.toml"
	VersionsFile   = "versions.json"
	MetricsFile    = "metrics.jsonl"
	ResultFile     = "result.json"
	CheckpointFile = "last.ckpt"
	BestFile       = "best.ckpt"
	// LockFile is held (flock) by the process running in the directory; it
	// holds that process's id.
	LockFile = ".lock"
	// TestFeaturesFile, TestLogitsFile and TestLabelsFile hold the test
	// set as the method saw it when output.save_test_features is set:
	// features [N, D] as its classifier compares them and logits [N, C]
	// (float32), labels [N] (int64), NumPy format.
	TestFeaturesFile = "test_features.npy"
	TestLogitsFile   = "test_logits.npy"
	TestLabelsFile   = "test_labels.npy"
)

// Lock takes the run directory's lock (an exclusive flock on
// DIR/.lock, released by the returned function or when the process ends,
// however it ends) and writes this process's id into it. When another
// process holds it, the error names that process: two runs in one
// directory (a resubmitted Slurm array task, say) would interleave
// metrics.jsonl and checkpoints.
func Lock(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock run directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "another process"
			} else {
				who = "process " + who
			}
			return nil, fmt.Errorf("%s is in use by %s (its lock %s is held); wait for it to end or stop it", dir, who, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return func() { f.Close() }, nil
}

// Versions records what produced a run.
type Versions struct {
	Toolkit  string `json:"toolkit"`
	Go       string `json:"go"`
	Libtorch string `json:"libtorch"`
	Gotch    string `json:"gotch"`
	// BLAS is the kernel set OpenBLAS chose for the CPU ("OpenBLAS
	// Haswell"); absent when libtorch carries its own BLAS (MKL) and in
	// runs of older versions.
	BLAS    string `json:"blas,omitempty"`
	Device  string `json:"device"`
	Host    string `json:"host,omitempty"`
	Started string `json:"started"`
}

// Result is the content of result.json.
type Result struct {
	Method string `json:"method"`
	// MethodLabel is the method's name as the paper writes it, and
	// MethodRank its place in the paper's tables (both from the method
	// registry when the run was made); reports order and label methods by
	// them. Absent in runs of older versions.
	MethodLabel string             `json:"method_label,omitempty"`
	MethodRank  *int               `json:"method_rank,omitempty"`
	Dataset     string             `json:"dataset"`
	Backbone    string             `json:"backbone"`
	Shots       int                `json:"shots"`
	Seed        int                `json:"seed"`
	Test        metrics.Metrics    `json:"test"`
	Val         *metrics.Metrics   `json:"val,omitempty"`
	Selected    string             `json:"selected"`
	Epochs      int                `json:"epochs"`
	Tuned       map[string]float64 `json:"tuned,omitempty"`
	// SelectOn is train.select_on when it is not the few-shot validation
	// split ("full_val", "test"): the data that chose the epoch and the
	// tuned hyper-parameters. Reports list such runs as a variant of the
	// method.
	SelectOn string  `json:"select_on,omitempty"`
	Seconds  float64 `json:"seconds"`
	Finished string  `json:"finished"`
	// Data is what the split really held: fewer images than data.shots
	// in a class, or none, is recorded here (and warned about). Absent in
	// runs of older versions.
	Data *DataCounts `json:"data,omitempty"`
}

// DataCounts records the images a run used, as opposed to the shots it
// asked for.
type DataCounts struct {
	// Train, Val and Test are the numbers of images used.
	Train int `json:"train"`
	Val   int `json:"val"`
	Test  int `json:"test"`
	// TrainPerClassMin and TrainPerClassMax are the fewest and the most
	// train images of one class.
	TrainPerClassMin int `json:"train_per_class_min"`
	TrainPerClassMax int `json:"train_per_class_max"`
	// ShortClasses are the classes with fewer train images than shots
	// (but at least one), with their count; EmptyClasses those with none.
	ShortClasses map[string]int `json:"short_classes,omitempty"`
	EmptyClasses []string       `json:"empty_classes,omitempty"`
}

// WriteJSON writes v as indented JSON to path atomically.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'))
}

// WriteFileAtomic writes data to path atomically with mode 0644 (see
// fsutil.WriteFile), so readers never see a half-written file.
func WriteFileAtomic(path string, data []byte) error {
	return fsutil.WriteFile(path, data, 0o644)
}

// AppendJSONL appends v as one JSON line to path.
func AppendJSONL(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("append %s: %w", path, err)
	}
	return f.Close()
}

// TruncateJSONL keeps the lines of path whose "epoch" field is below
// epoch, so a resumed run does not repeat metric lines.
func TruncateJSONL(path string, epoch int) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var keep []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var rec struct {
			Epoch *int `json:"epoch"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Epoch != nil && *rec.Epoch > epoch {
			continue
		}
		keep = append(keep, line)
	}
	out := strings.Join(keep, "\n")
	if out != "" {
		out += "\n"
	}
	return WriteFileAtomic(path, []byte(out))
}

// ReadResult reads DIR/result.json.
func ReadResult(dir string) (Result, error) {
	path := filepath.Join(dir, ResultFile)
	var res Result
	b, err := os.ReadFile(path)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("%s: %w", path, err)
	}
	return res, nil
}
