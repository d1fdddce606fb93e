package pickle

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"strings"
	"testing"
)

// describe turns a decoded value into the tagged tree testdata/gen.py
// builds from the Python value.
func describe(v any) any {
	switch v := v.(type) {
	case nil:
		return []any{"none"}
	case bool:
		return []any{"bool", v}
	case int64:
		return []any{"int", fmt.Sprint(v)}
	case *big.Int:
		return []any{"int", v.String()}
	case float64:
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], math.Float64bits(v))
		return []any{"float", hex.EncodeToString(b[:])}
	case string:
		return []any{"str", v}
	case []byte:
		return []any{"bytes", hex.EncodeToString(v)}
	case *List:
		out := []any{"list"}
		for _, x := range v.Items {
			out = append(out, describe(x))
		}
		return out
	case Tuple:
		out := []any{"tuple"}
		for _, x := range v {
			out = append(out, describe(x))
		}
		return out
	case *Dict:
		out := []any{"dict"}
		for i, k := range v.Keys {
			out = append(out, []any{describe(k), describe(v.Values[i])})
		}
		return out
	case *Set:
		tag := "set"
		if v.Frozen {
			tag = "frozenset"
		}
		out := []any{tag}
		for _, x := range v.Items {
			out = append(out, describe(x))
		}
		return out
	case *Object:
		return []any{"obj", v.Class.String(), describe(v.State)}
	}
	return []any{"unexpected", fmt.Sprintf("%T", v)}
}

