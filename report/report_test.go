package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/metrics"
	"github.com/clipadapter/clipgo/rundir"
)

func find0(pub []Published, ds, m, bb string, k int) *Published {
	for i := range pub {
		if p := &pub[i]; p.Dataset == ds && p.Method == m && p.Backbone == bb && p.Shots == k {
			return p
		}
	}
	return nil
}

func TestPublishedResults(t *testing.T) {
	pub, err := PublishedResults()
	if err != nil {
		t.Fatal(err)
	}
	// 11 datasets x (zero-shot + 3 methods x 5 shots), ImageNet CoOp and
	// linear probe x 5 shots, 16 averages, 18 other-backbone entries, 12
	// distribution-shift entries, 10 ViT-B/16 averages; methods after the
	// paper: GDA (ImageNet, 5 averages, 2 ViT-B/16), ProLIP (5 averages),
	// CoCoOp (1 ViT-B/16 average).
	if len(pub) != 11*16+10+16+18+12+10+8+5+1 {
		t.Errorf("%d published numbers, want 256", len(pub))
	}
	if p := find0(pub, "Average", "gda", "RN50", 16); p == nil || p.Top1 != 76.05 {
		t.Errorf("GDA's 16-shot RN50 average: %+v", p)
	}
	find := func(ds, m, bb string, k int) *Published {
		for i := range pub {
			if p := &pub[i]; p.Dataset == ds && p.Method == m && p.Backbone == bb && p.Shots == k {
				return p
			}
		}
		return nil
	}
	// Values read from docs/results.md (§1–§4).
	tests := []struct {
		ds, m, bb string
		shots     int
		top1      float64
		source    string
	}{
		{"ImageNet", "clip-adapter", "RN50", 16, 63.59, "exp.log"},
		{"ImageNet", "zeroshot", "RN50", 0, 60.32, "exp.log"},
		{"ImageNet", "coop", "RN50", 1, 57.15, "Table 2"},
		{"ImageNet", "linear-probe", "RN50", 16, 56.13, "Table 2"},
		{"EuroSAT", "tip-adapter-f", "RN50", 1, 59.53, "exp.log"},
		{"DescribableTextures", "zeroshot", "RN50", 0, 42.20, "exp.log"},
		{"OxfordFlowers", "clip-adapter", "RN50", 16, 93.90, "issue #7"},
		{"FGVCAircraft", "tip-adapter", "RN50", 2, 21.21, "exp.log"},
		{"ImageNet", "coop", "ViT-B/16", 16, 71.92, "Table 3"},
		{"ImageNet", "tip-adapter-f", "RN50x16", 16, 75.81, "Table 3"},
		{"Average", "clip-adapter", "RN50", 16, 74.44, "computed"},
		{"Average", "zeroshot", "RN50", 0, 58.89, "computed"},
		{"ImageNetV2", "tip-adapter-f", "RN50", 16, 57.11, "Table 5"},
		{"ImageNetSketch", "zeroshot", "RN50", 0, 35.44, "Table 5"},
		{"ImageNetSketch", "linear-probe", "RN50", 16, 19.13, "Table 5"},
		{"Average", "coop", "ViT-B/16", 1, 67.56, "PromptSRC"},
		{"Average", "linear-probe", "ViT-B/16", 16, 78.79, "PromptSRC"},
	}
	for _, tt := range tests {
		p := find(tt.ds, tt.m, tt.bb, tt.shots)
		if p == nil {
			t.Errorf("no published %s %s %s %d-shot", tt.ds, tt.m, tt.bb, tt.shots)
			continue
		}
		if p.Top1 != tt.top1 || !strings.Contains(p.Source, tt.source) {
			t.Errorf("%s %s %s %d-shot = %.2f (%s), want %.2f from %s", tt.ds, tt.m, tt.bb, tt.shots, p.Top1, p.Source, tt.top1, tt.source)
		}
	}
	if find("Caltech101", "coop", "RN50", 16) != nil || find("ImageNet", "coop", "RN50x16", 16) != nil {
		t.Error("a number docs/results.md does not have is in the table")
	}
	// The stored averages are the means of the stored per-dataset numbers,
	// to their two decimals.
	for _, m := range []string{"zeroshot", "clip-adapter", "tip-adapter", "tip-adapter-f"} {
		shots := []int{1, 2, 4, 8, 16}
		if m == "zeroshot" {
			shots = []int{0}
		}
		for _, k := range shots {
			sum := 0.0
			for _, ds := range paperDatasets {
				p := find(ds, m, "RN50", k)
				if p == nil {
					t.Fatalf("no published %s %s %d-shot", ds, m, k)
				}
				sum += p.Top1
			}
			avg := find(AverageDataset, m, "RN50", k)
			if mean := sum / 11; avg == nil || math.Abs(mean-avg.Top1) > 0.005+1e-9 {
				t.Errorf("%s %d-shot: mean of the 11 datasets %.4f, stored average %v", m, k, mean, avg)
			}
		}
	}
}

