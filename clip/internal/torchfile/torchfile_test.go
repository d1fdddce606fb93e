package torchfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/internal/pickle"
)

// The pickles below are Python's pickle.dumps of
//
//	obj = {'a': [1, -2, 3.5, 'x', True, None, (1, 2)], 'b': b'\x00\x01',
//	       'big': 2**40, 'neg': -300, 'odict': OrderedDict([('k', 1)]), 's': 'é'}
//	obj['again'] = obj['a']
//
// with protocols 0, 2, 4 and 5 (Python 3.11).
var pythonPickles = map[int]string{
	0: "286470300a56610a70310a286c70320a49310a61492d320a6146332e350a6156780a70330a614930310a614e612849310a49320a7470340a617356620a70350a635f636f646563730a656e636f64650a70360a28565c7530303030010a70370a566c6174696e310a70380a7470390a527031300a73566269670a7031310a4c313039393531313632373737364c0a73566e65670a7031320a492d3330300a73566f646963740a7031330a63636f6c6c656374696f6e730a4f726465726564446963740a7031340a2874527031350a566b0a7031360a49310a737356730a7031370a56e90a7031380a7356616761696e0a7031390a67320a732e",
	2: "80027d71002858010000006171015d7102284b014afeffffff47400c0000000000005801000000787103884e4b014b02867104655801000000627105635f636f646563730a656e636f64650a710658020000000001710758060000006c6174696e31710886710952710a5803000000626967710b8a0600000000000158030000006e6567710c4ad4feffff58050000006f64696374710d63636f6c6c656374696f6e730a4f726465726564446963740a710e2952710f58010000006b71104b017358010000007371115802000000c3a971125805000000616761696e71136802752e",
	4: "8004958e000000000000007d94288c0161945d94284b014afeffffff47400c0000000000008c017894884e4b014b028694658c01629443020001948c03626967948a060000000000018c036e6567944ad4feffff8c056f64696374948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c016b944b01738c0173948c02c3a9948c05616761696e946802752e",
	5: "8005958e000000000000007d94288c0161945d94284b014afeffffff47400c0000000000008c017894884e4b014b028694658c01629443020001948c03626967948a060000000000018c036e6567944ad4feffff8c056f64696374948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c016b944b01738c0173948c02c3a9948c05616761696e946802752e",
}

func TestUnpicklePythonProtocols(t *testing.T) {
	for proto, h := range pythonPickles {
		data, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		v, err := unpickle(data, nil)
		if err != nil {
			t.Fatalf("protocol %d: %v", proto, err)
		}
		d, ok := v.(*pickle.Dict)
		if !ok {
			t.Fatalf("protocol %d: got %T, want a dict", proto, v)
		}
		get := func(k string) any {
			x, ok := d.Get(k)
			if !ok {
				t.Fatalf("protocol %d: no key %q", proto, k)
			}
			return x
		}
		a, ok := get("a").(*pickle.List)
		want := []any{int64(1), int64(-2), 3.5, "x", true, nil, pickle.Tuple{int64(1), int64(2)}}
		if !ok || !reflect.DeepEqual(a.Items, want) {
			t.Errorf("protocol %d: a = %#v, want %#v", proto, get("a"), want)
		}
		if again := get("again"); again != get("a") {
			t.Errorf("protocol %d: the memoised list is not shared", proto)
		}
		if got := get("big"); got != int64(1)<<40 {
			t.Errorf("protocol %d: big = %v", proto, got)
		}
		if got := get("neg"); got != int64(-300) {
			t.Errorf("protocol %d: neg = %v", proto, got)
		}
		if got := get("s"); got != "é" {
			t.Errorf("protocol %d: s = %q", proto, got)
		}
		if od, ok := get("odict").(*pickle.Dict); !ok || !reflect.DeepEqual(od.Keys, []any{"k"}) {
			t.Errorf("protocol %d: odict = %#v", proto, get("odict"))
		}
		if proto >= 3 {
			if got := get("b"); !bytes.Equal(got.([]byte), []byte{0, 1}) {
				t.Errorf("protocol %d: b = %v", proto, got)
			}
		}
		if !reflect.DeepEqual(d.Keys, []any{"a", "b", "big", "neg", "odict", "s", "again"}) {
			t.Errorf("protocol %d: keys %v", proto, d.Keys)
		}
	}
}

