package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestList(t *testing.T) {
	wd, _ := os.Getwd()
	if err := os.Chdir("../.."); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	out := t.TempDir()
	code, stdout, stderr := runCmd("-config", "configs/sweeps/demo.toml", "-out", out, "-list", "-methods", "coop,zeroshot", "-seeds", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	// Header, then coop and zero-shot x 4 shots x seed 2, renumbered.
	if len(lines) != 1+8 || lines[0] != "index\tmethod\tdataset\tshots\tseed\tepochs\tstatus\tdir" {
		t.Fatalf("-list printed:\n%s", stdout)
	}
	if want := "4\tcoop\tsynthetic\t1\t2\t5\ttodo\t" + filepath.Join(out, "synthetic_coop_random-tiny_1shot_seed2"); lines[5] != want {
		t.Errorf("line 5 = %q, want %q", lines[5], want)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "-config is required"},
		{[]string{"-config", "x.toml", "extra"}, 2, "unexpected arguments"},
		{[]string{"-config", "/nonexistent/sweep.toml"}, 1, "/nonexistent/sweep.toml"},
		{[]string{"-config", "../../configs/sweeps/demo.toml", "-submit"}, 2, "go with -slurm"},
		{[]string{"-config", "../../configs/sweeps/demo.toml", "-shots", "one"}, 2, `-shots: "one" is not a number`},
		{[]string{"-config", "../../configs/sweeps/demo.toml", "-set", "data.seed=4"}, 1, "data.seed is set by the sweep"},
	}
	for _, tt := range tests {
		code, _, stderr := runCmd(tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr, tt.code, tt.want)
		}
	}
}
