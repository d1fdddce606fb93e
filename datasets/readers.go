package datasets

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/clipadapter/clipgo/internal/pickle"
)

// readSplitJSON reads a split_zhou_*.json file: an object with "train",
// "val" and "test" lists of [path, label, classname].
func readSplitJSON(file string) (train, val, test []Item, err error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: not a JSON object: %w", file, err)
	}
	var lists [3][]Item
	for i, key := range []string{"train", "val", "test"} {
		part, ok := m[key]
		if !ok {
			return nil, nil, nil, fmt.Errorf("%s: no %q list", file, key)
		}
		if lists[i], err = parseEntries(part); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %q: %w", file, key, err)
		}
	}
	return lists[0], lists[1], lists[2], nil
}

// parseEntries parses a JSON list of [path, label, classname] entries.
// Decoding into generic values first is several times faster than a
// custom unmarshaler per entry; the types are checked afterwards.
func parseEntries(raw json.RawMessage) ([]Item, error) {
	var entries [][]any
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("not a list of [path, label, classname] lists: %w", err)
	}
	items := make([]Item, len(entries))
	for i, e := range entries {
		it, err := entryItem(e)
		if err != nil {
			b, _ := json.Marshal(e)
			return nil, fmt.Errorf("entry %d %.80s: %v", i, b, err)
		}
		items[i] = it
	}
	return items, nil
}

func entryItem(e []any) (Item, error) {
	var it Item
	if len(e) != 3 {
		return it, errors.New("not a [path, label, classname] list")
	}
	var ok bool
	if it.Path, ok = e[0].(string); !ok {
		return it, errors.New("path is not a string")
	}
	if it.Path == "" || path.IsAbs(it.Path) || filepath.IsAbs(it.Path) {
		return it, errors.New("path must be relative to the image folder")
	}
	switch l := e[1].(type) {
	case float64:
		if l != math.Trunc(l) || math.Abs(l) > 1<<31 {
			return it, fmt.Errorf("label %v is not an integer", l)
		}
		it.Label = int(l)
	case string:
		v, err := strconv.Atoi(strings.TrimSpace(l))
		if err != nil {
			return it, fmt.Errorf("label %q is not an integer", l)
		}
		it.Label = v
	default:
		return it, fmt.Errorf("label %v is not an integer", e[1])
	}
	if it.ClassName, ok = e[2].(string); !ok {
		return it, errors.New("class name is not a string")
	}
	return it, nil
}

// readSplitDataset reads a dataset described by a published split file.
func readSplitDataset(s *spec, dir string) (*Dataset, error) {
	file := filepath.Join(dir, s.split)
	if _, err := os.Stat(file); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: split file %s not found; download %s (link in CoOp's DATASETS.md) into %s", s.name, file, s.split, dir)
		}
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	d := newDataset(s, dir)
	var err error
	if d.Train, d.Val, d.Test, err = readSplitJSON(file); err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	if d.ClassNames, err = classNamesFromItems(file, d.Train, d.Val, d.Test); err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return d, nil
}

// readLines returns the lines of a text file with surrounding white space
// removed (Python's str.strip), skipping blank lines; the line numbers
// (1-based) come along for error messages.
func readLines(file string) (lines []string, numbers []int, err error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		lines = append(lines, line)
		numbers = append(numbers, n)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	return lines, numbers, nil
}

// readFGVCAircraft reads fgvc_aircraft/ as CoOp does: classes are the lines
// of variants.txt, and images_variant_{train,val,test}.txt give
// "<image id> <variant>" per line (the variant may contain spaces).
func readFGVCAircraft(s *spec, dir string) (*Dataset, error) {
	variants := filepath.Join(dir, "variants.txt")
	names, _, err := readLines(variants)
	if err != nil {
		return nil, fmt.Errorf("%s: class list: %w", s.name, err)
	}
	label := make(map[string]int, len(names))
	for i, n := range names {
		if _, dup := label[n]; dup {
			return nil, fmt.Errorf("%s: %s: variant %q listed twice", s.name, variants, n)
		}
		label[n] = i
	}
	d := newDataset(s, dir)
	d.ClassNames = names
	for _, sp := range []struct {
		file string
		dst  *[]Item
	}{
		{"images_variant_train.txt", &d.Train},
		{"images_variant_val.txt", &d.Val},
		{"images_variant_test.txt", &d.Test},
	} {
		file := filepath.Join(dir, sp.file)
		lines, numbers, err := readLines(file)
		if err != nil {
			return nil, fmt.Errorf("%s: split list: %w", s.name, err)
		}
		items := make([]Item, 0, len(lines))
		for i, line := range lines {
			id, variant, _ := strings.Cut(line, " ")
			l, ok := label[variant]
			if !ok {
				return nil, fmt.Errorf("%s: %s:%d: variant %q is not in variants.txt", s.name, file, numbers[i], variant)
			}
			items = append(items, Item{Path: id + ".jpg", Label: l, ClassName: variant})
		}
		*sp.dst = items
	}
	return d, nil
}