func TestParsePublishedErrors(t *testing.T) {
	head := "dataset,method,backbone,shots,top1,source\n"
	for _, text := range []string{
		"a,b\n",
		head + "ImageNet,coop,RN50,x,1,src\n",
		head + "ImageNet,coop,RN50,1,101,src\n",
		head + "ImageNet,coop,RN50,1,50,src\nImageNet,coop,RN50,1,51,src\n",
	} {
		if _, err := parsePublished(text); err == nil {
			t.Errorf("parsePublished(%q) succeeded", text)
		}
	}
}

// registryOrder and registryLabels are what the method registry records in
// result.json for the paper's methods (method_rank, method_label).
var (
	registryOrder  = []string{"zeroshot", "linear-probe", "coop", "clip-adapter", "tip-adapter", "tip-adapter-f"}
	registryLabels = []string{"Zero-shot CLIP", "Linear probe", "CoOp", "CLIP-Adapter", "Tip-Adapter", "Tip-Adapter-F"}
)

// writeRun writes a run directory as train does: config.toml (only the
// data.dataset matters) and result.json.
func writeRun(t *testing.T, dir, dataset, method, backbone string, shots, seed int, top1 float64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("[model]\nname = %q\n[data]\ndataset = %q\nshots = %d\nseed = %d\n[method]\nname = %q\n", backbone, dataset, shots, seed, method)
	if err := os.WriteFile(filepath.Join(dir, rundir.ConfigFile), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	res := rundir.Result{Method: method, Dataset: "as loaded", Backbone: backbone, Shots: shots, Seed: seed, Test: metrics.Metrics{Top1: top1, Top5: 99, N: 100}}
	// The label and rank train records from the method registry.
	if i := slices.Index(registryOrder, method); i >= 0 {
		res.MethodLabel, res.MethodRank = registryLabels[i], &i
	}
	b, _ := json.Marshal(res)
	if err := os.WriteFile(filepath.Join(dir, rundir.ResultFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testRuns writes a small tree of runs with hand-picked accuracies.
func testRuns(t *testing.T) string {
	root := t.TempDir()
	a := filepath.Join(root, "a")
	for i, v := range []float64{60, 62, 64} {
		writeRun(t, filepath.Join(a, fmt.Sprintf("dtd_ca_%d", i+1)), "dtd", "clip-adapter", "RN50", 16, i+1, v)
	}
	for i, v := range []float64{80, 81, 85} {
		writeRun(t, filepath.Join(a, fmt.Sprintf("eurosat_ca_%d", i+1)), "eurosat", "clip-adapter", "RN50", 16, i+1, v)
	}
	// Zero-shot runs at two shot counts are pooled.
	writeRun(t, filepath.Join(a, "dtd_zs_1"), "dtd", "zeroshot", "RN50", 1, 1, 42)
	writeRun(t, filepath.Join(a, "dtd_zs_16"), "dtd", "zeroshot", "RN50", 16, 1, 42)
	// A later copy of a DTD run is ignored.
	writeRun(t, filepath.Join(root, "b-copy", "dtd_ca_1"), "dtd", "clip-adapter", "RN50", 16, 1, 99)
	// A synthetic run on another backbone.
	writeRun(t, filepath.Join(root, "demo", "syn"), "synthetic", "coop", "random:tiny", 4, 1, 30)
	// Hidden folders (the feature cache) are not searched.
	os.MkdirAll(filepath.Join(root, ".features", "x"), 0o755)
	os.WriteFile(filepath.Join(root, ".features", "x", rundir.ResultFile), []byte("not json"), 0o644)
	// Unfinished runs (no result.json) are not runs.
	os.MkdirAll(filepath.Join(a, "unfinished"), 0o755)
	os.WriteFile(filepath.Join(a, "unfinished", rundir.ConfigFile), []byte("[data]\ndataset = \"dtd\"\n"), 0o644)
	return root
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12 }

func TestAggregate(t *testing.T) {
	root := testRuns(t)
	runs, err := Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 10 {
		t.Fatalf("collected %d runs, want 10", len(runs))
	}
	pub, err := PublishedResults()
	if err != nil {
		t.Fatal(err)
	}
	tab := Aggregate(runs, pub)
	if len(tab.Duplicates) != 1 || !strings.Contains(tab.Duplicates[0], "b-copy") {
		t.Errorf("duplicates %v", tab.Duplicates)
	}
	type want struct {
		bb, ds, m       string
		shots           int
		seeds           []int
		mean, std       float64
		published       float64 // NaN: none
		datasetsCovered int
	}
	nan := math.NaN()
	wants := []want{
		{"RN50", "DescribableTextures", "zeroshot", 0, []int{1, 1}, 42, 0, 42.20, 1},
		{"RN50", "DescribableTextures", "clip-adapter", 16, []int{1, 2, 3}, 62, math.Sqrt(8.0 / 3), 65.96, 1},
		{"RN50", "EuroSAT", "clip-adapter", 16, []int{1, 2, 3}, 82, math.Sqrt(14.0 / 3), 84.43, 1},
		// Per-seed averages 70, 71.5, 74.5; two datasets: no published average.
		{"RN50", "Average", "clip-adapter", 16, []int{1, 2, 3}, 72, math.Sqrt(3.5), nan, 2},
		{"random:tiny", "synthetic", "coop", 4, []int{1}, 30, 0, nan, 1},
	}
	if len(tab.Stats) != len(wants) {
		for _, s := range tab.Stats {
			t.Logf("%+v", s)
		}
		t.Fatalf("%d stats, want %d", len(tab.Stats), len(wants))
	}
	for i, w := range wants {
		s := tab.Stats[i]
		if s.Backbone != w.bb || s.Dataset != w.ds || s.Method != w.m || s.Shots != w.shots {
			t.Errorf("stat %d is %s %s %s %d-shot, want %s %s %s %d-shot", i, s.Backbone, s.Dataset, s.Method, s.Shots, w.bb, w.ds, w.m, w.shots)
			continue
		}
		if !slices.Equal(s.Seeds, w.seeds) || !near(s.Mean, w.mean) || !near(s.Std, w.std) || s.Datasets != w.datasetsCovered {
			t.Errorf("%s %s: seeds %v mean %v std %v datasets %d; want %v %v %v %d", s.Dataset, s.Method, s.Seeds, s.Mean, s.Std, s.Datasets, w.seeds, w.mean, w.std, w.datasetsCovered)
		}
		switch {
		case math.IsNaN(w.published) && s.Published != nil:
			t.Errorf("%s %s: published %v, want none", s.Dataset, s.Method, s.Published)
		case !math.IsNaN(w.published) && (s.Published == nil || s.Published.Top1 != w.published || !near(s.Delta(), w.mean-w.published)):
			t.Errorf("%s %s: published %v delta %v, want %v", s.Dataset, s.Method, s.Published, s.Delta(), w.published)
		}
	}
}

// With all 11 datasets, the average is compared with the published one.
func TestAggregateAverageOverPaperDatasets(t *testing.T) {
	pub, _ := PublishedResults()
	var runs []Run
	sum := 0.0
	for _, p := range pub {
		if p.Method == "clip-adapter" && p.Backbone == "RN50" && p.Shots == 1 && p.Dataset != AverageDataset {
			for seed := 1; seed <= 3; seed++ {
				v := p.Top1 + float64(seed-2) // seeds 1, 2, 3: -1, 0, +1
				runs = append(runs, Run{Dir: fmt.Sprintf("%s_%d", p.Dataset, seed), Dataset: p.Dataset, Method: p.Method, Backbone: "RN50", Shots: 1, Seed: seed, Top1: v})
			}
			sum += p.Top1
		}
	}
	if len(runs) != 33 {
		t.Fatalf("%d runs, want 33", len(runs))
	}
	tab := Aggregate(runs, pub)
	avg := tab.Select("RN50", AverageDataset)
	if len(avg) != 1 || avg[0].Datasets != 11 || avg[0].Published == nil || avg[0].Published.Top1 != 62.67 {
		t.Fatalf("average %+v", avg)
	}
	if a := avg[0]; math.Abs(a.Mean-sum/11) > 1e-9 || math.Abs(a.Std-math.Sqrt(2.0/3)) > 1e-9 || math.Abs(a.Delta()) > 0.005 {
		t.Errorf("average mean %v std %v delta %v; want %v, %v, |delta| <= 0.005", a.Mean, a.Std, a.Delta(), sum/11, math.Sqrt(2.0/3))
	}
}

func TestWriteMarkdownAndCSV(t *testing.T) {
	root := testRuns(t)
	runs, _ := Collect(root)
	pub, _ := PublishedResults()
	tab := Aggregate(runs, pub)
	var md bytes.Buffer
	if err := tab.WriteMarkdown(&md, "10 runs"); err != nil {
		t.Fatal(err)
	}
	text := md.String()
	for _, want := range []string{
		"## RN50\n",
		"### DescribableTextures\n\n| method | 0 | 16 |\n|---|--:|--:|\n",
		"| Zero-shot CLIP | 42.00 ± 0.00 (2) |  |\n| ↳ published | 42.20 [1] |  |\n| ↳ Δ | -0.20 |  |\n",
		"| CLIP-Adapter |  | 62.00 ± 1.63 (3) |\n| ↳ published |  | 65.96 [2] |\n| ↳ Δ |  | -3.96 |\n",
		"### Average over 2 datasets\n\n| method | 16 |\n|---|--:|\n| CLIP-Adapter | 72.00 ± 1.87 |\n",
		"## random:tiny\n\n### synthetic\n\n| method | 4 |\n|---|--:|\n| CoOp | 30.00 ± 0.00 (1) |\n",
		"1. Tip-Adapter exp.log (gaopengcuhk/Tip-Adapter, updated 2023-05-10): zero-shot CLIP\n",
		"## Ignored duplicate runs",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, text)
		}
	}
	// The average has no published row (2 of 11 datasets).
	if i := strings.Index(text, "### Average"); strings.Contains(text[i:strings.Index(text, "## random:tiny")], "published") {
		t.Errorf("an average over 2 datasets is compared with the published one:\n%s", text)
	}

	var cb bytes.Buffer
	if err := tab.WriteCSV(&cb); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+len(tab.Stats) || !slices.Equal(recs[0], csvHeader) {
		t.Fatalf("CSV:\n%v", recs)
	}
	wantRows := [][]string{
		{"RN50", "DescribableTextures", "zeroshot", "0", "2", "1 1", "42.0000", "0.0000", "1", "42.20", "-0.2000"},
		{"RN50", "DescribableTextures", "clip-adapter", "16", "3", "1 2 3", "62.0000", "1.6330", "1", "65.96", "-3.9600"},
		{"RN50", "EuroSAT", "clip-adapter", "16", "3", "1 2 3", "82.0000", "2.1602", "1", "84.43", "-2.4300"},
		{"RN50", "Average", "clip-adapter", "16", "2", "1 2 3", "72.0000", "1.8708", "2", "", ""},
		{"random:tiny", "synthetic", "coop", "4", "1", "1", "30.0000", "0.0000", "1", "", ""},
	}
	for i, w := range wantRows {
		if got := recs[i+1][:11]; !slices.Equal(got, w) {
			t.Errorf("CSV row %d = %q, want %q", i+1, got, w)
		}
	}
	if !strings.Contains(recs[2][11], "CLIP-Adapter issue #7") {
		t.Errorf("CSV source %q", recs[2][11])
	}
}

func TestWritePlots(t *testing.T) {
	root := testRuns(t)
	runs, _ := Collect(root)
	pub, _ := PublishedResults()
	tab := Aggregate(runs, pub)
	out := t.TempDir()
	paths, err := tab.Write(out, "test")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimPrefix(p, out+"/"))
	}
	want := []string{"results.md", "results.csv",
		"plots/RN50_Average.png", "plots/RN50_Average.svg",
		"plots/RN50_DescribableTextures.png", "plots/RN50_DescribableTextures.svg",
		"plots/RN50_EuroSAT.png", "plots/RN50_EuroSAT.svg",
		"plots/RN50_all.png", "plots/RN50_all.svg",
		"plots/random-tiny_synthetic.png", "plots/random-tiny_synthetic.svg",
		"plots/random-tiny_all.png", "plots/random-tiny_all.svg",
	}
	if !slices.Equal(names, want) {
		t.Errorf("wrote %q, want %q", names, want)
	}
	red := rankColors[slices.Index(registryOrder, "clip-adapter")]
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		switch filepath.Ext(p) {
		case ".png":
			img, err := png.Decode(f)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				break
			}
			bnd := img.Bounds()
			if bnd.Dx() < 300 || bnd.Dy() < 200 {
				t.Errorf("%s is %v", p, bnd)
			}
			// The CLIP-Adapter series is drawn in its colour.
			if strings.Contains(p, "RN50_DescribableTextures") || strings.Contains(p, "RN50_all") {
				found := false
				for y := bnd.Min.Y; y < bnd.Max.Y && !found; y++ {
					for x := bnd.Min.X; x < bnd.Max.X && !found; x++ {
						r, g, b, _ := img.At(x, y).RGBA()
						found = r>>8 == uint32(red.R) && g>>8 == uint32(red.G) && b>>8 == uint32(red.B)
					}
				}
				if !found {
					t.Errorf("%s has no pixel of CLIP-Adapter's colour", p)
				}
			}
		case ".svg":
			d := xml.NewDecoder(f)
			root := ""
			for {
				tok, err := d.Token()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("%s: %v", p, err)
					break
				}
				if se, ok := tok.(xml.StartElement); ok && root == "" {
					root = se.Name.Local
				}
			}
			if root != "svg" {
				t.Errorf("%s: root element %q", p, root)
			}
		}
		f.Close()
	}
	md, _ := os.ReadFile(filepath.Join(out, MarkdownFile))
	if !strings.Contains(string(md), "Runs: test.") {
		t.Errorf("results.md heading: %s", md[:80])
	}
}

