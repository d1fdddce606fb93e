package datasets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/clipadapter/clipgo/internal/fsutil"
	"github.com/clipadapter/clipgo/internal/pickle"
)

// Split is a few-shot split of a dataset.
type Split struct {
	Train, Val []Item
	// Shots is the number of shots per class asked for (0: the full lists).
	// A class with fewer images has them all.
	Shots int
	// Source says where the lists come from: "sampled", "full" (shots < 1),
	// or the path of the cache file that was read.
	Source string
	// CacheErr is set when the split was sampled but could not be written
	// to the cache. The split itself is valid.
	CacheErr error
}

// CacheDir is the folder, inside a dataset's folder, that holds few-shot
// caches (the same as CoOp's).
const CacheDir = "split_fewshot"

// CachePath returns the path of the few-shot cache file for shots and
// seed with extension ext: ".pkl" for CoOp's pickles, ".json" for this
// package's own.
func CachePath(d *Dataset, shots, seed int, ext string) string {
	return filepath.Join(d.Dir, CacheDir, fmt.Sprintf("shot_%d-seed_%d%s", shots, seed, ext))
}

// CachedFewShot returns CoOp's few-shot split for shots and seed, using the
// cache in d.Dir/split_fewshot: CoOp's own shot_K-seed_S.pkl when present
// (its stored absolute image paths are mapped back onto d's split lists),
// else this package's shot_K-seed_S.json, else it samples with FewShot and
// writes the JSON (atomically). A cache that names images or labels not in
// d's split lists is an error naming the file. For ImageNet, whose val
// list FewShot draws from train, a cache without a val list (CoOp's, or
// one written before this package drew ImageNet's val) gets the val list
// drawn from the train images it does not hold. shots < 1 returns the
// full lists and touches no file.
func CachedFewShot(d *Dataset, shots, seed int) (*Split, error) {
	if shots < 1 {
		return &Split{Train: d.Train, Val: d.Val, Source: "full"}, nil
	}
	s, err := cachedFewShot(d, shots, seed)
	if err != nil {
		return nil, err
	}
	s.Shots = shots
	if valFromTrain(d) && s.Val == nil {
		s.Val = drawValFromTrain(d, s.Train, shots, seed)
	}
	if valFromTrain(d) {
		if err := disjoint(s.Train, s.Val); err != nil {
			return nil, fmt.Errorf("few-shot cache %s: %w; delete it", s.Source, err)
		}
	}
	return s, nil
}

// disjoint checks that no image is in both train and val.
func disjoint(train, val []Item) error {
	in := indexPaths(train)
	for _, it := range val {
		if _, ok := in[it.Path]; ok {
			return fmt.Errorf("%s is in both the train and the val list", it.Path)
		}
	}
	return nil
}

func cachedFewShot(d *Dataset, shots, seed int) (*Split, error) {
	pkl := CachePath(d, shots, seed, ".pkl")
	if _, err := os.Stat(pkl); err == nil {
		return readPickleCache(d, pkl)
	}
	js := CachePath(d, shots, seed, ".json")
	if _, err := os.Stat(js); err == nil {
		return readJSONCache(d, js, shots, seed)
	}
	// Any other state (missing, unreadable folder) means sampling: the
	// draw is deterministic, the cache only saves time.
	train, val, err := FewShot(d, shots, seed)
	if err != nil {
		return nil, err
	}
	s := &Split{Train: train, Val: val, Source: "sampled"}
	if err := writeJSONCache(d, js, shots, seed, train, val); err != nil {
		s.CacheErr = fmt.Errorf("write few-shot cache: %w", err)
	}
	return s, nil
}

// jsonCache is the file format of this package's few-shot cache. The
// lists use the split files' [path, label, classname] triples.
type jsonCache struct {
	Dataset string          `json:"dataset"`
	Shots   int             `json:"shots"`
	Seed    int             `json:"seed"`
	Train   json.RawMessage `json:"train"`
	Val     json.RawMessage `json:"val"`
}