// wnidClass is one line of an ImageNet classnames.txt.
type wnidClass struct {
	wnid, name string
}

// readClassnames reads classnames.txt: "<wnid> <class name>" per line; the
// name is everything after the first space.
func readClassnames(file string) ([]wnidClass, map[string]string, error) {
	lines, numbers, err := readLines(file)
	if err != nil {
		return nil, nil, fmt.Errorf("class names: %w", err)
	}
	list := make([]wnidClass, len(lines))
	byWnid := make(map[string]string, len(lines))
	for i, line := range lines {
		wnid, name, _ := strings.Cut(line, " ")
		if _, dup := byWnid[wnid]; dup {
			return nil, nil, fmt.Errorf("%s:%d: %s listed twice", file, numbers[i], wnid)
		}
		list[i] = wnidClass{wnid, name}
		byWnid[wnid] = name
	}
	return list, byWnid, nil
}

// scanClassFolders lists base/<folder>/<file> for each folder in order
// (the files of a folder in the order list gives them) and labels the
// images with the folder's index. prefix is prepended to the item paths
// (relative to the image folder).
func scanClassFolders(base, prefix string, folders, names []string, list func(string) ([]string, error)) ([]Item, error) {
	var items []Item
	for label, folder := range folders {
		files, err := list(filepath.Join(base, folder))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			items = append(items, Item{Path: prefix + folder + "/" + f, Label: label, ClassName: names[label]})
		}
	}
	return items, nil
}

// namesForFolders looks each wnid folder up in classnames.txt.
func namesForFolders(s *spec, file string, folders []string, byWnid map[string]string) ([]string, error) {
	names := make([]string, len(folders))
	for i, f := range folders {
		n, ok := byWnid[f]
		if !ok {
			return nil, fmt.Errorf("%s: folder %s has no line in %s", s.name, f, file)
		}
		names[i] = n
	}
	return names, nil
}