func canon(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// datum allows the stand-in Dassl class the object fixtures use.
var datum = Options{Allow: func(g Global) bool {
	return g == Global{"dassl.data.datasets.base_dataset", "Datum"}
}}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestPythonPickles decodes what CPython wrote with every protocol and
// compares it with CPython's own description of the value.
func TestPythonPickles(t *testing.T) {
	var exp struct {
		Files map[string]any `json:"files"`
	}
	if err := json.Unmarshal(readFixture(t, "expected.json"), &exp); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for p := 0; p <= 5; p++ {
		files[fmt.Sprintf("values_p%d.pkl", p)] = fmt.Sprintf("values_p%d.pkl", p)
	}
	for _, p := range []int{0, 2, 4, 5} {
		files[fmt.Sprintf("objects_p%d.pkl", p)] = "objects"
	}
	for file, key := range files {
		t.Run(file, func(t *testing.T) {
			v, err := datum.Decode(readFixture(t, file))
			if err != nil {
				t.Fatal(err)
			}
			want, ok := exp.Files[key]
			if !ok {
				t.Fatalf("no expectation %q", key)
			}
			if got, want := canon(t, describe(v)), canon(t, want); got != want {
				t.Errorf("decoded value differs from Python's\n got: %.400s\nwant: %.400s", got, want)
			}
		})
	}
}

// Memoized objects are shared, not copied: the same Python object decodes
// to the same Go pointer.
func TestSharedReferences(t *testing.T) {
	for _, file := range []string{"values_p0.pkl", "values_p2.pkl", "values_p4.pkl"} {
		v, err := Decode(readFixture(t, file))
		if err != nil {
			t.Fatal(err)
		}
		sh, _ := v.(*Dict).Get("shared")
		items := sh.(*List).Items
		if items[0].(*List) != items[1].(*List) {
			t.Errorf("%s: shared list decoded as two copies", file)
		}
	}
	for _, file := range []string{"objects_p0.pkl", "objects_p4.pkl"} {
		v, err := datum.Decode(readFixture(t, file))
		if err != nil {
			t.Fatal(err)
		}
		val, _ := v.(*Dict).Get("val")
		again, _ := v.(*Dict).Get("again")
		items := val.(*List).Items
		if items[len(items)-1].(*Object) != again.(*Object) {
			t.Errorf(`%s: "again" is not the last val object`, file)
		}
		o := again.(*Object)
		if o.Class != (Global{"dassl.data.datasets.base_dataset", "Datum"}) {
			t.Errorf("%s: class = %v", file, o.Class)
		}
		if p, ok := o.Attr("_impath"); !ok || p != "/h/caltech-101/101_ObjectCategories/c5/89.jpg" {
			t.Errorf("%s: _impath = %v, %v", file, p, ok)
		}
		if l, ok := o.Attr("_label"); !ok || l != int64(5) {
			t.Errorf("%s: _label = %v, %v", file, l, ok)
		}
	}
}

// TestRefusesClasses: a class the caller does not allow is an error that
// names it, whichever way the pickle spells the reference; nothing runs.
func TestRefusesClasses(t *testing.T) {
	for _, tc := range []struct {
		file, class string
		opts        Options
	}{
		{"evil_p2.pkl", "posix.system", Options{}},
		{"evil_p2.pkl", "posix.system", datum},
		{"evil_p4.pkl", "builtins.eval", datum},
		{"objects_p4.pkl", "dassl.data.datasets.base_dataset.Datum", Options{}},
		{"objects_p0.pkl", "dassl.data.datasets.base_dataset.Datum", Options{}},
	} {
		_, err := tc.opts.Decode(readFixture(t, tc.file))
		var pe *Error
		if !errors.Is(err, ErrRefused) || !errors.As(err, &pe) || !strings.Contains(err.Error(), "class "+tc.class) {
			t.Errorf("%s: err = %v, want a *pickle.Error refusing class %s", tc.file, err, tc.class)
		}
	}
	// Allowing the class only makes an inert record of the call.
	v, err := Options{Allow: func(Global) bool { return true }}.Decode(readFixture(t, "evil_p2.pkl"))
	if err != nil {
		t.Fatal(err)
	}
	o, ok := v.(*Object)
	if !ok || o.Class != (Global{"posix", "system"}) || len(o.Args) != 1 || o.Args[0] != "echo this must never run" {
		t.Errorf("allowed call decoded as %#v", v)
	}
}

// TestDamagedFiles cuts and corrupts the fixtures: every result must be a
// value or an *Error, never a panic, and every cut must be an error. (Step
// keeps the larger files quick: every step-th cut and byte.)
func TestDamagedFiles(t *testing.T) {
	for _, tc := range []struct {
		file string
		step int
	}{{"objects_p0.pkl", 5}, {"objects_p2.pkl", 5}, {"objects_p4.pkl", 2}, {"values_p1.pkl", 1}, {"values_p5.pkl", 1}} {
		data := readFixture(t, tc.file)
		for n := 0; n < len(data); n += tc.step {
			_, err := datum.Decode(data[:n])
			var pe *Error
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), "truncated") {
				t.Fatalf("%s cut to %d bytes: err = %v, want a *pickle.Error about truncated data", tc.file, n, err)
			}
		}
		for i := 0; i < len(data); i += tc.step {
			for _, flip := range []byte{0x01, 0xff} {
				bad := append([]byte(nil), data...)
				bad[i] ^= flip
				if _, err := datum.Decode(bad); err != nil {
					var pe *Error
					if !errors.As(err, &pe) {
						t.Fatalf("%s with byte %d ^ %#x: err = %v (%T), want a *pickle.Error", tc.file, i, flip, err, err)
					}
				}
			}
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"empty", "", "at byte 0: truncated data: no STOP"},
		{"no stop", "\x80\x04K\x01", "at byte 4: truncated data: no STOP"},
		{"truncated string", "\x80\x04\x8c\x05ab", "at byte 2: truncated data: SHORT_BINUNICODE needs 5 bytes, 2 left"},
		{"huge length", "\x80\x04\x8d\xff\xff\xff\xff\xff\x7f\x00\x00.", "truncated data: BINUNICODE8 needs"},
		{"huge frame", "\x80\x04\x95\x00\x00\x00\x00\x00\x10\x00\x00N.", "truncated data: FRAME needs"},
		{"no newline", "\x80\x02cmod\nname", "at byte 2: truncated data: GLOBAL has no end of line"},
		{"unknown opcode", "\x80\x04\xff.", "at byte 2: unsupported opcode 0xff"},
		{"unknown opcode 0x99", "\x80\x04\x99.", "unsupported opcode 0x99"},
		{"persistent id", "\x80\x04K\x01Q.", "persistent ID"},
		{"protocol 6", "\x80\x06N.", "unsupported pickle protocol 6"},
		{"underflow", "\x80\x04.", "stack is empty"},
		{"bad memo", "\x80\x04h\x07.", "at byte 2: BINGET: memo key 7 not defined"},
		{"bad text memo", "(g3\n.", "GET: memo key 3 not defined"},
		{"append to int", "\x80\x04K\x01K\x02a.", "APPEND"},
		{"setitem on list", "\x80\x04]K\x01K\x02s.", "SETITEM"},
		{"odd dict", "(K\x01d.", "malformed data"},
		{"empty LONG1", "\x80\x02\x8a\x00.", "malformed data"},
		{"unhashable set item", "\x80\x04\x8f(C\x01x\x90.", "malformed data"},
		{"bad escape", "V\\u12\n.", "UNICODE: truncated \\u escape"},
		{"unicode in frame", "\x80\x04\x95\x04\x00\x00\x00\x00\x00\x00\x00Vx\n.", "UNICODE opcode in a framed pickle"},
		{"codecs encode", "\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00utf8\x86R.", "only latin1"},
	}
	for _, tt := range tests {
		_, err := Decode([]byte(tt.data))
		var pe *Error
		if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want a *pickle.Error containing %q", tt.name, err, tt.want)
		}
	}
}

