package experiment

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sugarme/gotch/ts"

	"github.com/clipadapter/clipgo/config"
	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/internal/torch"
	"github.com/clipadapter/clipgo/methods"
	"github.com/clipadapter/clipgo/nn"
	"github.com/clipadapter/clipgo/rundir"
	"github.com/clipadapter/clipgo/train"
)

// prototypeOptions are the keys of the test's toy method.
type prototypeOptions struct {
	// Scale multiplies the cosine similarities.
	Scale float64 `toml:"scale"`
}

// prototypes is a toy method registered the way a new method package
// registers: nearest class mean of the normalized train features.
type prototypes struct {
	o     prototypeOptions
	means *ts.Tensor // [C, D], unit rows
}

func (p *prototypes) Init(ctx *train.Context, views []*train.Features) error {
	x, err := torch.Values[float32](views[0].X)
	if err != nil {
		return err
	}
	c, d := len(ctx.ClassNames), int(ctx.FeatureDim)
	means := make([]float32, c*d)
	for i, y := range views[0].Y {
		for j := 0; j < d; j++ {
			means[int(y)*d+j] += x[i*d+j]
		}
	}
	m, err := ts.OfSlice(means)
	if err != nil {
		return err
	}
	defer m.Drop()
	var s torch.Scope
	defer s.Drop()
	m2, err := s.Op("view")(m.View([]int64{int64(c), int64(d)}, false))
	if err != nil {
		return err
	}
	p.means, err = nn.Normalize(m2)
	return err
}

func (p *prototypes) Parameters() []train.Param { return nil }

func (p *prototypes) Logits(f *ts.Tensor, _ bool) (*ts.Tensor, error) {
	var s torch.Scope
	defer s.Drop()
	x, err := s.Op("normalize")(nn.Normalize(f))
	if err != nil {
		return nil, err
	}
	mt, err := s.Op("transpose")(p.means.T(false))
	if err != nil {
		return nil, err
	}
	sim, err := s.Op("similarity")(x.Matmul(mt, false))
	if err != nil {
		return nil, err
	}
	return sim.MulScalar(ts.FloatScalar(p.o.Scale), false)
}

func (p *prototypes) Drop() {
	if p.means != nil {
		p.means.Drop()
	}
}

// withPrototypes is the registry plus the toy method, registered with one
// Register line as a new method package would be.
func withPrototypes() methods.Registry {
	return append(methods.All(), methods.Register("prototypes", "Class prototypes",
		func() prototypeOptions { return prototypeOptions{Scale: 100} },
		func(o prototypeOptions) (train.Method, train.Needs, error) {
			return &prototypes{o: o}, train.Needs{TrainFeatures: true}, nil
		}))
}

