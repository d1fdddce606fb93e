package report

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/metrics"
	"github.com/clipadapter/clipgo/rundir"
)

// writeEval writes RUN/eval/<file>.json as cmd/eval does.
func writeEval(t *testing.T, dir, file, dataset string, top1 float64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, rundir.EvalDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := rundir.WriteJSON(rundir.EvalFile(dir, file), rundir.EvalResult{Dataset: dataset, Test: metrics.Metrics{Top1: top1, N: 10}}); err != nil {
		t.Fatal(err)
	}
}

// TestShiftTable: runs evaluated on ImageNet's variants make the
// distribution-shift table (mean ± std over seeds per dataset, the
// papers' column order, the published numbers of the Tip-Adapter paper's
// Table 5), in results.md and on its own.
func TestShiftTable(t *testing.T) {
	root := t.TempDir()
	for i, v := range []struct{ in, v2, a float64 }{{62, 54, 20}, {64, 56, 22}} {
		dir := filepath.Join(root, "tip", string(rune('1'+i)))
		writeRun(t, dir, "imagenet", "tip-adapter", "RN50", 16, i+1, v.in)
		writeEval(t, dir, "imagenet_a", "ImageNetA", v.a)
		writeEval(t, dir, "imagenetv2", "ImageNetV2", v.v2)
	}
	zs := filepath.Join(root, "zs")
	writeRun(t, zs, "imagenet", "zeroshot", "RN50", 1, 1, 60)
	writeEval(t, zs, "imagenet_sketch", "ImageNetSketch", 35)
	// A run without evaluations is not in the shift table.
	writeRun(t, filepath.Join(root, "dtd"), "dtd", "coop", "RN50", 16, 1, 60)

	runs, err := Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := PublishedResults()
	if err != nil {
		t.Fatal(err)
	}
	tab := Aggregate(runs, pub)
	rows := tab.Shift
	if len(rows) != 2 {
		t.Fatalf("%d shift rows, want 2: %+v", len(rows), rows)
	}
	// Rows go by shots, descending.
	tr, zr := rows[0], rows[1]
	if tr.Method != "tip-adapter" || zr.Method != "zeroshot" || zr.Shots != 0 {
		t.Fatalf("rows %+v", rows)
	}
	if want := []string{"ImageNet", "ImageNetV2", "ImageNetA"}; !slices.Equal(tr.Columns, want) {
		t.Errorf("columns %v, want %v", tr.Columns, want)
	}
	for i, want := range []float64{63, 55, 21} {
		if c := tr.Cells[i]; math.Abs(c.Mean-want) > 1e-9 || math.Abs(c.Std-1) > 1e-9 || len(c.Values) != 2 {
			t.Errorf("%s: %+v, want mean %.0f std 1 over 2 seeds", tr.Columns[i], c, want)
		}
	}
	if p := tr.Cells[1].Published; p == nil || p.Top1 != 54.60 || !strings.Contains(p.Source, "Table 5") {
		t.Errorf("published ImageNetV2 Tip-Adapter: %+v", p)
	}
	if tr.Cells[2].Published != nil {
		t.Errorf("a published ImageNet-A number appeared: %+v", tr.Cells[2].Published)
	}
	if p := zr.Cells[1].Published; zr.Columns[1] != "ImageNetSketch" || p == nil || p.Top1 != 35.44 {
		t.Errorf("zero-shot row %+v", zr)
	}

	var b strings.Builder
	if err := tab.WriteMarkdown(&b, "test"); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"## Distribution shift",
		"### RN50, trained on ImageNet",
		"| method | shots | ImageNet | ImageNetV2 | ImageNetSketch | ImageNetA |",
		"| Tip-Adapter | 16 | 63.00 ± 1.00 (2) | 55.00 ± 1.00 (2) |  | 21.00 ± 1.00 (2) |",
		"| Zero-shot CLIP | 0 | 60.00 ± 0.00 (1) |  | 35.00 ± 0.00 (1) |  |",
		"| ↳ published | | 62.01 [",
		"Table 5",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	b.Reset()
	if err := WriteShiftMarkdown(&b, rows, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Sources:\n\n1. ") {
		t.Errorf("standalone shift table lacks its sources:\n%s", b.String())
	}
}
