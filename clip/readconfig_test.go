package clip

import (
	"reflect"
	"strings"
	"testing"
)

// TestReadConfig checks that ReadConfig infers the fixtures' architectures
// (the configs gen.py built them with) without loading their weights, and
// that it reports what Load reports for files that are not CLIP models.
func TestReadConfig(t *testing.T) {
	for _, tc := range []struct {
		path string
		want Config
	}{
		{"testdata/vit.pt", vitConfig},
		{"testdata/rn.pt", rnConfig},
		{"testdata/vit_sd.pt", vitConfig},
	} {
		got, err := ReadConfig(tc.path)
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: config %+v, want %+v", tc.path, got, tc.want)
		}
	}
	for _, tc := range []struct{ path, want string }{
		{"testdata/notclip.pt", "not a CLIP state dict"},
		{"testdata/nope.pt", "no such file"},
	} {
		if _, err := ReadConfig(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: err = %v, want one naming the file and saying %q", tc.path, err, tc.want)
		}
	}
}
