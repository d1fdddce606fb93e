// Package datasets reads the few-shot image classification datasets the way
// the CoOp code base (and with it CLIP-Adapter) reads them, and draws the
// same few-shot splits.
//
// Load reads one of the 11 few-shot datasets or the 4 ImageNet variants
// from its folder under a data root, with CoOp's folder names, published
// split files (split_zhou_<Name>.json) and class-name rules. FewShot
// reproduces Dassl's few-shot sampler bit for bit (CPython's random module
// is emulated by internal/pyrandom), CachedFewShot adds CoOp's on-disk cache
// (reading CoOp's own pickles too), and Dataset.Subsample applies CoCoOp's
// base/new class split. ImageFolder reads a generic root/<class>/<image>
// tree, and Synth writes a small procedural dataset for demos and tests.
//
// Image files are not opened while loading: a split file that names a
// missing file is only noticed when the file is read (Check does that for
// a whole dataset).
package datasets

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Item is one labelled image.
type Item struct {
	// Path is the image path as the split file gives it: relative to the
	// dataset's ImageDir, with forward slashes.
	Path string
	// Label is the 0-based class index.
	Label int
	// ClassName is the stored class name (underscores kept; see Prompt).
	ClassName string
	// Domain is Dassl's domain index; 0 for every dataset here.
	Domain int
}

// Dataset is a loaded dataset: its class names, prompt template and the
// train, val and test lists in split-file order.
type Dataset struct {
	// Name is the canonical name, CoOp's DATASET.NAME (e.g. "Caltech101").
	Name string
	// Dir is the dataset's folder under the data root. Few-shot caches live
	// in Dir/split_fewshot.
	Dir string
	// ImageDir is the folder Item paths are relative to.
	ImageDir string
	// ClassNames holds the stored class name of each label.
	ClassNames []string
	// ClassIDs holds each label's class identifier where the dataset has
	// one: the WordNet id of ImageNet and its variants (through which the
	// 200 classes of ImageNet-A and -R map to ImageNet's); nil otherwise.
	ClassIDs []string
	// Template is the dataset's single zero-shot prompt template (CoOp,
	// CLIP-Adapter); "{}" stands for the class name.
	Template string
	// Train, Val and Test are the split lists. ImageNet has no Val list
	// (CoOp validates on its test list; FewShot draws ImageNet's few-shot
	// val from Train instead); the ImageNet variants have only Test.
	Train, Val, Test []Item
}

// File returns the path of the item's image on disk.
func (d *Dataset) File(it Item) string {
	return filepath.Join(d.ImageDir, filepath.FromSlash(it.Path))
}

// Prompts returns the dataset's template filled with every class name, in
// label order.
func (d *Dataset) Prompts() []string {
	out := make([]string, len(d.ClassNames))
	for i, c := range d.ClassNames {
		out[i] = Prompt(d.Template, c)
	}
	return out
}

// Prompt fills template's "{}" with className after replacing underscores
// by spaces, the only cleaning CoOp-family methods apply at prompt time.
func Prompt(template, className string) string {
	return strings.Replace(template, "{}", strings.ReplaceAll(className, "_", " "), 1)
}

// WithTrainVal returns a shallow copy of d whose Train and Val lists are
// replaced, e.g. by a few-shot split before Subsample.
func (d *Dataset) WithTrainVal(train, val []Item) *Dataset {
	c := *d
	c.Train, c.Val = train, val
	return &c
}

// Templates used by CoOp's zero-shot trainer and CLIP-Adapter.
const (
	templatePhoto = "a photo of a {}."
)

// spec describes how one dataset is laid out on disk.
type spec struct {
	name     string // CoOp's DATASET.NAME
	config   string // CoOp's config file name, also accepted by Load
	folder   string // folder under the data root
	imageDir string // folder of the images, relative to folder ("" = folder)
	split    string // published split file in folder, "" if read otherwise
	template string
	read     func(s *spec, dir string) (*Dataset, error) // nil: split JSON
	// extraAliases are further accepted names.
	extraAliases []string
}

