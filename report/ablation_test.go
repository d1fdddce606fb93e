package report

import (
	"bytes"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// ablationRuns writes clip-adapter runs on two datasets with alpha in
// {0.6, 0, 0.2} and variant in {visual, both}, seeds 1 and 2:
// top-1 = base(dataset) + 10·alpha + (1 for both) + seed.
func ablationRuns(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, ds := range []string{"dtd", "eurosat"} {
		base := map[string]float64{"dtd": 40, "eurosat": 60}[ds]
		for _, alpha := range []float64{0.6, 0, 0.2} {
			for _, variant := range []string{"visual", "both"} {
				for seed := 1; seed <= 2; seed++ {
					dir := filepath.Join(root, fmt.Sprintf("%s_seed%d_alpha%g_variant%s", ds, seed, alpha, variant))
					top1 := base + 10*alpha + float64(seed)
					if variant == "both" {
						top1++
					}
					writeRun(t, dir, ds, "clip-adapter", "RN50", 16, seed, top1)
					f, err := os.OpenFile(filepath.Join(dir, "config.toml"), os.O_APPEND|os.O_WRONLY, 0)
					if err != nil {
						t.Fatal(err)
					}
					fmt.Fprintf(f, "alpha = %s\nvariant = %q\nlearn_ratios = false\ncs = [1.0, 0.5]\n", floatTOML(alpha), variant)
					f.Close()
				}
			}
		}
	}
	return root
}

func floatTOML(x float64) string {
	s := fmt.Sprint(x)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

func TestConfigValues(t *testing.T) {
	root := ablationRuns(t)
	v, err := ConfigValues(filepath.Join(root, "dtd_seed1_alpha0.2_variantboth"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"method.alpha": "0.2", "method.variant": "both", "method.learn_ratios": "false",
		"method.cs": "[1, 0.5]", "data.shots": "16", "model.name": "RN50", "method.name": "clip-adapter"}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %q, want %q", k, v[k], w)
		}
	}
	if _, err := ConfigValues(filepath.Join(root, "missing")); err == nil || !strings.Contains(err.Error(), "config.toml") {
		t.Errorf("missing config: %v", err)
	}
}

func TestAblation(t *testing.T) {
	root := ablationRuns(t)
	// A run of another sweep without method.alpha is listed, not counted.
	writeRun(t, filepath.Join(root, "zs"), "dtd", "zeroshot", "RN50", 16, 1, 30)
	runs, err := Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAblation(runs, AblationOptions{X: "method.alpha", Series: []string{"method.variant"}, Order: []string{"0", "0.2"}},
		func(r Run) (map[string]string, error) { return ConfigValues(r.Dir) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.XValues, []string{"0", "0.2", "0.6"}) {
		t.Errorf("x values %q", a.XValues)
	}
	if len(a.Missing) != 1 || !strings.HasSuffix(a.Missing[0], "zs") {
		t.Errorf("missing %q", a.Missing)
	}
	// 2 datasets + average, 2 variants, 3 alphas.
	if len(a.Stats) != 3*2*3 {
		t.Fatalf("%d stats, want 18", len(a.Stats))
	}
	for _, s := range a.Stats {
		var alpha float64
		fmt.Sscan(s.X, &alpha)
		base := map[string]float64{"DescribableTextures": 40, "EuroSAT": 60, AverageDataset: 50}[s.Dataset]
		want := base + 10*alpha + 1.5
		if s.Series == "variant=both" {
			want++
		}
		// Seeds 1 and 2 differ by 1: population std 0.5 (also for the
		// average, whose per-seed averages differ by 1).
		if math.Abs(s.Mean-want) > 1e-9 || math.Abs(s.Std-0.5) > 1e-9 {
			t.Errorf("%s %s alpha %s: %.4f ± %.4f, want %.4f ± 0.5", s.Dataset, s.Series, s.X, s.Mean, s.Std, want)
		}
	}
	var md bytes.Buffer
	if err := a.WriteMarkdown(&md, "test"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| method.alpha | 0 | 0.2 | 0.6 |", "| CLIP-Adapter, variant=both | 42.50 ± 0.50 (2) | 44.50 ± 0.50 (2) | 48.50 ± 0.50 (2) |", "### Average over 2 datasets"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("ablation.md lacks %q:\n%s", want, md.String())
		}
	}
	out := t.TempDir()
	paths, err := a.Write(out, "test")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimPrefix(p, out+"/"))
	}
	wantNames := []string{"ablation.md", "ablation.csv",
		"plots/ablation_method.alpha_RN50_Average.png", "plots/ablation_method.alpha_RN50_Average.svg",
		"plots/ablation_method.alpha_RN50_DescribableTextures.png", "plots/ablation_method.alpha_RN50_DescribableTextures.svg",
		"plots/ablation_method.alpha_RN50_EuroSAT.png", "plots/ablation_method.alpha_RN50_EuroSAT.svg",
		"plots/ablation_method.alpha_RN50_all.png", "plots/ablation_method.alpha_RN50_all.svg"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("wrote %q\nwant %q", names, wantNames)
	}
	f, err := os.Open(filepath.Join(out, "plots/ablation_method.alpha_RN50_all.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// The two lines of CLIP-Adapter take two palette colours.
	cols := a.lineColors()
	if len(cols) != 2 {
		t.Fatalf("%d line colours", len(cols))
	}
	for l, c := range cols {
		found := false
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y && !found; y++ {
			for x := b.Min.X; x < b.Max.X && !found; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				found = r>>8 == uint32(c.R) && g>>8 == uint32(c.G) && bl>>8 == uint32(c.B)
			}
		}
		if !found {
			t.Errorf("no pixel of line %q's colour %v", l, c)
		}
	}
	if _, err := NewAblation(runs, AblationOptions{X: "method.beta"}, func(r Run) (map[string]string, error) { return ConfigValues(r.Dir) }); err == nil || !strings.Contains(err.Error(), "method.beta") {
		t.Errorf("unknown key: %v", err)
	}
}

func TestOrderValues(t *testing.T) {
	for _, tt := range []struct{ xs, order, want []string }{
		{[]string{"8", "16", "2"}, nil, []string{"2", "8", "16"}},
		{[]string{"visual", "both", "text"}, []string{"visual", "text", "both"}, []string{"visual", "text", "both"}},
		{[]string{"b", "a", "0.5"}, nil, []string{"0.5", "a", "b"}},
		{[]string{"3", "1", "2"}, []string{"2"}, []string{"2", "1", "3"}},
	} {
		if got := orderValues(tt.xs, tt.order); !slices.Equal(got, tt.want) {
			t.Errorf("orderValues(%q, %q) = %q, want %q", tt.xs, tt.order, got, tt.want)
		}
	}
}
