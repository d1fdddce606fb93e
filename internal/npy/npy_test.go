package npy

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fixture is one entry of testdata/expected.json, written by gen.py from
// what numpy.load returns for the file.
type fixture struct {
	Descr   string `json:"descr"`
	Fortran bool   `json:"fortran"`
	Shape   []int  `json:"shape"`
	Values  []any  `json:"values"`
}

func loadExpected(t *testing.T) map[string]fixture {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Files map[string]fixture `json:"files"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Files
}

// num decodes a JSON value of expected.json ("nan", "inf", "-inf" or a number).
func num(v any) float64 {
	switch x := v.(type) {
	case string:
		switch x {
		case "nan":
			return math.NaN()
		case "inf":
			return math.Inf(1)
		case "-inf":
			return math.Inf(-1)
		}
	case float64:
		return x
	}
	panic("bad fixture value")
}

// TestReadNumpyFixtures reads every file NumPy wrote and compares shape and
// values with what numpy.load returned, bit for bit (float64 sources are
// compared after rounding to float32, as Read does). Fortran-ordered and
// float16 files are refused with an error naming the file.
func TestReadNumpyFixtures(t *testing.T) {
	for name, want := range loadExpected(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name)
			if want.Fortran || want.Descr[1:] == "f2" {
				_, _, err := Read(path)
				if err == nil || !strings.Contains(err.Error(), path) {
					t.Errorf("Read: err = %v, want an error naming the file", err)
				}
				_, _, err = ReadInt64(path)
				if err == nil || !strings.Contains(err.Error(), path) {
					t.Errorf("ReadInt64: err = %v, want an error naming the file", err)
				}
				return
			}
			isFloat := want.Descr[1] == 'f'
			if !isFloat {
				shape, data, err := ReadInt64(path)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(shape, want.Shape) {
					t.Fatalf("shape %v, want %v", shape, want.Shape)
				}
				if len(data) != len(want.Values) {
					t.Fatalf("%d values, want %d", len(data), len(want.Values))
				}
				for i, v := range want.Values {
					if data[i] != int64(v.(float64)) {
						t.Errorf("value %d = %d, want %v", i, data[i], v)
					}
				}
				if _, _, err := Read(path); err == nil {
					t.Errorf("Read accepted integer type %s", want.Descr)
				}
				return
			}
			shape, data, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(shape, want.Shape) {
				t.Fatalf("shape %v, want %v", shape, want.Shape)
			}
			if len(data) != len(want.Values) {
				t.Fatalf("%d values, want %d", len(data), len(want.Values))
			}
			for i, v := range want.Values {
				w := float32(num(v))
				got := data[i]
				if math.IsNaN(float64(w)) {
					if !math.IsNaN(float64(got)) {
						t.Errorf("value %d = %v, want NaN", i, got)
					}
					continue
				}
				if math.Float32bits(got) != math.Float32bits(w) {
					t.Errorf("value %d = %v (%#x), want %v (%#x)", i, got, math.Float32bits(got), w, math.Float32bits(w))
				}
			}
			if _, _, err := ReadInt64(path); err == nil {
				t.Errorf("ReadInt64 accepted float type %s", want.Descr)
			}
		})
	}
}

// TestWriteMatchesNumpy writes the arrays of NumPy's C-ordered little-endian
// float32 fixtures and checks the files are byte-identical to numpy.save's.
func TestWriteMatchesNumpy(t *testing.T) {
	exp := loadExpected(t)
	dir := t.TempDir()
	for _, name := range []string{"f4_2x3.npy", "f4_1d.npy", "f4_0d.npy", "f4_empty.npy", "f4_long.npy"} {
		want, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		shape, data, err := Read(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(shape, exp[name].Shape) {
			t.Fatalf("%s: shape %v", name, shape)
		}
		out := filepath.Join(dir, name)
		if err := Write(out, shape, data); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: Write output differs from numpy.save\n got %q\nwant %q", name, got[:min(len(got), 128)], want[:min(len(want), 128)])
		}
	}
	// Same for int64.
	want, err := os.ReadFile(filepath.Join("testdata", "i8_labels.npy"))
	if err != nil {
		t.Fatal(err)
	}
	shape, data, err := ReadInt64(filepath.Join("testdata", "i8_labels.npy"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "i8.npy")
	if err := WriteInt64(out, shape, data); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Errorf("WriteInt64 output differs from numpy.save\n got %q\nwant %q", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		shape []int
		n     int
	}{
		{"scalar", nil, 1},
		{"vector", []int{7}, 7},
		{"matrix", []int{3, 5}, 15},
		{"4d", []int{2, 3, 4, 5}, 120},
		{"empty", []int{4, 0, 2}, 0},
		{"huge-dim", []int{1234567890123, 0}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]float32, tc.n)
			ints := make([]int64, tc.n)
			for i := range data {
				data[i] = float32(math.Sin(float64(i)))*1e3 + float32(i)/7
				ints[i] = int64(i)*1e12 - 5
			}
			path := filepath.Join(dir, tc.name+".npy")
			if err := Write(path, tc.shape, data); err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(path)
			if hl := 10 + int(raw[8]) + int(raw[9])<<8; hl%64 != 0 {
				t.Errorf("data starts at %d, not a multiple of 64", hl)
			}
			shape, got, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			wantShape := tc.shape
			if wantShape == nil {
				wantShape = []int{}
			}
			if !slices.Equal(shape, wantShape) || !slices.Equal(got, data) {
				t.Errorf("round trip: shape %v data %v, want %v %v", shape, got, wantShape, data)
			}
			ipath := filepath.Join(dir, tc.name+"_i.npy")
			if err := WriteInt64(ipath, tc.shape, ints); err != nil {
				t.Fatal(err)
			}
			shape, gotInts, err := ReadInt64(ipath)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(shape, wantShape) || !slices.Equal(gotInts, ints) {
				t.Errorf("int round trip: shape %v data %v", shape, gotInts)
			}
		})
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		path  string
		shape []int
		n     int
		want  string
	}{
		{"count mismatch", filepath.Join(dir, "a.npy"), []int{2, 3}, 5, "holds 6 elements, data has 5"},
		{"negative", filepath.Join(dir, "b.npy"), []int{-1}, 0, "negative dimension"},
		{"overflow", filepath.Join(dir, "c.npy"), []int{1 << 40, 1 << 40}, 0, "too large"},
		{"missing dir", filepath.Join(dir, "nope", "d.npy"), []int{1}, 1, "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(tc.path, tc.shape, make([]float32, tc.n))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("err = %v, want it to mention %q and the path", err, tc.want)
			}
		})
	}
	// A failed write leaves an existing file untouched.
	path := filepath.Join(dir, "keep.npy")
	if err := Write(path, []int{2}, []float32{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []int{3}, []float32{1, 2}); err == nil {
		t.Fatal("mismatched write succeeded")
	}
	if _, data, err := Read(path); err != nil || !slices.Equal(data, []float32{1, 2}) {
		t.Errorf("existing file changed: %v %v", data, err)
	}
}

// TestReadErrors feeds malformed files built from a valid NumPy file.
func TestReadErrors(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "f4_2x3.npy"))
	if err != nil {
		t.Fatal(err)
	}
	// replace edits the header and keeps its length (the padding before
	// the final newline absorbs the difference).
	replace := func(old, new string) []byte {
		hl := int(good[8]) | int(good[9])<<8
		h := bytes.Replace(good[10:10+hl-1], []byte(old), []byte(new), 1)
		h = bytes.TrimRight(h, " ")
		if len(h) > hl-1 {
			t.Fatalf("edited header too long: %q", h)
		}
		h = append(h, bytes.Repeat([]byte(" "), hl-1-len(h))...)
		out := append(slices.Clone(good[:10]), h...)
		out = append(out, '\n')
		return append(out, good[10+hl:]...)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a valid .npy file"},
		{"not npy", []byte("PK\x03\x04 this is a zip"), "not a valid .npy file"},
		{"version", append([]byte("\x93NUMPY\x09\x00"), good[8:]...), "version number (9)"},
		{"truncated header", good[:40], "not a valid .npy file"},
		{"truncated data", good[:len(good)-3], "data truncated"},
		{"trailing", append(slices.Clone(good), 0, 0, 0, 0), "unexpected bytes"},
		{"descr", replace("'<f4'", "'<c8'"), "unsupported element type"},
		{"object", replace("'<f4'", "'|O8'"), "unsupported element type"},
		{"no shape", replace("'shape'", "'shapf'"), "not a valid .npy file"},
		{"bad shape", replace("(2, 3)", "(2; 3)"), "not a valid .npy file"},
		{"negative", replace("(2, 3)", "(-2, 3)"), "negative dimension"},
		{"huge", replace("(2, 3)", "(9999999999999, 9999999999)"), "too large"},
		{"fortran word", replace("False", "Maybe"), "fortran_order"},
		{"fortran", replace("False", "True"), "Fortran-ordered"},
		{"no newline", bytes.Replace(good, []byte("\n"), []byte(" "), 1), "malformed header"},
		{"keys swapped", replace("'descr': '<f4', 'fortran_order': False", "'fortran_order': False, 'descr': '<f4'"), "not a valid .npy file"},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".npy")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := Read(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("err = %v, want it to mention %q and the path", err, tc.want)
			}
		})
	}
	if _, _, err := Read(filepath.Join(dir, "missing.npy")); err == nil || !strings.Contains(err.Error(), "missing.npy") {
		t.Errorf("missing file: err = %v", err)
	}
}
