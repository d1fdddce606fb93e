package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/clipadapter/clipgo/internal/cli"
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

// TestBadMethodConfigFailsBeforeAnyCell: an unknown method name and a
// per-method key that the method rejects are reported, naming the cells,
// before the first cell runs (they used to fail only when their cell's turn
// came); nothing is written under sweep.out.
func TestBadMethodConfigFailsBeforeAnyCell(t *testing.T) {
	wd, _ := os.Getwd()
	if err := os.Chdir("../.."); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	base, err := os.ReadFile("configs/sweeps/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to string
		want           []string
	}{
		{"unknown method", `"tip-adapter-f"]`, `"tip-adapter-f", "tip-adaptr"]`, []string{`unknown method "tip-adaptr"`, "cells have a bad method configuration"}},
		{"bad per-method key", `set = ["method.alpha=0.8"`, `set = ["method.alfa=0.8"`, []string{"clip-adapter", `"method.alfa"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(base), tc.from) {
				t.Fatalf("configs/sweeps/demo.toml no longer contains %q", tc.from)
			}
			out := t.TempDir()
			file := filepath.Join(t.TempDir(), "sweep.toml")
			if err := os.WriteFile(file, []byte(strings.Replace(string(base), tc.from, tc.to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runCmd("-config", file, "-out", out, "-seeds", "1", "-shots", "1")
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
			if entries, _ := os.ReadDir(out); len(entries) != 0 {
				t.Errorf("cells ran before the check: %s holds %d entries", out, len(entries))
			}
		})
	}
}

// TestSignalExitStatus: a sweep stopped by SIGTERM exits with 143 and by
// Ctrl-C with 130 (it used to exit 130 for both), starting no new cell.
func TestSignalExitStatus(t *testing.T) {
	wd, _ := os.Getwd()
	if err := os.Chdir("../.."); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	for _, tc := range []struct {
		sig  os.Signal
		want int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		ch := make(chan os.Signal, 1)
		in := cli.FromSignals(ch, nil)
		ch <- tc.sig
		<-in.Context().Done()
		out := t.TempDir()
		var stdout, stderr bytes.Buffer
		code := runIn(in, []string{"-config", "configs/sweeps/demo.toml", "-out", out, "-seeds", "1", "-shots", "1"}, &stdout, &stderr)
		if code != tc.want || !strings.Contains(stdout.String(), "not started") {
			t.Errorf("%v: exit %d, want %d\nstdout %s\nstderr %s", tc.sig, code, tc.want, stdout.String(), stderr.String())
		}
		if m, _ := filepath.Glob(filepath.Join(out, "*", "result.json")); len(m) != 0 {
			t.Errorf("%v: cells ran: %v", tc.sig, m)
		}
	}
}