// Hand-assembled opcodes that CPython's pickler does not produce for the
// fixtures but that the decoder accepts.
func TestHandAssembled(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"LONG4 negative", "\x80\x02\x8b\x01\x00\x00\x00\xff.", `["int","-1"]`},
		{"LONG1 that fits int64", "\x80\x02\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xff.", `["int","-1"]`},
		{"BININT negative", "\x80\x02J\xfe\xff\xff\xff.", `["int","-2"]`},
		{"GLOBAL", "c__builtin__\nobject\n.", `["unexpected","pickle.Global"]`},
		{"DUP and TUPLE2", "K\x05\x32\x86.", `["tuple",["int","5"],["int","5"]]`},
		{"POP_MARK", "K\x01(K\x02K\x031.", `["int","1"]`},
		{"raw unicode escape", "V\\u00e9x\xe9\\U0001f600\n.", `["str","éxé😀"]`},
		{"two UNICODE strings and a memo", "(V\\u00e9\np0\nVa\\u005cb\ng0\nt.", `["tuple",["str","é"],["str","a\\b"],["str","é"]]`},
		{"bytes before protocol 3", "\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00\xc3\xbf\x01X\x06\x00\x00\x00latin1\x86R.", `["bytes","ff01"]`},
		{"trailing data ignored", "K\x07.junk", `["int","7"]`},
		{"BUILD merges dicts", "\x80\x02c__main__\nC\n)\x81}X\x01\x00\x00\x00aK\x01sb}X\x01\x00\x00\x00bK\x02sb.",
			`["obj","__main__.C",["dict",[["str","a"],["int","1"]],[["str","b"],["int","2"]]]]`},
		{"BUILD replaces a non-dict state", "\x80\x02c__main__\nC\n)\x81K\x01bK\x02b.", `["obj","__main__.C",["int","2"]]`},
	}
	all := Options{Allow: func(Global) bool { return true }}
	for _, tt := range tests {
		v, err := all.Decode([]byte(tt.data))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := canon(t, describe(v)); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestOptions checks the hooks on hand-assembled pickles: persistent ids
// in both spellings, REDUCE calls handled or left to the default, and hook
// errors wrapped in an *Error.
func TestOptions(t *testing.T) {
	hookErr := errors.New("hook failed")
	var pids []any
	opts := Options{
		Allow: func(g Global) bool { return g.Module == "m" },
		PersistentLoad: func(pid any) (any, error) {
			pids = append(pids, pid)
			if pid == "bad" {
				return nil, hookErr
			}
			return fmt.Sprintf("loaded %v", pid), nil
		},
		Reduce: func(fn Global, args Tuple) (any, bool, error) {
			switch fn.String() {
			case "m.twice":
				return Tuple{args[0], args[0]}, true, nil
			case "m.fail":
				return nil, false, hookErr
			}
			return nil, false, nil
		},
	}
	tests := []struct {
		name string
		data string
		want string
		pids []any
	}{
		{"BINPERSID", "\x80\x02X\x03\x00\x00\x00abcQ.", `["str","loaded abc"]`, []any{"abc"}},
		{"BINPERSID tuple", "\x80\x02K\x01K\x02\x86Q.", `["str","loaded [1 2]"]`, []any{Tuple{int64(1), int64(2)}}},
		{"PERSID", "Pxyz\n.", `["str","loaded xyz"]`, []any{"xyz"}},
		{"REDUCE handled", "\x80\x02cm\ntwice\nK\x07\x85R.", `["tuple",["int","7"],["int","7"]]`, nil},
		{"REDUCE default", "\x80\x02cm\nother\nK\x07\x85R.", `["obj","m.other",["none"]]`, nil},
		{"STACK_GLOBAL", "\x80\x04\x8c\x01m\x8c\x05twice\x93K\x07\x85R.", `["tuple",["int","7"],["int","7"]]`, nil},
	}
	for _, tt := range tests {
		pids = nil
		v, err := opts.Decode([]byte(tt.data))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := canon(t, describe(v)); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
		if fmt.Sprint(pids) != fmt.Sprint(tt.pids) {
			t.Errorf("%s: loader saw %v, want %v", tt.name, pids, tt.pids)
		}
	}

	for _, tt := range []struct{ name, data, want string }{
		{"loader error", "\x80\x02X\x03\x00\x00\x00badQ.", "persistent id: hook failed"},
		{"reduce error", "\x80\x02cm\nfail\n)R.", "REDUCE m.fail: hook failed"},
	} {
		_, err := opts.Decode([]byte(tt.data))
		var pe *Error
		if !errors.Is(err, hookErr) || !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want a *pickle.Error wrapping the hook's error and containing %q", tt.name, err, tt.want)
		}
	}
}

// FuzzDecode: arbitrary input decodes or fails with an *Error; it never
// panics or allocates more than the input's size per value.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"values_p0.pkl", "values_p2.pkl", "values_p5.pkl", "objects_p0.pkl", "objects_p4.pkl", "evil_p4.pkl"} {
		f.Add(readFixture(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := datum.Decode(data); err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v (%T), want a *pickle.Error", err, err)
			}
		}
	})
}
