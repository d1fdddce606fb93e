package torch

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestBLASCore checks BLASCore against OpenBLAS's own report: the test
// binary runs itself with OPENBLAS_VERBOSE=2, under which OpenBLAS prints
// "Core: NAME" when it loads, and the child's BLASCore must name the same
// kernels (no line and "" without OpenBLAS, as with the PyPI libtorch). A
// second child forces OPENBLAS_CORETYPE=Haswell, which BLASCore must then
// report.
func TestBLASCore(t *testing.T) {
	if os.Getenv("CLIPGO_BLAS_CHILD") == "1" {
		os.Stdout.WriteString("BLASCore=" + BLASCore() + "\n")
		return
	}
	line := regexp.MustCompile(`(?m)^Core: (\S+)`)
	for _, coretype := range []string{"", "Haswell"} { // "": unset
		cmd := exec.Command(os.Args[0], "-test.run=^TestBLASCore$")
		// Unset, not empty: OpenBLAS 0.3.21 detects differently when the
		// variable is set to a name it does not know (empty included).
		env := []string{"CLIPGO_BLAS_CHILD=1", "OPENBLAS_VERBOSE=2"}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "OPENBLAS_CORETYPE=") {
				env = append(env, kv)
			}
		}
		if coretype != "" {
			env = append(env, "OPENBLAS_CORETYPE="+coretype)
		}
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		got := regexp.MustCompile(`(?m)^BLASCore=(.*)$`).FindStringSubmatch(string(out))
		if got == nil {
			t.Fatalf("child printed no BLASCore line:\n%s", out)
		}
		want := ""
		if m := line.FindStringSubmatch(string(out)); m != nil {
			want = m[1]
		}
		t.Logf("OPENBLAS_CORETYPE=%q: OpenBLAS says %q, BLASCore %q", coretype, want, got[1])
		if !strings.EqualFold(got[1], want) {
			t.Errorf("OPENBLAS_CORETYPE=%q: BLASCore() = %q, OpenBLAS printed Core: %q", coretype, got[1], want)
		}
		if coretype != "" && want != "" && !strings.EqualFold(want, coretype) {
			t.Errorf("OPENBLAS_CORETYPE=%s ignored: OpenBLAS chose %s", coretype, want)
		}
	}
}

// TestBLASAdvice checks when a warning is given and what it recommends.
func TestBLASAdvice(t *testing.T) {
	for _, tc := range []struct {
		core         string
		avx2, avx512 bool
		want         string // "" for no warning, else the OPENBLAS_CORETYPE advised
	}{
		{"Prescott", true, true, "SkylakeX"},
		{"Prescott", true, false, "Haswell"},
		{"Sandybridge", true, false, "Haswell"},
		{"CORE2", true, true, "SkylakeX"},
		{"Prescott", false, false, ""}, // an old CPU: its kernels are right
		{"Haswell", true, true, ""},    // AVX2 kernels on an AVX-512 CPU: slower, not several times
		{"SkylakeX", true, true, ""},
		{"Zen", true, false, ""},
		{"", true, true, ""}, // no OpenBLAS
	} {
		got := blasAdvice(tc.core, tc.avx2, tc.avx512)
		if tc.want == "" {
			if got != "" {
				t.Errorf("blasAdvice(%q, %v, %v) = %q, want no warning", tc.core, tc.avx2, tc.avx512, got)
			}
			continue
		}
		if !strings.HasSuffix(got, "OPENBLAS_CORETYPE="+tc.want) || !strings.Contains(got, tc.core+" kernels") {
			t.Errorf("blasAdvice(%q, %v, %v) = %q, want the %s kernels named and OPENBLAS_CORETYPE=%s", tc.core, tc.avx2, tc.avx512, got, tc.core, tc.want)
		}
	}
}