// TestSelectionVariant: a run selected on other data than the few-shot
// validation split is its own row, labelled, next to the same published
// number as the honest run.
func TestSelectionVariant(t *testing.T) {
	root := t.TempDir()
	writeRun(t, filepath.Join(root, "honest"), "imagenet", "tip-adapter-f", "RN50", 16, 1, 64)
	dir := filepath.Join(root, "selected")
	writeRun(t, dir, "imagenet", "tip-adapter-f", "RN50", 16, 1, 65.5)
	b, err := os.ReadFile(filepath.Join(dir, rundir.ResultFile))
	if err != nil {
		t.Fatal(err)
	}
	var res rundir.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	res.SelectOn = "test"
	b, _ = json.Marshal(res)
	if err := os.WriteFile(filepath.Join(dir, rundir.ResultFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	runs, err := Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := PublishedResults()
	if err != nil {
		t.Fatal(err)
	}
	tab := Aggregate(runs, pub)
	found := map[string]*Stat{}
	for i := range tab.Stats {
		s := &tab.Stats[i]
		if s.Dataset == "ImageNet" && s.Shots == 16 {
			found[s.Method] = s
		}
	}
	honest, variant := found["tip-adapter-f"], found["tip-adapter-f@test"]
	if honest == nil || variant == nil {
		t.Fatalf("rows %v, want tip-adapter-f and tip-adapter-f@test", found)
	}
	if honest.Mean != 64 || variant.Mean != 65.5 {
		t.Errorf("means %g and %g, want 64 and 65.5", honest.Mean, variant.Mean)
	}
	if variant.MethodInfo.Label != "Tip-Adapter-F (selected on test)" {
		t.Errorf("variant label %q", variant.MethodInfo.Label)
	}
	if honest.Published == nil || variant.Published == nil || honest.Published.Top1 != 65.51 || variant.Published.Top1 != 65.51 {
		t.Errorf("published %+v / %+v, want 65.51 for both", honest.Published, variant.Published)
	}
}