var specs = []*spec{
	{name: "ImageNet", config: "imagenet", folder: "imagenet", imageDir: "images",
		template: templatePhoto, read: readImageNet},
	{name: "Caltech101", config: "caltech101", folder: "caltech-101", imageDir: "101_ObjectCategories",
		split: "split_zhou_Caltech101.json", template: templatePhoto},
	{name: "OxfordPets", config: "oxford_pets", folder: "oxford_pets", imageDir: "images",
		split: "split_zhou_OxfordPets.json", template: "a photo of a {}, a type of pet."},
	{name: "StanfordCars", config: "stanford_cars", folder: "stanford_cars", imageDir: "",
		split: "split_zhou_StanfordCars.json", template: templatePhoto},
	{name: "OxfordFlowers", config: "oxford_flowers", folder: "oxford_flowers", imageDir: "jpg",
		split: "split_zhou_OxfordFlowers.json", template: "a photo of a {}, a type of flower.",
		extraAliases: []string{"flowers102"}},
	{name: "Food101", config: "food101", folder: "food-101", imageDir: "images",
		split: "split_zhou_Food101.json", template: "a photo of {}, a type of food."},
	{name: "FGVCAircraft", config: "fgvc_aircraft", folder: "fgvc_aircraft", imageDir: "images",
		template: "a photo of a {}, a type of aircraft.", read: readFGVCAircraft},
	{name: "SUN397", config: "sun397", folder: "sun397", imageDir: "SUN397",
		split: "split_zhou_SUN397.json", template: templatePhoto},
	{name: "DescribableTextures", config: "dtd", folder: "dtd", imageDir: "images",
		split: "split_zhou_DescribableTextures.json", template: "{} texture."},
	{name: "EuroSAT", config: "eurosat", folder: "eurosat", imageDir: "2750",
		split: "split_zhou_EuroSAT.json", template: "a centered satellite photo of {}."},
	{name: "UCF101", config: "ucf101", folder: "ucf101", imageDir: "UCF-101-midframes",
		split: "split_zhou_UCF101.json", template: "a photo of a person doing {}."},
	{name: "ImageNetV2", config: "imagenetv2", folder: "imagenetv2",
		imageDir: "imagenetv2-matched-frequency-format-val", template: templatePhoto,
		read: readImageNetV2, extraAliases: []string{"imagenet_v2"}},
	{name: "ImageNetSketch", config: "imagenet_sketch", folder: "imagenet-sketch", imageDir: "images",
		template: templatePhoto, read: readImageNetVariant},
	{name: "ImageNetA", config: "imagenet_a", folder: "imagenet-adversarial", imageDir: "imagenet-a",
		template: templatePhoto, read: readImageNetVariant},
	{name: "ImageNetR", config: "imagenet_r", folder: "imagenet-rendition", imageDir: "imagenet-r",
		template: templatePhoto, read: readImageNetVariant},
}

// normalizeName folds case and drops '_', '-', ' ' and '.', so that
// "OxfordPets", "oxford_pets" and "oxford-pets" are the same name.
func normalizeName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch r {
		case '_', '-', ' ', '.':
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func lookup(name string) (*spec, bool) {
	n := normalizeName(name)
	for _, s := range specs {
		if n == normalizeName(s.name) || n == normalizeName(s.config) || n == normalizeName(s.folder) {
			return s, true
		}
		for _, a := range s.extraAliases {
			if n == normalizeName(a) {
				return s, true
			}
		}
	}
	return nil, false
}

// Names returns the canonical names of the datasets Load reads.
func Names() []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.name
	}
	return out
}

// CanonicalName returns the canonical name Load uses for name and whether
// name is known.
func CanonicalName(name string) (string, bool) {
	s, ok := lookup(name)
	if !ok {
		return "", false
	}
	return s.name, true
}

// ConfigName returns the configuration name of the dataset called name
// (CoOp's config file name, e.g. "imagenet_sketch") and whether name is
// known.
func ConfigName(name string) (string, bool) {
	s, ok := lookup(name)
	if !ok {
		return "", false
	}
	return s.config, true
}

