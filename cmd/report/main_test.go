package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/metrics"
	"github.com/clipadapter/clipgo/report"
	"github.com/clipadapter/clipgo/rundir"
)

func TestReport(t *testing.T) {
	runs := t.TempDir()
	for seed, top1 := range map[int]float64{1: 40, 2: 44} {
		dir := filepath.Join(runs, "dtd_coop_RN50_4shot_seed"+strconv.Itoa(seed))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, rundir.ConfigFile), []byte("[data]\ndataset = \"dtd\"\n"), 0o644)
		b, _ := json.Marshal(rundir.Result{Method: "coop", MethodLabel: "CoOp", Backbone: "RN50", Shots: 4, Seed: seed, Test: metrics.Metrics{Top1: top1}})
		os.WriteFile(filepath.Join(dir, rundir.ResultFile), b, 0o644)
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-runs", runs, "-out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "2 runs in 1 cells") {
		t.Errorf("stdout %q", stdout.String())
	}
	md, err := os.ReadFile(filepath.Join(out, report.MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| CoOp | 42.00 ± 2.00 (2) |") {
		t.Errorf("results.md:\n%s", md)
	}
	for _, f := range []string{report.CSVFile, "plots/RN50_DescribableTextures.png", "plots/RN50_all.svg"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	// No runs: exit 1 with a message naming the folder.
	empty := t.TempDir()
	stderr.Reset()
	if code := run([]string{"-runs", empty}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), empty) {
		t.Errorf("empty folder: exit %d, %q", code, stderr.String())
	}
	if code := run(nil, &stdout, &stderr); code != 2 {
		t.Errorf("no -runs: exit %d", code)
	}
}

// With a sweep file holding [sweep.grid] beside the runs, report writes the
// ablation against its first key, in the file's value order.
func TestReportAblationFromSweepFile(t *testing.T) {
	runs := t.TempDir()
	for _, v := range []struct {
		variant string
		top1    float64
	}{{"visual", 50}, {"text", 40}, {"both", 48}} {
		dir := filepath.Join(runs, "dtd_clip-adapter_RN50_16shot_seed1_variant"+v.variant)
		os.MkdirAll(dir, 0o755)
		cfg := "[data]\ndataset = \"dtd\"\n[method]\nname = \"clip-adapter\"\nvariant = \"" + v.variant + "\"\n"
		os.WriteFile(filepath.Join(dir, rundir.ConfigFile), []byte(cfg), 0o644)
		b, _ := json.Marshal(rundir.Result{Method: "clip-adapter", MethodLabel: "CLIP-Adapter", Backbone: "RN50", Shots: 16, Seed: 1, Test: metrics.Metrics{Top1: v.top1}})
		os.WriteFile(filepath.Join(dir, rundir.ResultFile), b, 0o644)
	}
	sweepFile := "[sweep]\nmethods = [\"clip-adapter\"]\ndatasets = [\"dtd\"]\nbase = \"x.toml\"\nout = \"x\"\n[sweep.grid]\n\"method.variant\" = [\"visual\", \"text\", \"both\"]\n"
	os.WriteFile(filepath.Join(runs, "sweep.toml"), []byte(sweepFile), 0o644)
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-runs", runs, "-out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	md, err := os.ReadFile(filepath.Join(out, report.AblationMarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| method.variant | visual | text | both |\n|---|--:|--:|--:|\n| CLIP-Adapter | 50.00 ± 0.00 (1) | 40.00 ± 0.00 (1) | 48.00 ± 0.00 (1) |") {
		t.Errorf("ablation.md:\n%s", md)
	}
	if _, err := os.Stat(filepath.Join(out, "plots", "ablation_method.variant_RN50_DescribableTextures.svg")); err != nil {
		t.Error(err)
	}
	// -no-ablation writes the shots table (with the three runs as duplicates).
	if code := run([]string{"-runs", runs, "-out", out, "-no-ablation"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(out, report.MarkdownFile)); err != nil {
		t.Error(err)
	}
	// -series without -x is a usage error.
	if code := run([]string{"-runs", runs, "-series", "method.alpha"}, &stdout, &stderr); code != 2 {
		t.Errorf("-series alone: exit %d", code)
	}
}

// report links no cgo package (it runs where libtorch is not installed).
func TestReportHasNoCgo(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if .CgoFiles}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v: %s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("cmd/report depends on cgo packages:\n%s", s)
	}
}

func TestReportManifoldErrors(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-manifold"}, &stdout, &stderr); code != 2 {
		t.Errorf("-manifold without runs: exit %d", code)
	}
	// A finished run that did not save its test features: the message
	// says how to get them.
	dir := filepath.Join(t.TempDir(), "dtd_coop_RN50_4shot_seed1")
	os.MkdirAll(dir, 0o755)
	b, _ := json.Marshal(rundir.Result{Method: "coop", Backbone: "RN50", Shots: 4, Seed: 1})
	os.WriteFile(filepath.Join(dir, rundir.ResultFile), b, 0o644)
	stderr.Reset()
	if code := run([]string{"-manifold", dir}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "output.save_test_features = true") {
		t.Errorf("no features: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"-manifold", "-space", "pixels", dir}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), `space "pixels"`) {
		t.Errorf("bad space: exit %d, %q", code, stderr.String())
	}
}

// TestReportPrintsShiftTable: runs evaluated on ImageNet's variants are
// printed as the distribution-shift table beside the published numbers.
func TestReportPrintsShiftTable(t *testing.T) {
	runs := t.TempDir()
	dir := filepath.Join(runs, "imagenet_coop")
	os.MkdirAll(filepath.Join(dir, rundir.EvalDir), 0o755)
	os.WriteFile(filepath.Join(dir, rundir.ConfigFile), []byte("[data]\ndataset = \"imagenet\"\n"), 0o644)
	b, _ := json.Marshal(rundir.Result{Method: "coop", MethodLabel: "CoOp", Backbone: "RN50", Shots: 16, Seed: 1, Test: metrics.Metrics{Top1: 63}})
	os.WriteFile(filepath.Join(dir, rundir.ResultFile), b, 0o644)
	rundir.WriteJSON(rundir.EvalFile(dir, "imagenet_sketch"), rundir.EvalResult{Dataset: "ImageNetSketch", Test: metrics.Metrics{Top1: 32.5}})
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-runs", runs, "-out", t.TempDir()}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"| method | shots | ImageNet | ImageNetSketch |", "| CoOp | 16 | 63.00 ± 0.00 (1) | 32.50 ± 0.00 (1) |",
		"| ↳ published | | 62.95 [1] | 31.04 [2] |", "Table 5"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
}