func writeJSONCache(d *Dataset, file string, shots, seed int, train, val []Item) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n    \"dataset\": %s,\n    \"shots\": %d,\n    \"seed\": %d,\n", quote(d.Name), shots, seed)
	writeEntries(&b, "train", train, false)
	writeEntries(&b, "val", val, true)
	b.WriteString("}\n")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return fsutil.WriteFile(file, b.Bytes(), 0o644)
}

// writeEntries writes `"key": [entries]` with one [path, label,
// classname] entry a line, and a comma unless last.
func writeEntries(b *bytes.Buffer, key string, items []Item, last bool) {
	fmt.Fprintf(b, "    %s: [", quote(key))
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, "\n        [%s, %d, %s]", quote(it.Path), it.Label, quote(it.ClassName))
	}
	if len(items) > 0 {
		b.WriteString("\n    ")
	}
	b.WriteString("]")
	if !last {
		b.WriteByte(',')
	}
	b.WriteByte('\n')
}

func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

func readJSONCache(d *Dataset, file string, shots, seed int) (*Split, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("few-shot cache: %w", err)
	}
	var c jsonCache
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("few-shot cache %s: %w", file, err)
	}
	if c.Shots != shots || c.Seed != seed || (c.Dataset != "" && c.Dataset != d.Name) {
		return nil, fmt.Errorf("few-shot cache %s holds %s shots=%d seed=%d, not %s shots=%d seed=%d; delete it",
			file, c.Dataset, c.Shots, c.Seed, d.Name, shots, seed)
	}
	s := &Split{Source: file}
	for _, part := range []struct {
		name string
		raw  json.RawMessage
		from []Item
		dst  *[]Item
	}{
		{"train", c.Train, d.Train, &s.Train},
		{"val", c.Val, valPool(d), &s.Val},
	} {
		if len(part.raw) == 0 {
			return nil, fmt.Errorf("few-shot cache %s: no %q list", file, part.name)
		}
		entries, err := parseEntries(part.raw)
		if err != nil {
			return nil, fmt.Errorf("few-shot cache %s: %q: %w", file, part.name, err)
		}
		known := indexPaths(part.from)
		items := make([]Item, len(entries))
		for i, e := range entries {
			j, ok := known[e.Path]
			if !ok {
				return nil, fmt.Errorf("few-shot cache %s: %s is not in %s's %s list; delete the stale cache", file, e.Path, d.Name, part.name)
			}
			if ref := part.from[j]; ref.Label != e.Label || ref.ClassName != e.ClassName {
				return nil, fmt.Errorf("few-shot cache %s: %s has label %d (%s), the split says %d (%s); delete the stale cache",
					file, e.Path, e.Label, e.ClassName, ref.Label, ref.ClassName)
			}
			items[i] = part.from[j]
		}
		*part.dst = items
	}
	if valFromTrain(d) && len(s.Val) == 0 {
		s.Val = nil // written before ImageNet's val was drawn: CachedFewShot draws it
	}
	return s, nil
}

func indexPaths(items []Item) map[string]int {
	m := make(map[string]int, len(items))
	for i, it := range items {
		m[it.Path] = i
	}
	return m
}

// coopPickle decodes CoOp's pickles: plain data and Dassl's Datum records
// (accepted under any module path, as forks move Dassl); any other class
// reference is refused.
var coopPickle = pickle.Options{Allow: func(g pickle.Global) bool { return g.Name == "Datum" }}

// readPickleCache reads CoOp's shot_K-seed_S.pkl: a pickled dict
// {"train": [Datum...], "val": [Datum...]} ("train" only for ImageNet).
func readPickleCache(d *Dataset, file string) (*Split, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CoOp few-shot cache: %w", err)
	}
	v, err := coopPickle.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("CoOp few-shot cache %s: %w", file, err)
	}
	top, ok := v.(*pickle.Dict)
	if !ok {
		return nil, fmt.Errorf("CoOp few-shot cache %s: holds a %T, want a dict with \"train\" and \"val\"", file, v)
	}
	s := &Split{Source: file}
	for _, part := range []struct {
		name string
		from []Item
		dst  *[]Item
	}{
		{"train", d.Train, &s.Train},
		{"val", valPool(d), &s.Val},
	} {
		lv, ok := top.Get(part.name)
		if !ok {
			if part.name == "val" && valFromTrain(d) {
				continue // CoOp caches only ImageNet's train list: CachedFewShot draws val
			}
			return nil, fmt.Errorf("CoOp few-shot cache %s: no %q list", file, part.name)
		}
		items, err := datumsToItems(lv, part.from, d.ImageDir)
		if err != nil {
			return nil, fmt.Errorf("CoOp few-shot cache %s: %q: %w", file, part.name, err)
		}
		*part.dst = items
	}
	return s, nil
}

