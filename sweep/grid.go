package sweep

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// GridValue is one swept key's value in a cell: Key is the config key
// (section.key), Value its TOML text as passed to the override
// (Key=Value), Label the value as it appears in the run directory's name
// and in reports.
type GridValue struct {
	Key, Value, Label string
}

// gridPoint is one combination of the grid's values.
type gridPoint []GridValue

// gridKeys returns the keys of the [sweep.grid] table in the order the file
// lists them (a Go map has none).
func gridKeys(md toml.MetaData, grid map[string][]any) []string {
	var keys []string
	for _, k := range md.Keys() {
		if len(k) == 3 && k[0] == "sweep" && k[1] == "grid" {
			if _, ok := grid[k[2]]; ok && !slices.Contains(keys, k[2]) {
				keys = append(keys, k[2])
			}
		}
	}
	// Keys set by code rather than decoded (tests, flags) keep sorted order
	// after the file's.
	for _, k := range sortedKeys(grid) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// GridKeys returns the swept keys of [sweep.grid] in file order.
func (s Spec) GridKeys() []string {
	keys := slices.Clone(s.gridOrder)
	for _, k := range sortedKeys(s.Grid) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return slices.DeleteFunc(keys, func(k string) bool { _, ok := s.Grid[k]; return !ok })
}

// checkGrid validates [sweep.grid]: section.key keys that the sweep does not
// set itself and no set list overrides, each with a non-empty list of
// distinct scalar values.
func checkGrid(s Spec) []string {
	var errs []string
	sets := map[string]bool{}
	for _, set := range allSets(s) {
		sets[setKey(set)] = true
	}
	for _, k := range s.GridKeys() {
		where := fmt.Sprintf("sweep.grid.%q", k)
		parts := strings.Split(k, ".")
		if len(parts) != 2 || !bareKeyRe.MatchString(parts[0]) || !bareKeyRe.MatchString(parts[1]) {
			errs = append(errs, fmt.Sprintf("%s: want a config key section.key (e.g. \"method.alpha\")", where))
			continue
		}
		if why := reservedKeys[k]; why != "" {
			errs = append(errs, fmt.Sprintf("%s: %s is set by the sweep (%s)", where, k, why))
		}
		if sets[k] {
			errs = append(errs, fmt.Sprintf("%s: %s is also given in a set list; keep one", where, k))
		}
		vals := s.Grid[k]
		if len(vals) == 0 {
			errs = append(errs, where+" is empty")
		}
		var texts []string
		for _, v := range vals {
			text, _, err := gridText(v)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			texts = append(texts, text)
		}
		if dup := duplicate(texts); dup != "" {
			errs = append(errs, fmt.Sprintf("%s lists %s twice", where, dup))
		}
	}
	return errs
}

var bareKeyRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// gridText returns a grid value as TOML text for an override and as a
// label for names: integers and booleans as written, floats with a
// decimal point in TOML (0.0) and shortest form in labels (0), strings
// quoted in TOML and bare in labels.
func gridText(v any) (text, label string, err error) {
	switch x := v.(type) {
	case int64:
		s := strconv.FormatInt(x, 10)
		return s, s, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", "", fmt.Errorf("value %v is not finite", x)
		}
		s := strconv.FormatFloat(x, 'g', -1, 64)
		t := s
		if !strings.ContainsAny(t, ".eE") {
			t += ".0"
		}
		return t, s, nil
	case bool:
		s := strconv.FormatBool(x)
		return s, s, nil
	case string:
		if x == "" {
			return "", "", fmt.Errorf("empty string value")
		}
		return strconv.Quote(x), x, nil
	}
	return "", "", fmt.Errorf("value %v (%T): want a number, boolean or string", v, v)
}

// gridPoints returns the grid's combinations, the first key varying
// slowest; one empty point without a grid.
func (s Spec) gridPoints() ([]gridPoint, error) {
	points := []gridPoint{nil}
	for _, k := range s.GridKeys() {
		var next []gridPoint
		for _, p := range points {
			for _, v := range s.Grid[k] {
				text, label, err := gridText(v)
				if err != nil {
					return nil, fmt.Errorf("sweep.grid.%q: %w", k, err)
				}
				q := append(slices.Clone(p), GridValue{Key: k, Value: text, Label: label})
				next = append(next, q)
			}
		}
		points = next
	}
	return points, nil
}

// gridSuffix names a grid point in a run directory: "_" + short key + label
// for each key (alpha0.2_reduction4). The short key is the part after the
// section, or the whole key with "-" for "." where two keys share it.
func gridSuffix(p gridPoint) string {
	short := map[string]int{}
	for _, g := range p {
		_, k, _ := strings.Cut(g.Key, ".")
		short[k]++
	}
	var b strings.Builder
	for _, g := range p {
		_, k, _ := strings.Cut(g.Key, ".")
		if short[k] > 1 {
			k = strings.ReplaceAll(g.Key, ".", "-")
		}
		b.WriteString("_" + k + unsafeLabel.ReplaceAllString(g.Label, "-"))
	}
	return b.String()
}

var unsafeLabel = regexp.MustCompile(`[^A-Za-z0-9.@+-]+`)

// GridLabels returns the labels of a grid key's values in file order (the
// order reports put them in).
func (s Spec) GridLabels(key string) []string {
	var out []string
	for _, v := range s.Grid[key] {
		if _, label, err := gridText(v); err == nil {
			out = append(out, label)
		}
	}
	return out
}
