package datasets

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
)

// imageExts are the file extensions ImageFolder treats as images.
var imageExts = []string{".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}

// ImageFolder reads a generic dataset laid out as root/<class>/<image> and
// splits each class at random: round(valFrac*n) images to val,
// round(testFrac*n) to test (Python-style rounding, half to even; reduced
// so that train keeps at least one image), the rest to train. Classes are
// the non-hidden subfolders in byte order (label = position; the folder
// name is the class name); images are the files with a common image
// extension. The split of a class depends only on seed and the class name,
// drawn with math/rand/v2's PCG; lists are sorted by path within each
// class. The folder split_fewshot (the few-shot cache) is not a class.
func ImageFolder(root string, seed uint64, valFrac, testFrac float64) (*Dataset, error) {
	if !(valFrac >= 0 && testFrac >= 0 && valFrac+testFrac < 1) {
		return nil, fmt.Errorf("image folder split: need valFrac, testFrac >= 0 and valFrac+testFrac < 1, got %g and %g", valFrac, testFrac)
	}
	if err := checkDir(root, "image folder"); err != nil {
		return nil, err
	}
	dirs, err := listDirs(root)
	if err != nil {
		return nil, fmt.Errorf("image folder: %w", err)
	}
	dirs = slices.DeleteFunc(dirs, func(s string) bool { return s == CacheDir })
	if len(dirs) == 0 {
		return nil, fmt.Errorf("image folder %s has no class subfolders (want root/<class>/<image>)", root)
	}
	d := &Dataset{Name: "ImageFolder", Dir: root, ImageDir: root, ClassNames: dirs, Template: templatePhoto}
	for label, class := range dirs {
		files, err := listFiles(filepath.Join(root, class))
		if err != nil {
			return nil, fmt.Errorf("image folder: %w", err)
		}
		files = slices.DeleteFunc(files, func(f string) bool {
			return !slices.Contains(imageExts, strings.ToLower(filepath.Ext(f)))
		})
		n := len(files)
		if n == 0 {
			return nil, fmt.Errorf("image folder: class folder %s has no images (%s)", filepath.Join(root, class), strings.Join(imageExts, " "))
		}
		nVal, nTest := int(math.RoundToEven(valFrac*float64(n))), int(math.RoundToEven(testFrac*float64(n)))
		for nVal+nTest >= n {
			if nTest > 0 {
				nTest--
			} else {
				nVal--
			}
		}
		h := fnv.New64a()
		h.Write([]byte(class))
		rng := rand.New(rand.NewPCG(seed, h.Sum64()))
		rng.Shuffle(n, func(i, j int) { files[i], files[j] = files[j], files[i] })
		nTrain := n - nVal - nTest
		parts := [][]string{files[:nTrain], files[nTrain : nTrain+nVal], files[nTrain+nVal:]}
		dsts := []*[]Item{&d.Train, &d.Val, &d.Test}
		for k, part := range parts {
			slices.Sort(part)
			for _, f := range part {
				*dsts[k] = append(*dsts[k], Item{Path: class + "/" + f, Label: label, ClassName: class})
			}
		}
	}
	return d, nil
}