// datumsToItems converts a pickled list of Dassl Datum objects into Items
// of the split list from, mapping each stored absolute impath onto from's
// relative paths: the longest path suffix that from contains wins.
func datumsToItems(v any, from []Item, imageDir string) ([]Item, error) {
	l, ok := v.(*pickle.List)
	if !ok {
		return nil, fmt.Errorf("holds a %T, want a list of Datum", v)
	}
	known := indexPaths(from)
	out := make([]Item, len(l.Items))
	for i, x := range l.Items {
		dt, err := readDatum(x)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		j, ok := matchSuffix(dt.Path, known)
		if !ok {
			return nil, fmt.Errorf("item %d: image %s matches no image of the split under %s (cache made from another split?)", i, dt.Path, imageDir)
		}
		ref := from[j]
		if ref.Label != dt.Label || ref.ClassName != dt.ClassName {
			return nil, fmt.Errorf("item %d: %s has label %d (%s), the split says %d (%s)", i, dt.Path, dt.Label, dt.ClassName, ref.Label, ref.ClassName)
		}
		ref.Domain = dt.Domain
		out[i] = ref
	}
	return out, nil
}

// readDatum extracts impath, label, domain and classname from a pickled
// dassl.data.datasets.base_dataset.Datum. Path is the stored impath.
func readDatum(x any) (Item, error) {
	o, ok := x.(*pickle.Object)
	if !ok {
		return Item{}, fmt.Errorf("holds a %T, want a Datum object", x)
	}
	if o.Class.Name != "Datum" {
		return Item{}, fmt.Errorf("holds a %s, want dassl.data.datasets.base_dataset.Datum", o.Class)
	}
	attr := func(name string) (any, bool) {
		for _, n := range []string{"_" + name, name, "_Datum__" + name} {
			if v, ok := o.Attr(n); ok {
				return v, true
			}
		}
		return nil, false
	}
	var it Item
	p, _ := attr("impath")
	if it.Path, ok = p.(string); !ok || it.Path == "" {
		return Item{}, fmt.Errorf("Datum without an impath string")
	}
	for _, f := range []struct {
		name     string
		dst      *int
		optional bool
	}{{"label", &it.Label, false}, {"domain", &it.Domain, true}} {
		v, ok := attr(f.name)
		if !ok {
			if f.optional {
				continue
			}
			return Item{}, fmt.Errorf("Datum %s without a %s", it.Path, f.name)
		}
		n, ok := v.(int64)
		if !ok {
			return Item{}, fmt.Errorf("Datum %s: %s is a %T, want an int", it.Path, f.name, v)
		}
		*f.dst = int(n)
	}
	c, _ := attr("classname")
	if it.ClassName, ok = c.(string); !ok {
		return Item{}, fmt.Errorf("Datum %s without a classname string", it.Path)
	}
	return it, nil
}

// matchSuffix finds the longest '/'-separated suffix of p that is a key of
// known. Backslash-separated (Windows) paths are accepted too.
func matchSuffix(p string, known map[string]int) (int, bool) {
	if !strings.Contains(p, "/") {
		p = strings.ReplaceAll(p, `\`, "/")
	}
	if j, ok := known[p]; ok {
		return j, true
	}
	for k := 0; k < len(p); k++ {
		if p[k] == '/' {
			if j, ok := known[p[k+1:]]; ok {
				return j, true
			}
		}
	}
	return 0, false
}
