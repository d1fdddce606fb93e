package datasets

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// miniCaltech lays out testdata/mini_split_zhou_Caltech101.json as a
// Caltech101 folder (images are not needed to load) and loads it.
func miniCaltech(t *testing.T) *Dataset {
	t.Helper()
	root := t.TempDir()
	split, err := os.ReadFile("testdata/mini_split_zhou_Caltech101.json")
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, root, map[string]string{
		"caltech-101/101_ObjectCategories/":      "",
		"caltech-101/split_zhou_Caltech101.json": string(split),
	})
	d, err := Load("Caltech101", root)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// CoOp's pickled caches were drawn by CPython from the same split, so
// reading them must give exactly what FewShot draws, with the stored
// absolute paths (another machine's) mapped back to split paths.
func TestReadCoOpPickleCache(t *testing.T) {
	d := miniCaltech(t)
	if want := []string{"face", "leopard", "motorbike", "accordion", "airplane", "yin_yang"}; !slices.Equal(d.ClassNames, want) {
		t.Fatalf("class names %q, want %q", d.ClassNames, want)
	}
	for _, c := range []struct{ shots, seed int }{{4, 1}, {16, 2}, {1, 3}} {
		name := filepath.Base(CachePath(d, c.shots, c.seed, ".pkl"))
		copyFile(t, filepath.Join("testdata", "coop_cache", name), CachePath(d, c.shots, c.seed, ".pkl"))
		s, err := CachedFewShot(d, c.shots, c.seed)
		if err != nil {
			t.Fatal(err)
		}
		if s.Source != CachePath(d, c.shots, c.seed, ".pkl") {
			t.Errorf("%s: source %q", name, s.Source)
		}
		train, val, err := FewShot(d, c.shots, c.seed)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s.Train, train) || !slices.Equal(s.Val, val) {
			t.Errorf("%s: pickle holds\n train %v\n val %v\nFewShot draws\n train %v\n val %v", name, s.Train, s.Val, train, val)
		}
		if len(s.Train) == 0 || strings.HasPrefix(s.Train[0].Path, "/") {
			t.Errorf("%s: train %v", name, s.Train)
		}
		if _, err := os.Stat(CachePath(d, c.shots, c.seed, ".json")); err == nil {
			t.Errorf("%s: reading a CoOp cache wrote a JSON cache", name)
		}
	}
}

func TestCoOpPickleCacheMismatch(t *testing.T) {
	d := miniCaltech(t)
	copyFile(t, "testdata/coop_cache_bad/shot_1-seed_1.pkl", CachePath(d, 1, 1, ".pkl"))
	_, err := CachedFewShot(d, 1, 1)
	if err == nil || !strings.Contains(err.Error(), "/home/coop/DATA/caltech-101/101_ObjectCategories/Faces/image_9999.jpg") ||
		!strings.Contains(err.Error(), "matches no image") || !strings.Contains(err.Error(), "shot_1-seed_1.pkl") {
		t.Errorf("err = %v", err)
	}
	os.WriteFile(CachePath(d, 1, 1, ".pkl"), []byte("\x80\x04K"), 0o644)
	if _, err := CachedFewShot(d, 1, 1); err == nil || !strings.Contains(err.Error(), "shot_1-seed_1.pkl") {
		t.Errorf("truncated pickle: err = %v", err)
	}
}

// imagenetFewShot is testdata/imagenet_fewshot.json: CPython's 4-shot
// seed-1 train draw of the tiny ImageNet and the val list drawn after it.
type imagenetFewShot struct {
	Train, Val []string
}

func loadImageNetFewShot(t *testing.T) imagenetFewShot {
	t.Helper()
	raw, err := os.ReadFile("testdata/imagenet_fewshot.json")
	if err != nil {
		t.Fatal(err)
	}
	var f imagenetFewShot
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func itemPaths(items []Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Path
	}
	return out
}