// TestRegisteredToyMethodRunsEndToEnd adds a method with one Register
// line and runs it through the whole experiment: its keys are decoded
// strictly and resolved into config.toml, its needs are honoured, and the
// result records its label and registry rank.
func TestRegisteredToyMethodRunsEndToEnd(t *testing.T) {
	reg := withPrototypes()
	dir := t.TempDir()
	text := `
[model]
name = "random:tiny"
device = "cpu"
[data]
dataset = "synthetic"
root = "` + filepath.Join(dir, "data") + `"
synth_classes = 4
synth_per_class = 12
shots = 4
num_workers = 1
[method]
name = "prototypes"
[train]
epochs = 0
[output]
dir = "` + dir + `"
`
	cfg, err := config.Parse(text, []string{"method.scale=50"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	res, err := Run(context.Background(), Options{Config: cfg, Methods: reg, Progress: io.Discard, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if res.Method != "prototypes" || res.MethodLabel != "Class prototypes" || res.MethodRank == nil || *res.MethodRank != len(reg)-1 {
		t.Errorf("result names method %q label %q rank %v", res.Method, res.MethodLabel, res.MethodRank)
	}
	if res.Test.N == 0 || res.Val == nil || res.Val.N == 0 {
		t.Errorf("result evaluated %d test and %v val images", res.Test.N, res.Val)
	}
	resolved, err := os.ReadFile(filepath.Join(dir, cfg.RunName(), rundir.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(resolved), "scale = 50.0") {
		t.Errorf("config.toml lacks the method's resolved key:\n%s", resolved)
	}
	// versions.json names the libtorch, and OpenBLAS's kernels exactly when
	// an OpenBLAS is mapped into the process.
	var v rundir.Versions
	if b, err := os.ReadFile(filepath.Join(dir, cfg.RunName(), rundir.VersionsFile)); err != nil {
		t.Error(err)
	} else if err := json.Unmarshal(b, &v); err != nil {
		t.Errorf("versions.json: %v", err)
	}
	if !strings.HasPrefix(v.Libtorch, "libtorch ") || v.Gotch == "" || v.Device != "cpu" {
		t.Errorf("versions.json: %+v", v)
	}
	if maps, err := os.ReadFile("/proc/self/maps"); err == nil {
		openblas := strings.Contains(string(maps), "/libopenblas")
		if got := strings.HasPrefix(v.BLAS, "OpenBLAS ") && len(v.BLAS) > len("OpenBLAS "); got != openblas {
			t.Errorf("OpenBLAS mapped: %v, versions.json blas %q", openblas, v.BLAS)
		}
	}
	// The registry's strict decoding applies to the new method too.
	bad, err := config.Parse(text, []string{"method.scael=1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Check(bad); err == nil || !strings.Contains(err.Error(), `did you mean "method.scale"`) {
		t.Errorf("misspelt key: %v", err)
	}
}

// TestShortClassesAreWarnedAndRecorded: asking for more shots than the
// classes have (the synthetic train split holds fewer than 50 images a
// class) trains on what there is, warns, and records the real counts in
// result.json; a class without a training image is named too.
func TestShortClassesAreWarnedAndRecorded(t *testing.T) {
	reg := withPrototypes()
	dir := t.TempDir()
	text := `
[model]
name = "random:tiny"
device = "cpu"
[data]
dataset = "synthetic"
root = "` + filepath.Join(dir, "data") + `"
synth_classes = 3
synth_per_class = 10
shots = 50
num_workers = 1
[method]
name = "prototypes"
[train]
epochs = 0
[output]
dir = "` + dir + `"
`
	cfg, err := config.Parse(text, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	res, err := Run(context.Background(), Options{Config: cfg, Methods: reg, Progress: io.Discard, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Data
	if c == nil {
		t.Fatal("result has no data counts")
	}
	if c.Train == 0 || c.Train >= 3*50 || c.TrainPerClassMax >= 50 || len(c.ShortClasses) != 3 || c.Test != res.Test.N || c.Val != res.Val.N {
		t.Errorf("counts %+v (test %d, val %d evaluated)", *c, res.Test.N, res.Val.N)
	}
	sum := 0
	for _, n := range c.ShortClasses {
		sum += n
	}
	if sum != c.Train {
		t.Errorf("short classes hold %d images, the split %d", sum, c.Train)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "fewer training images than data.shots") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
	// The counts are in result.json.
	raw, err := os.ReadFile(filepath.Join(dir, cfg.RunName(), rundir.ResultFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"short_classes"`) || !strings.Contains(string(raw), `"train_per_class_max"`) {
		t.Errorf("result.json lacks the counts:\n%s", raw)
	}
}

// TestCountData counts a split with a short and an empty class.
func TestCountData(t *testing.T) {
	ds := &datasets.Dataset{ClassNames: []string{"a", "b", "c"}}
	items := func(labels ...int) []datasets.Item {
		var out []datasets.Item
		for i, l := range labels {
			out = append(out, datasets.Item{Path: fmt.Sprint(i), Label: l})
		}
		return out
	}
	split := &datasets.Split{Train: items(0, 0, 0, 1), Val: items(0, 1), Shots: 3}
	c := countData(ds, split, items(0, 1, 2))
	want := rundir.DataCounts{Train: 4, Val: 2, Test: 3, TrainPerClassMin: 0, TrainPerClassMax: 3,
		ShortClasses: map[string]int{"b": 1}, EmptyClasses: []string{"c"}}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("counts %+v, want %+v", *c, want)
	}
	// The full split (shots 0) has no short classes, only empty ones.
	split.Shots = 0
	if c := countData(ds, split, nil); c.ShortClasses != nil || len(c.EmptyClasses) != 1 {
		t.Errorf("full split: %+v", *c)
	}
}
