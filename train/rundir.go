package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/clipadapter/clipgo/internal/fsutil"
	"github.com/clipadapter/clipgo/internal/torch"
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
)

// LockRunDir takes the run directory's lock (an exclusive flock on
// DIR/.lock, released by the returned function or when the process ends,
// however it ends) and writes this process's id into it. When another
// process holds it, the error names that process: two runs in one
// directory (a resubmitted Slurm array task, say) would interleave
// metrics.jsonl and checkpoints.
func LockRunDir(dir string) (unlock func(), err error) {
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
	Device   string `json:"device"`
	Host     string `json:"host,omitempty"`
	Started  string `json:"started"`
}

// CurrentVersions describes this binary, the libtorch it links and device.
func CurrentVersions(device string) Versions {
	host, _ := os.Hostname()
	return Versions{
		Toolkit:  toolkitRevision(),
		Go:       runtime.Version(),
		Libtorch: torch.Libtorch,
		Gotch:    torch.GotchVersion,
		Device:   device,
		Host:     host,
		Started:  time.Now().UTC().Format(time.RFC3339),
	}
}

// toolkitRevision returns the VCS revision stamped into the binary, or asks
// git when the binary was built without it (go run), with "+dirty" for
// uncommitted changes.
func toolkitRevision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "+dirty"
			}
			return rev
		}
	}
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		rev += "+dirty"
	}
	return rev
}

// Result is the content of result.json.
type Result struct {
	Method   string             `json:"method"`
	Dataset  string             `json:"dataset"`
	Backbone string             `json:"backbone"`
	Shots    int                `json:"shots"`
	Seed     int                `json:"seed"`
	Test     Metrics            `json:"test"`
	Val      *Metrics           `json:"val,omitempty"`
	Selected string             `json:"selected"`
	Epochs   int                `json:"epochs"`
	Tuned    map[string]float64 `json:"tuned,omitempty"`
	Seconds  float64            `json:"seconds"`
	Finished string             `json:"finished"`
}

// RunName derives a run directory name from the configuration. The
// backbone is the model name with "/" as "-" (ViT-B-32), or a weight
// file's base name without extension.
func RunName(c *Config) string {
	backbone := c.Model.Name
	if ext := strings.ToLower(filepath.Ext(backbone)); ext == ".pt" || ext == ".pth" || ext == ".bin" {
		backbone = strings.TrimSuffix(filepath.Base(backbone), filepath.Ext(backbone))
	}
	backbone = regexp.MustCompile(`[^A-Za-z0-9.@-]+`).ReplaceAllString(backbone, "-")
	return fmt.Sprintf("%s_%s_%s_%dshot_seed%d", c.Data.Dataset, c.MethodName(), backbone, c.Data.Shots, c.Data.Seed)
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