// sortedImageNet loads the tiny ImageNet with its listing in the layout's
// (sorted) order, the order the Python fixtures were drawn from.
func sortedImageNet(t *testing.T) *Dataset {
	t.Helper()
	root := t.TempDir()
	train, test := imagenetTree(t, root)
	writeImageNetListingOrder(t, root, train, test)
	d, err := Load("ImageNet", root)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// checkImageNetVal checks an ImageNet few-shot split: train and val are
// CPython's draws, and val shares no image with train or with test.
func checkImageNetVal(t *testing.T, what string, d *Dataset, s *Split, want imagenetFewShot) {
	t.Helper()
	if got := itemPaths(s.Train); !slices.Equal(got, want.Train) {
		t.Errorf("%s: train %q, CPython %q", what, got, want.Train)
	}
	if got := itemPaths(s.Val); !slices.Equal(got, want.Val) {
		t.Errorf("%s: val %q, CPython %q", what, got, want.Val)
	}
	in := func(items []Item) map[string]bool {
		m := map[string]bool{}
		for _, it := range items {
			m[it.Path] = true
		}
		return m
	}
	trainSet, testSet := in(s.Train), in(d.Test)
	for _, it := range s.Val {
		if trainSet[it.Path] || testSet[it.Path] {
			t.Errorf("%s: val image %s is also in the few-shot train (%v) or test (%v) list", what, it.Path, trainSet[it.Path], testSet[it.Path])
		}
	}
	if len(s.Val) == 0 {
		t.Errorf("%s: empty val", what)
	}
}

// ImageNet's few-shot train list is CoOp's draw; its val list is drawn
// after it from the remaining train images (never from test), whether the
// train list was sampled, read from CoOp's pickle (train only), from this
// package's JSON cache, or from a JSON cache written before val was drawn.
func TestImageNetFewShotVal(t *testing.T) {
	want := loadImageNetFewShot(t)
	d := sortedImageNet(t)
	if want := []string{"n01440764", "n01443537", "n02102040"}; !slices.Equal(d.ClassIDs, want) {
		t.Errorf("class ids %q, want %q", d.ClassIDs, want)
	}

	train, val, err := FewShot(d, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkImageNetVal(t, "FewShot", d, &Split{Train: train, Val: val}, want)

	s, err := CachedFewShot(d, 4, 1)
	if err != nil || s.Source != "sampled" {
		t.Fatal(err, s)
	}
	checkImageNetVal(t, "sampled", d, s, want)
	js := CachePath(d, 4, 1, ".json")
	raw, _ := os.ReadFile(js)
	if !strings.Contains(string(raw), `"val": [`+"\n"+`        ["`+want.Val[0]) {
		t.Errorf("the JSON cache does not hold the val list:\n%s", raw)
	}
	s, err = CachedFewShot(d, 4, 1)
	if err != nil || s.Source != js {
		t.Fatal(err, s)
	}
	checkImageNetVal(t, "JSON cache", d, s, want)

	// A JSON cache written before ImageNet's val was drawn ("val": []).
	old := regexp.MustCompile(`(?s)"val": \[.*\]`).ReplaceAllString(string(raw), `"val": []`)
	os.WriteFile(js, []byte(old), 0o644)
	if s, err = CachedFewShot(d, 4, 1); err != nil {
		t.Fatal(err)
	}
	checkImageNetVal(t, "old JSON cache", d, s, want)

	// A val list that overlaps train is a stale cache.
	bad := strings.Replace(string(raw), want.Val[0], want.Train[0], 1)
	os.WriteFile(js, []byte(bad), 0o644)
	if _, err := CachedFewShot(d, 4, 1); err == nil || !strings.Contains(err.Error(), "in both the train and the val list") {
		t.Errorf("val overlapping train: err = %v", err)
	}

	// CoOp's pickle holds train only.
	copyFile(t, "testdata/imagenet_cache/shot_4-seed_1.pkl", CachePath(d, 4, 1, ".pkl"))
	if s, err = CachedFewShot(d, 4, 1); err != nil || !strings.HasSuffix(s.Source, ".pkl") {
		t.Fatal(err, s)
	}
	checkImageNetVal(t, "CoOp pickle", d, s, want)

	// The full split has no val list rather than the test list.
	if s, err := CachedFewShot(d, 0, 1); err != nil || len(s.Val) != 0 {
		t.Errorf("0 shots: %d val items, %v; want none", len(s.Val), err)
	}
}

// TestImageNetValDisjointManySeeds: for many seeds and shots the val list
// has min(K, 4) images per class (as many as are left), none in train.
func TestImageNetValDisjointManySeeds(t *testing.T) {
	d := sortedImageNet(t)
	perClass := map[int]int{}
	for _, it := range d.Train {
		perClass[it.Label]++
	}
	for _, shots := range []int{1, 2, 4, 8, 16} {
		for seed := 0; seed < 50; seed++ {
			train, val, err := FewShot(d, shots, seed)
			if err != nil {
				t.Fatal(err)
			}
			if err := disjoint(train, val); err != nil {
				t.Fatalf("shots %d seed %d: %v", shots, seed, err)
			}
			got := map[int]int{}
			for _, it := range val {
				got[it.Label]++
			}
			for label, n := range perClass {
				left := max(n-shots, 0)
				if want := min(min(shots, 4), left); got[label] != want {
					t.Errorf("shots %d seed %d class %d: %d val images, want %d", shots, seed, label, got[label], want)
				}
			}
			again, val2, _ := FewShot(d, shots, seed)
			if !slices.Equal(again, train) || !slices.Equal(val2, val) {
				t.Fatalf("shots %d seed %d: not deterministic", shots, seed)
			}
		}
	}
}

func TestJSONCache(t *testing.T) {
	d := miniCaltech(t)
	s, err := CachedFewShot(d, 8, 5)
	if err != nil || s.CacheErr != nil {
		t.Fatal(err, s.CacheErr)
	}
	if s.Source != "sampled" {
		t.Errorf("first call: source %q, want sampled", s.Source)
	}
	file := CachePath(d, 8, 5, ".json")
	if filepath.Base(file) != "shot_8-seed_5.json" || filepath.Base(filepath.Dir(file)) != "split_fewshot" || filepath.Dir(filepath.Dir(file)) != d.Dir {
		t.Errorf("cache path %s", file)
	}
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 {
		t.Errorf("split_fewshot holds %d entries, want only the cache (no temp files)", len(entries))
	}
	again, err := CachedFewShot(d, 8, 5)
	if err != nil {
		t.Fatal(err)
	}
	if again.Source != file || !slices.Equal(again.Train, s.Train) || !slices.Equal(again.Val, s.Val) {
		t.Errorf("second call: source %q, lists equal: %v %v", again.Source, slices.Equal(again.Train, s.Train), slices.Equal(again.Val, s.Val))
	}
	// The cache is a plain file a reader can check: dataset, shots, seed.
	raw, _ := os.ReadFile(file)
	for _, w := range []string{`"dataset": "Caltech101"`, `"shots": 8`, `"seed": 5`, `["` + s.Train[0].Path + `", `} {
		if !strings.Contains(string(raw), w) {
			t.Errorf("cache file lacks %s", w)
		}
	}

	// A stale cache is an error naming the file, not silently used.
	stale := strings.Replace(string(raw), s.Train[0].Path, "Faces/image_0999.jpg", 1)
	os.WriteFile(file, []byte(stale), 0o644)
	if _, err := CachedFewShot(d, 8, 5); err == nil || !strings.Contains(err.Error(), "image_0999.jpg is not in Caltech101's train list") ||
		!strings.Contains(err.Error(), file) {
		t.Errorf("stale cache: err = %v", err)
	}
	os.WriteFile(file, []byte(strings.Replace(string(raw), `"seed": 5`, `"seed": 6`, 1)), 0o644)
	if _, err := CachedFewShot(d, 8, 5); err == nil || !strings.Contains(err.Error(), "seed=6") {
		t.Errorf("wrong seed in cache: err = %v", err)
	}

	// A CoOp pickle wins over the JSON.
	copyFile(t, "testdata/coop_cache/shot_4-seed_1.pkl", CachePath(d, 4, 1, ".pkl"))
	os.WriteFile(CachePath(d, 4, 1, ".json"), []byte("not read"), 0o644)
	if s, err := CachedFewShot(d, 4, 1); err != nil || !strings.HasSuffix(s.Source, ".pkl") {
		t.Errorf("pickle and JSON present: %v, %v", s, err)
	}
}

func TestCacheWriteFailureKeepsSplit(t *testing.T) {
	d := miniCaltech(t)
	// split_fewshot is a file, so the cache folder cannot be made.
	os.WriteFile(filepath.Join(d.Dir, CacheDir), nil, 0o644)
	s, err := CachedFewShot(d, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	train, _, _ := FewShot(d, 2, 1)
	if s.CacheErr == nil || !slices.Equal(s.Train, train) {
		t.Errorf("CacheErr %v, split equal %v", s.CacheErr, slices.Equal(s.Train, train))
	}
	if s, err := CachedFewShot(d, 0, 1); err != nil || s.Source != "full" || len(s.Train) != len(d.Train) {
		t.Errorf("0 shots: %v %v", s, err)
	}
}

func TestMatchSuffix(t *testing.T) {
	known := map[string]int{"Faces/image_0001.jpg": 0, "image_0001.jpg": 1, "cars_train/00001.jpg": 2}
	tests := []struct {
		p    string
		want int
		ok   bool
	}{
		{"/data/caltech-101/101_ObjectCategories/Faces/image_0001.jpg", 0, true},
		{"Faces/image_0001.jpg", 0, true},
		{"/x/Other/image_0001.jpg", 1, true},
		{`C:\data\stanford_cars\cars_train\00001.jpg`, 2, true},
		{"/data/Faces/image_0002.jpg", 0, false},
	}
	for _, tt := range tests {
		got, ok := matchSuffix(tt.p, known)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("matchSuffix(%q) = %d, %v; want %d, %v", tt.p, got, ok, tt.want, tt.ok)
		}
	}
}

// A cache that would run a command if Python unpickled it is refused by
// name, and a truncated one is an error naming the file. (internal/pickle's
// tests cover damage of every kind.)
func TestCoOpPickleCacheRefusedOrDamaged(t *testing.T) {
	d := miniCaltech(t)
	copyFile(t, "testdata/coop_cache_evil/shot_1-seed_1.pkl", CachePath(d, 1, 1, ".pkl"))
	_, err := CachedFewShot(d, 1, 1)
	if err == nil || !strings.Contains(err.Error(), "class posix.system") || !strings.Contains(err.Error(), "shot_1-seed_1.pkl") {
		t.Errorf("command-running pickle: err = %v", err)
	}
	good, err := os.ReadFile("testdata/coop_cache/shot_4-seed_1.pkl")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{good[:1], good[:len(good)/2], good[:len(good)-1]} {
		os.WriteFile(CachePath(d, 4, 1, ".pkl"), bad, 0o644)
		if _, err := CachedFewShot(d, 4, 1); err == nil || !strings.Contains(err.Error(), "shot_4-seed_1.pkl") {
			t.Errorf("damaged pickle (%d bytes): err = %v", len(bad), err)
		}
	}
}