func TestUnpickleRejectsDamage(t *testing.T) {
	data, _ := hex.DecodeString(pythonPickles[2])
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", data[:len(data)/2], "truncated"},
		{"no STOP", data[:len(data)-1], "no STOP"},
		{"bad opcode", append(append([]byte(nil), data[:2]...), 0xff), "unsupported opcode"},
		{"empty", nil, "no STOP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := unpickle(tc.data, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// listing is what testdata/gen.py records about an archive's state dict as
// PyTorch loads it.
type listing map[string]struct {
	DType string   `json:"dtype"`
	Shape []int64  `json:"shape"`
	First *float64 `json:"first"`
}

func TestArchiveMatchesPyTorch(t *testing.T) {
	for _, tc := range []struct {
		file, listing string
		kind          Kind
	}{
		{"vit.pt", "vit_script.json", TorchScript},
		{"vit_sd.pt", "vit_sd.json", StateDict},
		{"rn.pt", "rn_script.json", TorchScript},
		{"attr.pt", "attr_script.json", TorchScript},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("../../testdata", tc.listing))
			if err != nil {
				t.Fatal(err)
			}
			var want listing
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			a, err := Open(filepath.Join("../../testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if a.Kind != tc.kind {
				t.Errorf("kind %v, want %v", a.Kind, tc.kind)
			}
			var wantNames []string
			for k := range want {
				wantNames = append(wantNames, k)
			}
			sort.Strings(wantNames)
			if got := a.Names(); !reflect.DeepEqual(got, wantNames) {
				t.Fatalf("names %v, want %v", got, wantNames)
			}
			for _, x := range a.Tensors {
				w := want[x.Name]
				if x.DType.String() != w.DType || !reflect.DeepEqual(append([]int64{}, x.Shape...), append([]int64{}, w.Shape...)) {
					t.Errorf("%s: %v %v, want %s %v", x.Name, x.DType, x.Shape, w.DType, w.Shape)
					continue
				}
				raw, err := a.ReadStorage(x)
				if err != nil {
					t.Fatal(err)
				}
				if got := firstElement(x, raw); w.First != nil && got != *w.First {
					t.Errorf("%s: first element %v, want %v", x.Name, got, *w.First)
				}
			}
		})
	}
}

func firstElement(x *Tensor, raw []byte) float64 {
	b := raw[x.Offset*int64(x.DType.Size()):]
	switch x.DType {
	case Float32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	case Float16:
		h := binary.LittleEndian.Uint16(b)
		sign := 1.0
		if h&0x8000 != 0 {
			sign = -1
		}
		e, f := int(h>>10&0x1f), float64(h&0x3ff)
		if e == 0 {
			return sign * f * math.Pow(2, -24)
		}
		return sign * (1 + f/1024) * math.Pow(2, float64(e-15))
	case Int64:
		return float64(int64(binary.LittleEndian.Uint64(b)))
	}
	return math.NaN()
}

func TestReadInt(t *testing.T) {
	a, err := Open("../../testdata/rn.pt")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for name, want := range map[string]int64{"input_resolution": 64, "context_length": 77, "vocab_size": 1024} {
		if got, err := a.ReadInt(name); err != nil || got != want {
			t.Errorf("ReadInt(%s) = %d, %v; want %d", name, got, err, want)
		}
	}
	if _, err := a.ReadInt("visual.proj"); err == nil {
		t.Error("ReadInt of a matrix succeeded")
	}
}