// readImageNet scans imagenet/images/{train,val}/<wnid>/ (labels = sorted
// wnid order; the files of each folder in the directory's own order, as
// CoOp's os.listdir) with names from imagenet/classnames.txt, and writes
// the lists to imagenet/listing.json, which later loads read instead so
// the order (and with it the few-shot draw) no longer depends on the
// disk. When CoOp's imagenet/preprocessed.pkl exists it is read first, as
// CoOp does: it keeps the file order of the machine that wrote it. There
// is no Val list (see Dataset).
func readImageNet(s *spec, dir string) (*Dataset, error) {
	d := newDataset(s, dir)
	if pre := filepath.Join(dir, "preprocessed.pkl"); fileExists(pre) {
		if err := readImageNetPreprocessed(d, pre); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		return d, nil
	}
	if ok, err := readImageNetListing(d, filepath.Join(dir, ImageNetListing)); ok || err != nil {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		return d, nil
	}
	cnFile := filepath.Join(dir, "classnames.txt")
	_, byWnid, err := readClassnames(cnFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	var folders [2][]string
	for i, sub := range []string{"train", "val"} {
		p := filepath.Join(d.ImageDir, sub)
		if err := checkDir(p, s.name+" "+sub+" folder"); err != nil {
			return nil, err
		}
		if folders[i], err = listDirs(p); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if len(folders[i]) == 0 {
			return nil, fmt.Errorf("%s: %s has no class folders (val/ must be arranged in wnid folders too)", s.name, p)
		}
	}
	// CoOp labels train and val folders separately by sorted position; a
	// difference between the two would silently shift labels.
	if !slices.Equal(folders[0], folders[1]) {
		return nil, fmt.Errorf("%s: %s and %s hold different class folders (%d and %d)", s.name,
			filepath.Join(d.ImageDir, "train"), filepath.Join(d.ImageDir, "val"), len(folders[0]), len(folders[1]))
	}
	if d.ClassNames, err = namesForFolders(s, cnFile, folders[0], byWnid); err != nil {
		return nil, err
	}
	d.ClassIDs = folders[0]
	if d.Train, err = scanClassFolders(filepath.Join(d.ImageDir, "train"), "train/", folders[0], d.ClassNames, listFilesDirOrder); err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	if d.Test, err = scanClassFolders(filepath.Join(d.ImageDir, "val"), "val/", folders[1], d.ClassNames, listFilesDirOrder); err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	if err := writeImageNetListing(d, filepath.Join(dir, ImageNetListing)); err != nil {
		slog.Warn("ImageNet file listing not saved: the next load scans again, in this disk's order", "err", err)
	}
	return d, nil
}

// readImageNetV2 reads imagenetv2/: the image folder has one folder per
// label, named "0", "1", ...; label i takes the i-th name of
// classnames.txt. Test only.
func readImageNetV2(s *spec, dir string) (*Dataset, error) {
	d := newDataset(s, dir)
	cnFile := filepath.Join(dir, "classnames.txt")
	list, _, err := readClassnames(cnFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	folders := make([]string, len(list))
	d.ClassNames = make([]string, len(list))
	d.ClassIDs = make([]string, len(list))
	for i, c := range list {
		folders[i] = strconv.Itoa(i)
		d.ClassNames[i], d.ClassIDs[i] = c.name, c.wnid
		if err := checkDir(filepath.Join(d.ImageDir, folders[i]), s.name+" class folder"); err != nil {
			return nil, err
		}
	}
	if d.Test, err = scanClassFolders(d.ImageDir, "", folders, d.ClassNames, listFiles); err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return d, nil
}

// readImageNetVariant reads ImageNet-Sketch, -A and -R: sorted wnid folders
// (1000 or a 200-class subset, labelled 0..n-1) with names looked up in
// classnames.txt. Test only.
func readImageNetVariant(s *spec, dir string) (*Dataset, error) {
	d := newDataset(s, dir)
	cnFile := filepath.Join(dir, "classnames.txt")
	_, byWnid, err := readClassnames(cnFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	folders, err := listDirs(d.ImageDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	if len(folders) == 0 {
		return nil, fmt.Errorf("%s: %s has no class folders", s.name, d.ImageDir)
	}
	if d.ClassNames, err = namesForFolders(s, cnFile, folders, byWnid); err != nil {
		return nil, err
	}
	d.ClassIDs = folders
	if d.Test, err = scanClassFolders(d.ImageDir, "", folders, d.ClassNames, listFiles); err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return d, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// readImageNetPreprocessed reads CoOp's imagenet/preprocessed.pkl, a
// pickled {"train": [Datum], "test": [Datum]}. Each stored absolute impath
// ends in <wnid>/<file>; it is mapped to train/<wnid>/<file> or
// val/<wnid>/<file> under the image folder.
func readImageNetPreprocessed(d *Dataset, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	v, err := coopPickle.Decode(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	top, ok := v.(*pickle.Dict)
	if !ok {
		return fmt.Errorf("%s: holds a %T, want a dict with \"train\" and \"test\"", file, v)
	}
	for _, part := range []struct {
		key, sub string
		dst      *[]Item
	}{{"train", "train/", &d.Train}, {"test", "val/", &d.Test}} {
		lv, ok := top.Get(part.key)
		l, isList := lv.(*pickle.List)
		if !ok || !isList {
			return fmt.Errorf("%s: no %q list", file, part.key)
		}
		items := make([]Item, len(l.Items))
		for i, x := range l.Items {
			it, err := readDatum(x)
			if err != nil {
				return fmt.Errorf("%s: %q item %d: %w", file, part.key, i, err)
			}
			p := strings.ReplaceAll(it.Path, `\`, "/")
			parts := strings.Split(p, "/")
			if len(parts) < 2 {
				return fmt.Errorf("%s: %q item %d: impath %s is not <...>/<wnid>/<file>", file, part.key, i, it.Path)
			}
			it.Path = part.sub + parts[len(parts)-2] + "/" + parts[len(parts)-1]
			items[i] = it
		}
		*part.dst = items
	}
	if d.ClassNames, err = classNamesFromItems(file, d.Train, d.Test); err != nil {
		return err
	}
	d.ClassIDs = classIDsFromPaths(d.ClassNames, d.Train, d.Test)
	return nil
}

// classIDsFromPaths returns the wnid of each label from the folder of its
// items' paths (<split>/<wnid>/<file>), or nil when a label has none or
// two.
func classIDsFromPaths(names []string, lists ...[]Item) []string {
	ids := make([]string, len(names))
	for _, l := range lists {
		for _, it := range l {
			parts := strings.Split(it.Path, "/")
			if len(parts) < 3 || it.Label < 0 || it.Label >= len(ids) {
				return nil
			}
			w := parts[len(parts)-2]
			if ids[it.Label] != "" && ids[it.Label] != w {
				return nil
			}
			ids[it.Label] = w
		}
	}
	for _, w := range ids {
		if w == "" {
			return nil
		}
	}
	return ids
}
