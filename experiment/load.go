package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/sugarme/gotch"

	"github.com/clipadapter/clipgo/clip"
	"github.com/clipadapter/clipgo/clip/weights"
	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/nn"
	"github.com/clipadapter/clipgo/rundir"
)

// LoadModel resolves model.name (official or OpenCLIP name, file, or
// random:ARCH) and loads it. It returns the model and an identity string for feature
// caching.
func LoadModel(ctx context.Context, mc config.ModelConfig, device gotch.Device, progressOut io.Writer) (*clip.Model, string, error) {
	prec, err := clip.ParsePrecision(mc.Precision)
	if err != nil {
		return nil, "", err
	}
	if !device.IsCuda() {
		if w := torch.BLASWarning(); w != "" {
			slog.Warn(w)
		}
	}
	opts := []clip.Option{clip.WithPrecision(prec)}
	if mc.FullTextContext {
		opts = append(opts, clip.WithFullTextContext())
	}
	if arch, ok := strings.CutPrefix(mc.Name, "random:"); ok {
		c, err := clip.ArchConfig(arch)
		if err != nil {
			return nil, "", err
		}
		m, err := clip.New(c, device, mc.Seed, opts...)
		return m, fmt.Sprintf("random:%s:%d:%s", arch, mc.Seed, prec), err
	}
	path, err := weights.Resolve(ctx, mc.Name, weights.Options{CacheDir: mc.CacheDir, Progress: progressOut})
	if err != nil {
		return nil, "", err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, "", err
	}
	if mc.Arch != "" {
		opts = append(opts, clip.WithArchitecture(mc.Arch))
	}
	m, err := clip.Load(path, device, opts...)
	if err != nil {
		return nil, "", err
	}
	abs, _ := filepath.Abs(path)
	id := fmt.Sprintf("%s:%d:%d:%s", abs, st.Size(), st.ModTime().UnixNano(), prec)
	if c := m.Config(); c.Activation != nn.ActQuickGELU || c.VisionHeadWidth != 0 {
		// What the OpenCLIP config added to the weights.
		id += fmt.Sprintf(":%v:%d", c.Activation, c.VisionHeadWidth)
	}
	return m, id, nil
}

// BackboneDigest identifies model.name's weights: the SHA-256 of the
// resolved weights file (an official name resolves to its cached
// download), or for random:ARCH the SHA-256 of "random:ARCH:SEED". A
// finished run records it, and loading the run for inference checks it.
func BackboneDigest(ctx context.Context, mc config.ModelConfig) (string, error) {
	if arch, ok := strings.CutPrefix(mc.Name, "random:"); ok {
		h := sha256.Sum256([]byte(fmt.Sprintf("random:%s:%d", arch, mc.Seed)))
		return hex.EncodeToString(h[:]), nil
	}
	path, err := weights.Resolve(ctx, mc.Name, weights.Options{CacheDir: mc.CacheDir, Progress: io.Discard})
	if err != nil {
		return "", err
	}
	return weights.Digest(path)
}

// LoadData loads the dataset and its few-shot split (the whole train split
// when shots is 0). Dataset "synthetic" is generated in root on first use.
func LoadData(dc config.DataConfig) (*datasets.Dataset, *datasets.Split, error) {
	name := dc.Dataset
	if strings.EqualFold(name, "synthetic") {
		if !datasets.SynthExists(dc.Root) {
			if err := datasets.Synth(dc.Root, dc.SynthClasses, dc.SynthPerClass, uint64(dc.Seed)); err != nil {
				return nil, nil, err
			}
		}
		name = datasets.SynthName
	}
	ds, err := datasets.Load(name, dc.Root)
	if err != nil {
		return nil, nil, err
	}
	if dc.Shots == 0 {
		return ds, &datasets.Split{Train: ds.Train, Val: ds.Val, Source: "full"}, nil
	}
	split, err := datasets.CachedFewShot(ds, dc.Shots, dc.Seed)
	if err != nil {
		return nil, nil, err
	}
	if split.CacheErr != nil {
		slog.Warn("few-shot split not cached", "err", split.CacheErr)
	}
	return ds, split, nil
}

// CurrentVersions describes this binary, the libtorch it links and device.
func CurrentVersions(device string) rundir.Versions {
	host, _ := os.Hostname()
	return rundir.Versions{
		Toolkit:  toolkitRevision(),
		Go:       runtime.Version(),
		Libtorch: torch.Libtorch,
		Gotch:    torch.GotchVersion,
		BLAS:     blasName(),
		Device:   device,
		Host:     host,
		Started:  time.Now().UTC().Format(time.RFC3339),
	}
}

// blasName names the OpenBLAS kernels in use ("OpenBLAS Haswell"), or ""
// when the loaded libtorch uses another BLAS.
func blasName() string {
	if core := torch.BLASCore(); core != "" {
		return "OpenBLAS " + core
	}
	return ""
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
