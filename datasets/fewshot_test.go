package datasets

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/internal/pyrandom"
)

type fewshotFixture struct {
	Python  string `json:"python"`
	Layouts map[string]struct {
		Train [][2]int `json:"train"`
		Val   [][2]int `json:"val"`
	} `json:"layouts"`
	Cases []struct {
		Layout string `json:"layout"`
		Shots  int    `json:"shots"`
		Seed   int    `json:"seed"`
		Repeat bool   `json:"repeat"`
		Train  []int  `json:"train"`
		Val    []int  `json:"val"`
	} `json:"cases"`
	Digests []struct {
		Layout  string   `json:"layout"`
		Shots   int      `json:"shots"`
		Seeds   int      `json:"seeds"`
		Digests []string `json:"digests"`
	} `json:"digests"`
}

func loadFewshotFixture(t *testing.T) *fewshotFixture {
	t.Helper()
	raw, err := os.ReadFile("testdata/fewshot_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var f fewshotFixture
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

// expandRuns turns [[label, count], ...] into items whose Path is their
// index in the list.
func expandRuns(runs [][2]int) []Item {
	var out []Item
	for _, r := range runs {
		for range r[1] {
			out = append(out, Item{Path: strconv.Itoa(len(out)), Label: r[0], ClassName: "c" + strconv.Itoa(r[0])})
		}
	}
	return out
}

func indices(items []Item) []int {
	out := make([]int, len(items))
	for i, it := range items {
		out[i], _ = strconv.Atoi(it.Path)
	}
	return out
}

func layoutDataset(t *testing.T, f *fewshotFixture, name string) *Dataset {
	t.Helper()
	l, ok := f.Layouts[name]
	if !ok {
		t.Fatalf("no layout %q", name)
	}
	return &Dataset{Name: "Fixture", Train: expandRuns(l.Train), Val: expandRuns(l.Val)}
}

// TestFewShotMatchesPython compares FewShot (and SampleFewShot with repeat)
// with the picks CPython made for the same seeds (testdata/gen.py).
func TestFewShotMatchesPython(t *testing.T) {
	f := loadFewshotFixture(t)
	if len(f.Cases) < 300 {
		t.Fatalf("only %d cases", len(f.Cases))
	}
	for _, c := range f.Cases {
		d := layoutDataset(t, f, c.Layout)
		var train, val []Item
		if c.Repeat {
			train = SampleFewShot(pyrandom.New(int64(c.Seed)), d.Train, c.Shots, true)
		} else {
			var err error
			if train, val, err = FewShot(d, c.Shots, c.Seed); err != nil {
				t.Fatal(err)
			}
		}
		if got := indices(train); !slices.Equal(got, c.Train) {
			t.Errorf("%s shots=%d seed=%d repeat=%v: train %v, Python %v", c.Layout, c.Shots, c.Seed, c.Repeat, got, c.Train)
		}
		if got := indices(val); !slices.Equal(got, c.Val) && !(len(got) == 0 && len(c.Val) == 0) {
			t.Errorf("%s shots=%d seed=%d: val %v, Python %v", c.Layout, c.Shots, c.Seed, got, c.Val)
		}
	}
}

// TestFewShotManySeeds compares digests of the picks for seeds 0..199.
func TestFewShotManySeeds(t *testing.T) {
	f := loadFewshotFixture(t)
	n := 0
	for _, row := range f.Digests {
		d := layoutDataset(t, f, row.Layout)
		for seed := range row.Seeds {
			train, val, err := FewShot(d, row.Shots, seed)
			if err != nil {
				t.Fatal(err)
			}
			s := joinInts(indices(train)) + "|" + joinInts(indices(val))
			sum := sha256.Sum256([]byte(s))
			if got := hex.EncodeToString(sum[:])[:16]; got != row.Digests[seed] {
				t.Errorf("%s shots=%d seed=%d: digest %s, Python %s", row.Layout, row.Shots, seed, got, row.Digests[seed])
			}
			n++
		}
	}
	if n < 3000 {
		t.Errorf("only %d seeded draws compared", n)
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// Semantics that follow from Dassl's code, checked by hand.
func TestSampleFewShotSemantics(t *testing.T) {
	items := []Item{
		{Path: "b0", Label: 1}, {Path: "a0", Label: 0}, {Path: "b1", Label: 1},
		{Path: "c0", Label: 2}, {Path: "a1", Label: 0}, {Path: "b2", Label: 1},
	}
	r := pyrandom.New(1)
	got := SampleFewShot(r, items, 2, false)
	// Groups in order of first appearance: label 1, then 0, then 2. Label 2
	// has one item (< 2 shots) and is taken whole without drawing.
	var labels []int
	for _, it := range got {
		labels = append(labels, it.Label)
	}
	if !slices.Equal(labels, []int{1, 1, 0, 0, 2}) {
		t.Errorf("labels %v, want [1 1 0 0 2]", labels)
	}
	if got := SampleFewShot(r, items, 0, false); len(got) != len(items) {
		t.Errorf("shots 0 returned %d items, want all %d", len(got), len(items))
	}
	rep := SampleFewShot(pyrandom.New(1), items, 3, true)
	if len(rep) != 9 {
		t.Errorf("repeat: %d items, want 9 (3 per class)", len(rep))
	}
}

func TestFewShotDatasetRules(t *testing.T) {
	train := []Item{{Path: "a", Label: 0}, {Path: "b", Label: 0}, {Path: "c", Label: 1}, {Path: "d", Label: 1}}
	val := []Item{{Path: "v1", Label: 0}, {Path: "v2", Label: 1}, {Path: "v3", Label: 1}}
	// ImageNet: val is drawn from the train images not picked, never
	// from test.
	in := &Dataset{Name: "ImageNet", Train: train, Test: val}
	tr, va, err := FewShot(in, 1, 1)
	if err != nil || len(tr) != 2 || len(va) != 2 || disjoint(tr, va) != nil || va[0].Path[0] == 'v' || va[1].Path[0] == 'v' {
		t.Errorf("ImageNet 1-shot: train %v, val %v, %v; want 2 and 2 other train images", tr, va, err)
	}
	other := &Dataset{Name: "Caltech101", Train: train, Val: val}
	if _, va, _ := FewShot(other, 1, 1); len(va) != 2 {
		t.Errorf("Caltech101 1-shot val has %d items, want 2", len(va))
	}
	if tr, va, err := FewShot(other, 0, 1); err != nil || len(tr) != 4 || len(va) != 3 {
		t.Errorf("0 shots: %d, %d, %v; want the full lists", len(tr), len(va), err)
	}
	if _, _, err := FewShot(other, 1, -1); err == nil || !strings.Contains(err.Error(), "seed") {
		t.Errorf("negative seed: err = %v", err)
	}
	testOnly := &Dataset{Name: "ImageNetA", Test: val}
	if _, _, err := FewShot(testOnly, 1, 1); err == nil || !strings.Contains(err.Error(), "test-only") {
		t.Errorf("test-only dataset: err = %v", err)
	}
}

func TestSubsample(t *testing.T) {
	mk := func(labels ...int) []Item {
		var out []Item
		for i, l := range labels {
			out = append(out, Item{Path: fmt.Sprintf("%d_%d", l, i), Label: l, ClassName: fmt.Sprintf("class%d", l)})
		}
		return out
	}
	d := &Dataset{
		Name:       "X",
		ClassNames: []string{"class0", "class1", "class2", "class3", "class4", "class5", "class6", "class7", "class8", "class9"},
		Train:      mk(9, 2, 5, 7, 2),
		Val:        mk(5, 9, 3),
		Test:       mk(2, 3, 5, 7, 9, 9),
	}
	tests := []struct {
		s                Subset
		names            []string
		train, val, test []int
	}{
		// Train labels {2, 5, 7, 9}: base = first ceil(4/2) = {2, 5}, new = {7, 9}.
		{Base, []string{"class2", "class5"}, []int{0, 1, 0}, []int{1}, []int{0, 1}},
		{New, []string{"class7", "class9"}, []int{1, 0}, []int{1}, []int{0, 1, 1}},
	}
	for _, tt := range tests {
		got, err := d.Subsample(tt.s)
		if err != nil {
			t.Fatal(err)
		}
		lab := func(items []Item) []int {
			var out []int
			for _, it := range items {
				out = append(out, it.Label)
			}
			return out
		}
		if !slices.Equal(got.ClassNames, tt.names) || !slices.Equal(lab(got.Train), tt.train) ||
			!slices.Equal(lab(got.Val), tt.val) || !slices.Equal(lab(got.Test), tt.test) {
			t.Errorf("%s: names %v train %v val %v test %v; want %v %v %v %v", tt.s, got.ClassNames,
				lab(got.Train), lab(got.Val), lab(got.Test), tt.names, tt.train, tt.val, tt.test)
		}
		for _, it := range got.Train {
			if it.ClassName != got.ClassNames[it.Label] {
				t.Errorf("%s: %s labelled %d has class %s", tt.s, it.Path, it.Label, it.ClassName)
			}
		}
	}
	// Odd count: 5 labels -> 3 base, 2 new.
	d5 := &Dataset{Train: mk(0, 1, 2, 3, 4)}
	b, _ := d5.Subsample(Base)
	n, _ := d5.Subsample(New)
	if len(b.Train) != 3 || len(n.Train) != 2 {
		t.Errorf("5 classes: base %d, new %d; want 3, 2", len(b.Train), len(n.Train))
	}
	if all, _ := d.Subsample(All); all != d {
		t.Error("All did not return the dataset unchanged")
	}
	if _, err := d.Subsample("half"); err == nil {
		t.Error("unknown subset accepted")
	}
	if d.Train[0].Label != 9 {
		t.Error("Subsample modified its input")
	}
}
