package datasets

import (
	"fmt"
	"slices"

	"github.com/clipadapter/clipgo/internal/pyrandom"
)

// SampleFewShot is Dassl's generate_fewshot_dataset for one list: items are
// grouped by label in order of each label's first appearance; a group with
// at least shots items contributes random.sample(group, shots); a smaller
// group contributes all its items, or random.choices(group, k=shots) when
// repeat is set (Tip-Adapter's variant). shots < 1 returns items unchanged.
// The draws come from r in exactly the order CPython's would.
func SampleFewShot(r *pyrandom.Random, items []Item, shots int, repeat bool) []Item {
	if shots < 1 {
		return items
	}
	var order []int
	groups := map[int][]Item{}
	for _, it := range items {
		if _, ok := groups[it.Label]; !ok {
			order = append(order, it.Label)
		}
		groups[it.Label] = append(groups[it.Label], it)
	}
	var out []Item
	for _, label := range order {
		g := groups[label]
		switch {
		case len(g) >= shots:
			picked, _ := pyrandom.Sample(r, g, shots) // cannot fail: 0 < shots <= len(g)
			out = append(out, picked...)
		case repeat:
			out = append(out, pyrandom.Choices(r, g, shots)...)
		default:
			out = append(out, g...)
		}
	}
	return out
}

// valShots is the number of shots CoOp samples for the val list.
func valShots(shots int) int { return min(shots, 4) }

// FewShot draws CoOp's few-shot train and val lists for shots and seed:
// random.seed(seed), then train = generate_fewshot_dataset(train, shots)
// and val = generate_fewshot_dataset(val, min(shots, 4)) on the same
// stream. ImageNet has no val list (CoOp validates on test): its train
// list is drawn exactly as CoOp draws it, and its val list is then drawn
// on the same stream from the train images not picked, min(shots, 4) per
// class (docs/protocol.md §7), so that nothing is ever selected on test.
// shots < 1 returns the full lists. It neither reads nor writes a cache
// (see CachedFewShot).
func FewShot(d *Dataset, shots, seed int) (train, val []Item, err error) {
	if shots < 1 {
		return d.Train, d.Val, nil
	}
	if seed < 0 {
		return nil, nil, fmt.Errorf("%s: few-shot seed %d: must be >= 0 (CoOp leaves Python's random unseeded for negative seeds)", d.Name, seed)
	}
	if len(d.Train) == 0 {
		return nil, nil, fmt.Errorf("%s has no training split to sample from (test-only dataset)", d.Name)
	}
	r := pyrandom.New(int64(seed))
	train = SampleFewShot(r, d.Train, shots, false)
	if valFromTrain(d) {
		return train, SampleFewShot(r, without(d.Train, train), valShots(shots), false), nil
	}
	return train, SampleFewShot(r, d.Val, valShots(shots), false), nil
}

// valFromTrain says whether d's few-shot val list is drawn from its train
// list (ImageNet, which has no val list of its own).
func valFromTrain(d *Dataset) bool { return d.Name == "ImageNet" }

// valPool is the list d's few-shot val items come from.
func valPool(d *Dataset) []Item {
	if valFromTrain(d) {
		return d.Train
	}
	return d.Val
}

// drawValFromTrain draws the few-shot val list of a dataset whose val
// comes from train (see FewShot) when the train list was read from a
// cache: the stream is advanced by FewShot's train draw, and val is drawn
// from the train images not in train (the cached list, which equals the
// draw unless the cache came from another file order).
func drawValFromTrain(d *Dataset, train []Item, shots, seed int) []Item {
	r := pyrandom.New(int64(seed))
	SampleFewShot(r, d.Train, shots, false)
	return SampleFewShot(r, without(d.Train, train), valShots(shots), false)
}

// without returns the items of all whose path is not in drop, in order.
func without(all, drop []Item) []Item {
	skip := make(map[string]bool, len(drop))
	for _, it := range drop {
		skip[it.Path] = true
	}
	out := make([]Item, 0, len(all)-len(drop))
	for _, it := range all {
		if !skip[it.Path] {
			out = append(out, it)
		}
	}
	return out
}

// Subset selects classes for base-to-new generalisation (CoCoOp).
type Subset string

// The subsets of Dataset.Subsample.
const (
	All  Subset = "all"
	Base Subset = "base"
	New  Subset = "new"
)

// ParseSubset parses "all", "base" or "new".
func ParseSubset(s string) (Subset, error) {
	switch Subset(s) {
	case All, Base, New:
		return Subset(s), nil
	}
	return "", fmt.Errorf("unknown class subset %q (want all, base or new)", s)
}

// Subsample applies CoCoOp's subsample_classes: the distinct labels of
// d.Train, sorted, are split into a first half of ceil(n/2) ("base") and
// the rest ("new"); the returned copy keeps only the chosen half's items in
// Train, Val and Test, relabelled 0..m-1 in ascending original-label
// order, with ClassNames to match. Apply it after few-shot sampling (see
// WithTrainVal). All returns d unchanged.
func (d *Dataset) Subsample(s Subset) (*Dataset, error) {
	if _, err := ParseSubset(string(s)); err != nil {
		return nil, err
	}
	if s == All {
		return d, nil
	}
	var labels []int
	seen := map[int]bool{}
	for _, it := range d.Train {
		if !seen[it.Label] {
			seen[it.Label] = true
			labels = append(labels, it.Label)
		}
	}
	if len(labels) == 0 {
		return nil, fmt.Errorf("%s: no training items to choose %s classes from", d.Name, s)
	}
	slices.Sort(labels)
	m := (len(labels) + 1) / 2
	selected := labels[:m]
	if s == New {
		selected = labels[m:]
	}
	relabel := make(map[int]int, len(selected))
	c := *d
	c.ClassNames = make([]string, len(selected))
	for i, l := range selected {
		relabel[l] = i
		if l < len(d.ClassNames) {
			c.ClassNames[i] = d.ClassNames[l]
		}
	}
	keep := func(items []Item) []Item {
		var out []Item
		for _, it := range items {
			if nl, ok := relabel[it.Label]; ok {
				it.Label = nl
				out = append(out, it)
			}
		}
		return out
	}
	c.Train, c.Val, c.Test = keep(d.Train), keep(d.Val), keep(d.Test)
	// Class names follow the records, as in CoCoOp (train last, so that
	// its names win).
	for _, l := range [][]Item{c.Test, c.Val, c.Train} {
		for _, it := range l {
			c.ClassNames[it.Label] = it.ClassName
		}
	}
	return &c, nil
}
