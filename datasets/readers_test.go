package datasets

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeTree creates files (with the given contents) and folders (names
// ending in "/") under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func splitJSON(t *testing.T, train, val, test [][3]any) string {
	t.Helper()
	b, err := json.MarshalIndent(map[string][][3]any{"train": train, "val": val, "test": test}, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The layout table of docs/protocol.md §5 (templates: §6), copied by hand: folder, image folder
// and split file of every dataset that ships a split JSON.
var splitLayouts = []struct {
	name, alias, folder, imageDir, split, template string
}{
	{"Caltech101", "caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", "a photo of a {}."},
	{"OxfordPets", "oxford_pets", "oxford_pets", "images", "split_zhou_OxfordPets.json", "a photo of a {}, a type of pet."},
	{"StanfordCars", "stanford_cars", "stanford_cars", "", "split_zhou_StanfordCars.json", "a photo of a {}."},
	{"OxfordFlowers", "oxford_flowers", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json", "a photo of a {}, a type of flower."},
	{"Food101", "food101", "food-101", "images", "split_zhou_Food101.json", "a photo of {}, a type of food."},
	{"SUN397", "sun397", "sun397", "SUN397", "split_zhou_SUN397.json", "a photo of a {}."},
	{"DescribableTextures", "dtd", "dtd", "images", "split_zhou_DescribableTextures.json", "{} texture."},
	{"EuroSAT", "eurosat", "eurosat", "2750", "split_zhou_EuroSAT.json", "a centered satellite photo of {}."},
	{"UCF101", "ucf101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json", "a photo of a person doing {}."},
}

func TestSplitJSONReaders(t *testing.T) {
	for _, l := range splitLayouts {
		t.Run(l.name, func(t *testing.T) {
			root := t.TempDir()
			// Stored class names as CoOp's split files have them; file order
			// is kept, labels need not be sorted in the file.
			train := [][3]any{{"b/2.jpg", 1, "yin_yang"}, {"a/1.jpg", 0, "Annual Crop Land"}, {"b/3.jpg", 1, "yin_yang"}}
			val := [][3]any{{"a/4.jpg", 0, "Annual Crop Land"}}
			test := [][3]any{{"c/5.jpg", 2, "outdoor apartment_building"}}
			writeTree(t, root, map[string]string{
				l.folder + "/" + l.split:                 splitJSON(t, train, val, test),
				l.folder + "/" + l.imageDir + "/b/2.jpg": "x",
			})
			if l.imageDir != "" {
				writeTree(t, root, map[string]string{l.folder + "/" + l.imageDir + "/": ""})
			}
			d, err := Load(l.alias, root)
			if err != nil {
				t.Fatal(err)
			}
			if d.Name != l.name || d.Template != l.template {
				t.Errorf("name %q template %q, want %q %q", d.Name, d.Template, l.name, l.template)
			}
			if d.Dir != filepath.Join(root, l.folder) || d.ImageDir != filepath.Join(root, l.folder, l.imageDir) {
				t.Errorf("dir %s image dir %s", d.Dir, d.ImageDir)
			}
			wantNames := []string{"Annual Crop Land", "yin_yang", "outdoor apartment_building"}
			if !slices.Equal(d.ClassNames, wantNames) {
				t.Errorf("class names %q, want %q", d.ClassNames, wantNames)
			}
			if len(d.Train) != 3 || len(d.Val) != 1 || len(d.Test) != 1 {
				t.Fatalf("sizes %d/%d/%d, want 3/1/1", len(d.Train), len(d.Val), len(d.Test))
			}
			if d.Train[0] != (Item{Path: "b/2.jpg", Label: 1, ClassName: "yin_yang"}) {
				t.Errorf("first train item %+v", d.Train[0])
			}
			if _, err := os.Stat(d.File(d.Train[0])); err != nil {
				t.Errorf("File(first train item): %v", err)
			}
		})
	}
}

func TestAliases(t *testing.T) {
	tests := map[string]string{
		"ImageNet": "ImageNet", "imagenet": "ImageNet", "Caltech101": "Caltech101", "caltech-101": "Caltech101",
		"OxfordPets": "OxfordPets", "oxford_pets": "OxfordPets", "STANFORD_CARS": "StanfordCars",
		"oxford_flowers": "OxfordFlowers", "Flowers102": "OxfordFlowers", "food-101": "Food101",
		"fgvc_aircraft": "FGVCAircraft", "FGVCAircraft": "FGVCAircraft", "sun397": "SUN397",
		"dtd": "DescribableTextures", "DescribableTextures": "DescribableTextures", "EuroSAT": "EuroSAT",
		"ucf101": "UCF101", "imagenet_v2": "ImageNetV2", "ImageNetV2": "ImageNetV2", "imagenetv2": "ImageNetV2",
		"imagenet_sketch": "ImageNetSketch", "imagenet-sketch": "ImageNetSketch", "imagenet_a": "ImageNetA",
		"ImageNetA": "ImageNetA", "imagenet_r": "ImageNetR", "imagenet-rendition": "ImageNetR",
	}
	for in, want := range tests {
		if got, ok := CanonicalName(in); !ok || got != want {
			t.Errorf("CanonicalName(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if len(Names()) != 15 {
		t.Errorf("Names() has %d entries, want 15", len(Names()))
	}
	_, err := Load("cifar10", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `unknown dataset "cifar10"`) ||
		!strings.Contains(err.Error(), "OxfordPets (oxford_pets)") || !strings.Contains(err.Error(), "ImageNetR") {
		t.Errorf("unknown dataset: err = %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	root := t.TempDir()
	good := splitJSON(t, [][3]any{{"a/1.jpg", 0, "a"}}, nil, nil)
	tests := []struct {
		name  string
		files map[string]string
		root  string // relative to the temp dir; "" = the temp dir
		want  []string
	}{
		{"missing root", nil, "nowhere", []string{"data root", "nowhere", "not found"}},
		{"missing dataset folder", map[string]string{"other/": ""}, "", []string{"dataset folder", "caltech-101", "not found"}},
		{"root is the dataset folder", map[string]string{"caltech-101/split_zhou_Caltech101.json": good}, "caltech-101",
			[]string{"the root is the folder that contains caltech-101/"}},
		{"missing image folder", map[string]string{"caltech-101/split_zhou_Caltech101.json": good}, "",
			[]string{"image folder", "101_ObjectCategories", "not found"}},
		{"missing split file", map[string]string{"caltech-101/101_ObjectCategories/": ""}, "",
			[]string{"split_zhou_Caltech101.json not found", "DATASETS.md"}},
		{"not JSON", map[string]string{"caltech-101/101_ObjectCategories/": "", "caltech-101/split_zhou_Caltech101.json": "nope"}, "",
			[]string{"split_zhou_Caltech101.json", "not a JSON object"}},
		{"no test list", map[string]string{"caltech-101/101_ObjectCategories/": "", "caltech-101/split_zhou_Caltech101.json": `{"train": [], "val": []}`}, "",
			[]string{`no "test" list`}},
		{"bad entry", map[string]string{"caltech-101/101_ObjectCategories/": "",
			"caltech-101/split_zhou_Caltech101.json": `{"train": [["a/1.jpg", 0]], "val": [], "test": []}`}, "",
			[]string{"split_zhou_Caltech101.json", `"train"`, "[path, label, classname]"}},
		{"non-integer label", map[string]string{"caltech-101/101_ObjectCategories/": "",
			"caltech-101/split_zhou_Caltech101.json": `{"train": [["a/1.jpg", 0.5, "a"]], "val": [], "test": []}`}, "",
			[]string{"label 0.5 is not an integer"}},
		{"absolute path", map[string]string{"caltech-101/101_ObjectCategories/": "",
			"caltech-101/split_zhou_Caltech101.json": `{"train": [["/x/1.jpg", 0, "a"]], "val": [], "test": []}`}, "",
			[]string{"must be relative"}},
		{"two names for a label", map[string]string{"caltech-101/101_ObjectCategories/": "",
			"caltech-101/split_zhou_Caltech101.json": splitJSON(t, [][3]any{{"a/1.jpg", 0, "a"}}, [][3]any{{"a/2.jpg", 0, "b"}}, nil)}, "",
			[]string{"label 0 has two class names"}},
		{"label gap", map[string]string{"caltech-101/101_ObjectCategories/": "",
			"caltech-101/split_zhou_Caltech101.json": splitJSON(t, [][3]any{{"a/1.jpg", 0, "a"}, {"c/1.jpg", 2, "c"}}, nil, nil)}, "",
			[]string{"no item has label [1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(root, strings.ReplaceAll(tt.name, " ", "_"))
			writeTree(t, dir, tt.files)
			os.MkdirAll(dir, 0o755)
			_, err := Load("Caltech101", filepath.Join(dir, tt.root))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// A split file naming a missing image loads (files are checked lazily);
// the path it names is the one a reader would fail on.
func TestMissingImageIsLazy(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"eurosat/2750/":                   "",
		"eurosat/split_zhou_EuroSAT.json": splitJSON(t, [][3]any{{"Forest/Forest_1.jpg", 0, "Forest"}}, nil, nil),
	})
	d, err := Load("EuroSAT", root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Open(d.File(d.Train[0]))
	if err == nil || !strings.Contains(err.Error(), filepath.Join("2750", "Forest", "Forest_1.jpg")) {
		t.Errorf("opening the missing image: %v", err)
	}
}

func TestFGVCAircraft(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"fgvc_aircraft/images/":                  "",
		"fgvc_aircraft/variants.txt":             "707-320\nF-16A/B\nFalcon 2000\n",
		"fgvc_aircraft/images_variant_train.txt": "1025794 707-320\n0034309 Falcon 2000\r\n1340192 F-16A/B\n",
		"fgvc_aircraft/images_variant_val.txt":   "0062765 Falcon 2000\n",
		"fgvc_aircraft/images_variant_test.txt":  "1514522 707-320\n\n",
	})
	d, err := Load("fgvc_aircraft", root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"707-320", "F-16A/B", "Falcon 2000"}; !slices.Equal(d.ClassNames, want) {
		t.Errorf("class names %q, want %q (variants.txt order, no renaming)", d.ClassNames, want)
	}
	wantTrain := []Item{{"1025794.jpg", 0, "707-320", 0}, {"0034309.jpg", 2, "Falcon 2000", 0}, {"1340192.jpg", 1, "F-16A/B", 0}}
	if !slices.Equal(d.Train, wantTrain) {
		t.Errorf("train %+v, want %+v", d.Train, wantTrain)
	}
	if len(d.Val) != 1 || len(d.Test) != 1 || d.Test[0].Label != 0 {
		t.Errorf("val %+v test %+v", d.Val, d.Test)
	}
	if d.ImageDir != filepath.Join(root, "fgvc_aircraft", "images") || d.Template != "a photo of a {}, a type of aircraft." {
		t.Errorf("image dir %s template %q", d.ImageDir, d.Template)
	}
	writeTree(t, root, map[string]string{"fgvc_aircraft/images_variant_val.txt": "0062765 Falcon 2000\n0062766 Boeing 747\n"})
	if _, err := Load("FGVCAircraft", root); err == nil || !strings.Contains(err.Error(), "images_variant_val.txt:2") ||
		!strings.Contains(err.Error(), `"Boeing 747"`) {
		t.Errorf("unknown variant: err = %v", err)
	}
	os.Remove(filepath.Join(root, "fgvc_aircraft", "variants.txt"))
	if _, err := Load("FGVCAircraft", root); err == nil || !strings.Contains(err.Error(), "variants.txt") {
		t.Errorf("missing variants.txt: err = %v", err)
	}
}

// imagenetTree writes the tiny ImageNet of testdata/imagenet_layout.json.
func imagenetTree(t *testing.T, root string) (train, test [][3]any) {
	t.Helper()
	raw, err := os.ReadFile("testdata/imagenet_layout.json")
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		ClassNames [][2]string `json:"classnames"`
		Train      [][3]any    `json:"train"`
		Test       [][3]any    `json:"test"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	var cn strings.Builder
	for _, c := range l.ClassNames {
		cn.WriteString(c[0] + " " + c[1] + "\n")
	}
	files["imagenet/classnames.txt"] = cn.String()
	for _, e := range append(append([][3]any{}, l.Train...), l.Test...) {
		files["imagenet/images/"+e[0].(string)] = ""
	}
	// Hidden files are not images.
	files["imagenet/images/train/n01440764/.DS_Store"] = ""
	writeTree(t, root, files)
	return l.Train, l.Test
}

// writeImageNetListingOrder writes the package's ImageNet listing file
// with the lists in the given order.
func writeImageNetListingOrder(t *testing.T, root string, train, test [][3]any) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"dataset": "ImageNet", "train": train, "test": test})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "imagenet", ImageNetListing), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestImageNet(t *testing.T) {
	root := t.TempDir()
	train, test := imagenetTree(t, root)
	d, err := Load("imagenet", root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"tench", "goldfish", "English springer"}; !slices.Equal(d.ClassNames, want) {
		t.Errorf("class names %q, want %q", d.ClassNames, want)
	}
	if want := []string{"n01440764", "n01443537", "n02102040"}; !slices.Equal(d.ClassIDs, want) {
		t.Errorf("class ids %q, want %q", d.ClassIDs, want)
	}
	if d.ImageDir != filepath.Join(root, "imagenet", "images") {
		t.Errorf("image dir %s", d.ImageDir)
	}
	// Each class folder's files come in the directory's own order (what
	// getdents returns, read here with the raw system call), as CoOp's
	// os.listdir gives them; labels and class names follow the layout.
	check := func(name string, got []Item, want [][3]any) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d items, want %d", name, len(got), len(want))
		}
		wantByPath := map[string][3]any{}
		var folders []string
		for _, w := range want {
			wantByPath[w[0].(string)] = w
			if f := path.Dir(w[0].(string)); !slices.Contains(folders, f) {
				folders = append(folders, f)
			}
		}
		var order []string
		for _, f := range folders {
			for _, n := range getdentsNames(t, filepath.Join(d.ImageDir, f)) {
				if !strings.HasPrefix(n, ".") {
					order = append(order, f+"/"+n)
				}
			}
		}
		for i, it := range got {
			w, ok := wantByPath[it.Path]
			if !ok || float64(it.Label) != w[1] || it.ClassName != w[2] {
				t.Errorf("%s[%d] = %+v, want %v", name, i, it, w)
			}
			if it.Path != order[i] {
				t.Errorf("%s[%d] = %s, the directory lists %s there", name, i, it.Path, order[i])
			}
		}
	}
	check("train", d.Train, train)
	check("test", d.Test, test)
	if len(d.Val) != 0 {
		t.Errorf("ImageNet has a val list of %d items; its few-shot val is drawn from train", len(d.Val))
	}

	// The listing is saved and later loads read it, whatever the disk's
	// order: a new file in a folder is not picked up, and a reordered
	// listing is followed.
	listing := filepath.Join(root, "imagenet", ImageNetListing)
	if _, err := os.Stat(listing); err != nil {
		t.Fatalf("no %s after the first scan: %v", ImageNetListing, err)
	}
	writeTree(t, root, map[string]string{"imagenet/images/train/n01440764/new.JPEG": ""})
	again, err := Load("ImageNet", root)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Train, d.Train) || !slices.Equal(again.Test, d.Test) || !slices.Equal(again.ClassNames, d.ClassNames) {
		t.Errorf("second load differs from the saved listing")
	}
	writeImageNetListingOrder(t, root, train, test)
	sortedLoad, err := Load("ImageNet", root)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range train {
		if sortedLoad.Train[i].Path != w[0] {
			t.Fatalf("train[%d] = %s after rewriting the listing, want %s", i, sortedLoad.Train[i].Path, w[0])
		}
	}
	os.WriteFile(listing, []byte("{"), 0o644)
	if _, err := Load("ImageNet", root); err == nil || !strings.Contains(err.Error(), ImageNetListing) || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("corrupt listing: err = %v", err)
	}
	os.Remove(listing)
	os.Remove(filepath.Join(root, "imagenet/images/train/n01440764/new.JPEG"))

	// Class folders must match between train and val.
	writeTree(t, root, map[string]string{"imagenet/images/train/n09999999/x.JPEG": ""})
	if _, err := Load("ImageNet", root); err == nil || !strings.Contains(err.Error(), "different class folders") {
		t.Errorf("extra train folder: err = %v", err)
	}
	writeTree(t, root, map[string]string{"imagenet/images/val/n09999999/y.JPEG": ""})
	if _, err := Load("ImageNet", root); err == nil || !strings.Contains(err.Error(), "n09999999 has no line in") {
		t.Errorf("folder without a class name: err = %v", err)
	}
	os.RemoveAll(filepath.Join(root, "imagenet", "images", "val"))
	if _, err := Load("ImageNet", root); err == nil || !strings.Contains(err.Error(), "val folder") {
		t.Errorf("missing val: err = %v", err)
	}
}

func TestImageNetV2(t *testing.T) {
	root := t.TempDir()
	img := "imagenetv2/imagenetv2-matched-frequency-format-val/"
	writeTree(t, root, map[string]string{
		"imagenetv2/classnames.txt": "n01440764 tench\nn01443537 goldfish\nn02102040 English springer\n",
		img + "0/a.jpeg":            "", img + "0/b.jpeg": "", img + "1/c.jpeg": "", img + "2/d.jpeg": "",
	})
	d, err := Load("imagenet_v2", root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Item{{"0/a.jpeg", 0, "tench", 0}, {"0/b.jpeg", 0, "tench", 0}, {"1/c.jpeg", 1, "goldfish", 0}, {"2/d.jpeg", 2, "English springer", 0}}
	if !slices.Equal(d.Test, want) || len(d.Train) != 0 || len(d.Val) != 0 {
		t.Errorf("test %+v (train %d, val %d), want %+v", d.Test, len(d.Train), len(d.Val), want)
	}
	if ids := []string{"n01440764", "n01443537", "n02102040"}; !slices.Equal(d.ClassIDs, ids) {
		t.Errorf("class ids %q, want %q", d.ClassIDs, ids)
	}
	os.RemoveAll(filepath.Join(root, filepath.FromSlash(img+"2")))
	if _, err := Load("ImageNetV2", root); err == nil || !strings.Contains(err.Error(), filepath.FromSlash(img+"2")) {
		t.Errorf("missing label folder: err = %v", err)
	}
}

func TestImageNetVariants(t *testing.T) {
	classnames := "n01440764 tench\nn01443537 goldfish\nn01484850 great white shark\nn02102040 English springer\nn09999999 spare\n"
	for _, v := range []struct{ name, folder, imageDir string }{
		{"ImageNetSketch", "imagenet-sketch", "images"},
		{"ImageNetA", "imagenet-adversarial", "imagenet-a"},
		{"ImageNetR", "imagenet-rendition", "imagenet-r"},
	} {
		t.Run(v.name, func(t *testing.T) {
			root := t.TempDir()
			img := v.folder + "/" + v.imageDir + "/"
			writeTree(t, root, map[string]string{
				v.folder + "/classnames.txt": classnames,
				img + "README.txt":           "not a class",
				img + "n02102040/2.jpg":      "", img + "n01443537/1.jpg": "", img + "n01443537/0.jpg": "",
				img + "n01484850/x.png": "",
			})
			d, err := Load(v.name, root)
			if err != nil {
				t.Fatal(err)
			}
			// A class subset, labelled 0..n-1 in sorted wnid order.
			if want := []string{"goldfish", "great white shark", "English springer"}; !slices.Equal(d.ClassNames, want) {
				t.Errorf("class names %q, want %q", d.ClassNames, want)
			}
			if ids := []string{"n01443537", "n01484850", "n02102040"}; !slices.Equal(d.ClassIDs, ids) {
				t.Errorf("class ids %q, want %q", d.ClassIDs, ids)
			}
			want := []Item{{"n01443537/0.jpg", 0, "goldfish", 0}, {"n01443537/1.jpg", 0, "goldfish", 0},
				{"n01484850/x.png", 1, "great white shark", 0}, {"n02102040/2.jpg", 2, "English springer", 0}}
			if !slices.Equal(d.Test, want) || len(d.Train) != 0 {
				t.Errorf("test %+v, want %+v", d.Test, want)
			}
			if d.Template != "a photo of a {}." {
				t.Errorf("template %q", d.Template)
			}
			writeTree(t, root, map[string]string{img + "n07777777/z.jpg": ""})
			if _, err := Load(v.name, root); err == nil || !strings.Contains(err.Error(), "n07777777 has no line in") {
				t.Errorf("unknown wnid: err = %v", err)
			}
		})
	}
}

func TestPrompts(t *testing.T) {
	tests := []struct{ template, class, want string }{
		{"a photo of a {}, a type of pet.", "american_bulldog", "a photo of a american bulldog, a type of pet."},
		{"a centered satellite photo of {}.", "Annual Crop Land", "a centered satellite photo of Annual Crop Land."},
		{"a photo of a person doing {}.", "Apply_Eye_Makeup", "a photo of a person doing Apply Eye Makeup."},
		{"{} texture.", "banded", "banded texture."},
		{"a photo of a {}, a type of aircraft.", "F-16A/B", "a photo of a F-16A/B, a type of aircraft."},
	}
	for _, tt := range tests {
		if got := Prompt(tt.template, tt.class); got != tt.want {
			t.Errorf("Prompt(%q, %q) = %q, want %q", tt.template, tt.class, got, tt.want)
		}
	}
	d := &Dataset{Template: "a photo of a {}.", ClassNames: []string{"yin_yang", "face"}}
	if got := d.Prompts(); !slices.Equal(got, []string{"a photo of a yin yang.", "a photo of a face."}) {
		t.Errorf("Prompts() = %q", got)
	}
}

func TestImageFolder(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{"notes.txt": "", ".hidden/a.jpg": "", "split_fewshot/x.json": "", "cat/readme.md": ""}
	for i := range 10 {
		files["cat/"+string(rune('a'+i))+".jpg"] = ""
	}
	for i := range 5 {
		files["Dog/"+string(rune('a'+i))+".PNG"] = ""
	}
	files["emu/only.jpeg"] = ""
	writeTree(t, root, files)
	d, err := ImageFolder(root, 1, 0.2, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Dog", "cat", "emu"}; !slices.Equal(d.ClassNames, want) {
		t.Errorf("classes %q, want %q (byte order, hidden and split_fewshot skipped)", d.ClassNames, want)
	}
	count := func(items []Item, label int) int {
		n := 0
		for _, it := range items {
			if it.Label == label {
				n++
			}
		}
		return n
	}
	// Dog: 5 -> val round(1.0)=1, test round(1.5)=2, train 2. cat: 10 -> 2, 3, 5.
	// emu: 1 -> val round(0.2)=0, test round(0.3)=0, train 1.
	for _, c := range []struct{ label, train, val, test int }{{0, 2, 1, 2}, {1, 5, 2, 3}, {2, 1, 0, 0}} {
		if g := [3]int{count(d.Train, c.label), count(d.Val, c.label), count(d.Test, c.label)}; g != [3]int{c.train, c.val, c.test} {
			t.Errorf("class %d: split %v, want %v", c.label, g, [3]int{c.train, c.val, c.test})
		}
	}
	seen := map[string]bool{}
	for _, l := range [][]Item{d.Train, d.Val, d.Test} {
		for _, it := range l {
			if seen[it.Path] || it.ClassName != d.ClassNames[it.Label] || !strings.HasPrefix(it.Path, it.ClassName+"/") {
				t.Errorf("bad or repeated item %+v", it)
			}
			seen[it.Path] = true
		}
	}
	if len(seen) != 16 {
		t.Errorf("%d images, want 16 (readme.md is not an image)", len(seen))
	}
	again, _ := ImageFolder(root, 1, 0.2, 0.3)
	other, _ := ImageFolder(root, 2, 0.2, 0.3)
	if !slices.Equal(again.Test, d.Test) {
		t.Error("same seed, different split")
	}
	if slices.Equal(other.Test, d.Test) && slices.Equal(other.Val, d.Val) {
		t.Error("seeds 1 and 2 gave the same split")
	}
	if _, err := ImageFolder(root, 1, 0.5, 0.5); err == nil {
		t.Error("valFrac+testFrac = 1 accepted")
	}
	if _, err := ImageFolder(filepath.Join(root, "nope"), 1, 0.2, 0.2); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing root: err = %v", err)
	}
	writeTree(t, root, map[string]string{"fox/": ""})
	if _, err := ImageFolder(root, 1, 0.2, 0.2); err == nil || !strings.Contains(err.Error(), "fox has no images") {
		t.Errorf("empty class: err = %v", err)
	}
}

// CoOp's imagenet/preprocessed.pkl is read instead of scanning, keeping
// its (unsorted) file order, so the few-shot draw matches CoOp's.
func TestImageNetPreprocessed(t *testing.T) {
	root := t.TempDir()
	_, test := imagenetTree(t, root)
	copyFile(t, "testdata/imagenet_preprocessed.pkl", filepath.Join(root, "imagenet", "preprocessed.pkl"))
	raw, err := os.ReadFile("testdata/imagenet_preprocessed.json")
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Train   []string `json:"train"`
		FewShot []string `json:"fewshot_4_seed_1"`
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	d, err := Load("ImageNet", root)
	if err != nil {
		t.Fatal(err)
	}
	paths := func(items []Item) []string {
		var out []string
		for _, it := range items {
			out = append(out, it.Path)
		}
		return out
	}
	if got := paths(d.Train); !slices.Equal(got, want.Train) {
		t.Errorf("train order %q, want the pickle's %q", got, want.Train)
	}
	if len(d.Test) != len(test) || d.Test[0].Path != test[0][0] || len(d.Val) != 0 {
		t.Errorf("test %v", d.Test)
	}
	if w := []string{"tench", "goldfish", "English springer"}; !slices.Equal(d.ClassNames, w) {
		t.Errorf("class names %q", d.ClassNames)
	}
	if w := []string{"n01440764", "n01443537", "n02102040"}; !slices.Equal(d.ClassIDs, w) {
		t.Errorf("class ids %q, want %q (from the pickle's paths)", d.ClassIDs, w)
	}
	train, _, err := FewShot(d, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(train); !slices.Equal(got, want.FewShot) {
		t.Errorf("4-shot seed 1 %q, CoOp (Python) %q", got, want.FewShot)
	}
	if _, err := os.Stat(d.File(train[0])); err != nil {
		t.Errorf("mapped path does not exist: %v", err)
	}
	os.WriteFile(filepath.Join(root, "imagenet", "preprocessed.pkl"), []byte("junk"), 0o644)
	if _, err := Load("ImageNet", root); err == nil || !strings.Contains(err.Error(), "preprocessed.pkl") {
		t.Errorf("corrupt preprocessed.pkl: err = %v", err)
	}
}