// rewrite copies a zip archive, letting edit change or drop (nil) records.
func rewrite(t *testing.T, src, dst string, edit func(name string, data []byte) []byte) {
	t.Helper()
	zr, err := zip.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if data = edit(f.Name, data); data == nil {
			continue
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejectsDamage(t *testing.T) {
	dir := t.TempDir()
	src := "../../testdata/vit_sd.pt"
	orig, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	key := a.Lookup("visual.proj").StorageKey
	a.Close()
	storage := "vit_sd/data/" + key

	path := func(name string) string { return filepath.Join(dir, name) }
	os.WriteFile(path("truncated.pt"), orig[:len(orig)-100], 0o644)
	os.WriteFile(path("garbage.pt"), []byte("not a zip"), 0o644)
	rewrite(t, src, path("nostorage.pt"), func(n string, d []byte) []byte {
		if n == storage {
			return nil
		}
		return d
	})
	rewrite(t, src, path("short.pt"), func(n string, d []byte) []byte {
		if n == storage {
			return d[:len(d)-2]
		}
		return d
	})
	rewrite(t, src, path("badpickle.pt"), func(n string, d []byte) []byte {
		if strings.HasSuffix(n, "data.pkl") {
			return d[:len(d)/3]
		}
		return d
	})
	rewrite(t, src, path("twopickles.pt"), func(n string, d []byte) []byte { return d })
	for _, tc := range []struct{ file, want string }{
		{"truncated.pt", "not a PyTorch zip archive"},
		{"garbage.pt", "not a PyTorch zip archive"},
		{"nostorage.pt", "is missing"},
		{"short.pt", "holds"},
		{"badpickle.pt", "data.pkl"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			a, err := Open(path(tc.file))
			if err == nil {
				a.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.file) {
				t.Errorf("err = %v, want one naming the file and mentioning %q", err, tc.want)
			}
		})
	}
	// A rewritten but intact copy still opens.
	if a, err := Open(path("twopickles.pt")); err != nil {
		t.Errorf("intact copy: %v", err)
	} else {
		a.Close()
	}

	// Damaged storage bytes fail the CRC check when read.
	zr, err := zip.OpenReader(src)
	if err != nil {
		t.Fatal(err)
	}
	var off int64
	for _, f := range zr.File {
		if f.Name == storage {
			off, _ = f.DataOffset()
		}
	}
	zr.Close()
	bad := append([]byte(nil), orig...)
	bad[off+3] ^= 1
	os.WriteFile(path("crc.pt"), bad, 0o644)
	a, err = Open(path("crc.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, err = a.ReadStorage(a.Lookup("visual.proj"))
	if err == nil || !strings.Contains(err.Error(), "checksum") || !strings.Contains(err.Error(), "visual.proj") {
		t.Errorf("err = %v, want a checksum error naming visual.proj", err)
	}
}

// An archive whose data.pkl references a class outside PyTorch's (here one
// that would run a shell command if Python unpickled it) is refused with an
// error naming the file and the class.
func TestOpenRefusesForeignClasses(t *testing.T) {
	// Python's pickle.dumps of an object whose __reduce__ returns
	// (os.system, ("echo this must never run",)), protocol 2.
	evil, err := hex.DecodeString("800263706f7369780a73797374656d0a710058180000006563686f2074686973206d757374206e657665722072756e71018571025271032e")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "evil.pt")
	rewrite(t, "../../testdata/vit_sd.pt", path, func(n string, d []byte) []byte {
		if strings.HasSuffix(n, "data.pkl") {
			return evil
		}
		return d
	})
	a, err := Open(path)
	if err == nil {
		a.Close()
		t.Fatal("Open succeeded")
	}
	if !strings.Contains(err.Error(), "evil.pt") || !strings.Contains(err.Error(), "class posix.system") {
		t.Errorf("err = %v, want one naming the file and the refused class", err)
	}
}
