package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
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