// Load reads the dataset called name from its folder under root. Names are
// CoOp's DATASET.NAME values (e.g. "OxfordPets") or its config file names
// (e.g. "oxford_pets"), matched case-insensitively; Names lists them.
//
// As in CoOp: the nine datasets with a published split read
// <folder>/split_zhou_<Name>.json (class names as stored there);
// FGVCAircraft reads variants.txt and images_variant_{train,val,test}.txt;
// ImageNet scans images/train and images/val (wnid folders in sorted order,
// names from classnames.txt; files sorted, where CoOp uses the unsorted
// os.listdir order), or reads CoOp's imagenet/preprocessed.pkl when present
// (which keeps the writer's order); ImageNetV2 maps folder i to the i-th
// line of classnames.txt; ImageNet-Sketch, -A and -R label their sorted
// wnid folders 0..n-1 (a 200-class subset for -A/-R). The variants are
// test-only. Missing folders or files are errors that name what was
// expected; image files themselves are not opened.
func Load(name, root string) (*Dataset, error) {
	s, ok := lookup(name)
	if !ok {
		var valid []string
		for _, s := range specs {
			valid = append(valid, s.name+" ("+s.config+")")
		}
		return nil, fmt.Errorf("unknown dataset %q; valid names (case-insensitive): %s", name, strings.Join(valid, ", "))
	}
	if err := checkDir(root, "data root"); err != nil {
		inside := ""
		if s.imageDir != "" {
			inside = " with " + s.imageDir + "/ inside"
		}
		return nil, fmt.Errorf("%w: data.root must be the folder that holds the datasets in CoOp's layout (for %s: %s/%s/%s); the README's \"Datasets\" section gives each dataset's layout", err, s.name, root, s.folder, inside)
	}
	dir := filepath.Join(root, s.folder)
	if _, err := os.Stat(dir); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		hint := ""
		if filepath.Base(filepath.Clean(root)) == s.folder {
			hint = fmt.Sprintf("; the root is the folder that contains %s/, not %s/ itself", s.folder, s.folder)
		}
		return nil, fmt.Errorf("%s: dataset folder %s not found (expected %s/ under the data root)%s", s.name, dir, s.folder, hint)
	}
	imageDir := filepath.Join(dir, s.imageDir)
	if err := checkDir(imageDir, s.name+" image folder"); err != nil {
		return nil, err
	}
	var d *Dataset
	var err error
	if s.read != nil {
		d, err = s.read(s, dir)
	} else {
		d, err = readSplitDataset(s, dir)
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

func checkDir(path, what string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s %s not found", what, path)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s is not a folder", what, path)
	}
	return nil
}

// newDataset fills the fields every reader sets the same way.
func newDataset(s *spec, dir string) *Dataset {
	return &Dataset{
		Name:     s.name,
		Dir:      dir,
		ImageDir: filepath.Join(dir, s.imageDir),
		Template: s.template,
	}
}

// classNamesFromItems builds the label -> class name table as Dassl does
// (from (label, classname) pairs, ordered by label), over all lists. Labels
// must cover 0..max and each label must have one name; source names the
// file for errors.
func classNamesFromItems(source string, lists ...[]Item) ([]string, error) {
	names := map[int]string{}
	maxLabel := -1
	for _, l := range lists {
		for _, it := range l {
			if it.Label < 0 {
				return nil, fmt.Errorf("%s: %s has negative label %d", source, it.Path, it.Label)
			}
			if prev, ok := names[it.Label]; ok {
				if prev != it.ClassName {
					return nil, fmt.Errorf("%s: label %d has two class names, %q and %q (at %s)", source, it.Label, prev, it.ClassName, it.Path)
				}
				continue
			}
			names[it.Label] = it.ClassName
			maxLabel = max(maxLabel, it.Label)
		}
	}
	out := make([]string, maxLabel+1)
	var missing []int
	for i := range out {
		n, ok := names[i]
		if !ok {
			missing = append(missing, i)
		}
		out[i] = n
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: labels run to %d but no item has label %v", source, maxLabel, missing[:min(len(missing), 10)])
	}
	return out, nil
}

// listDirs returns the sorted names of the non-hidden subfolders of dir.
func listDirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		isDir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 {
			if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && fi.IsDir() {
				isDir = true
			}
		}
		if isDir {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// listFiles returns the sorted names of the non-hidden entries of dir that
// are not folders.
func listFiles(dir string) ([]string, error) {
	out, err := listFilesDirOrder(dir)
	slices.Sort(out)
	return out, err
}

// listFilesDirOrder is listFiles in the directory's own order (what the
// kernel's getdents returns, as Python's os.listdir does), which CoOp's
// ImageNet reader keeps and its few-shot draw depends on.
func listFilesDirOrder(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1) // unlike os.ReadDir, does not sort
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		out = append(out, e.Name())
	}
	return out, nil
}
