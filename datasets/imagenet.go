package datasets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/clipadapter/clipgo/internal/fsutil"
)

// ImageNetListing is the file, in the imagenet folder, that keeps the
// train and test lists of the first scan in the order the disk gave them
// (CoOp keeps the same in its preprocessed.pkl). Delete it to scan again.
const ImageNetListing = "listing.json"

// imageNetListing is ImageNetListing's format: the lists as split files
// write them, [path, label, classname].
type imageNetListing struct {
	Dataset string          `json:"dataset"`
	Train   json.RawMessage `json:"train"`
	Test    json.RawMessage `json:"test"`
}

// readImageNetListing reads file into d when it exists (ok false, nil
// error when it does not).
func readImageNetListing(d *Dataset, file string) (ok bool, err error) {
	raw, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var l imageNetListing
	if err := json.Unmarshal(raw, &l); err != nil {
		return false, fmt.Errorf("%s: %w (delete it to scan the folders again)", file, err)
	}
	if l.Dataset != d.Name {
		return false, fmt.Errorf("%s: lists dataset %q, not %s (delete it to scan the folders again)", file, l.Dataset, d.Name)
	}
	for _, part := range []struct {
		name string
		raw  json.RawMessage
		dst  *[]Item
	}{{"train", l.Train, &d.Train}, {"test", l.Test, &d.Test}} {
		if len(part.raw) == 0 {
			return false, fmt.Errorf("%s: no %q list (delete it to scan the folders again)", file, part.name)
		}
		if *part.dst, err = parseEntries(part.raw); err != nil {
			return false, fmt.Errorf("%s: %q: %w", file, part.name, err)
		}
	}
	if d.ClassNames, err = classNamesFromItems(file, d.Train, d.Test); err != nil {
		return false, err
	}
	d.ClassIDs = classIDsFromPaths(d.ClassNames, d.Train, d.Test)
	return true, nil
}

// writeImageNetListing writes d's train and test lists to file atomically.
func writeImageNetListing(d *Dataset, file string) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n    \"dataset\": %s,\n", quote(d.Name))
	writeEntries(&b, "train", d.Train, false)
	writeEntries(&b, "test", d.Test, true)
	b.WriteString("}\n")
	return fsutil.WriteFile(file, b.Bytes(), 0o644)
}
