package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/datasets"
)

func runArgs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	if strings.Contains(e.String(), "goroutine ") || strings.Contains(e.String(), "panic") {
		t.Errorf("%v: stderr has a panic trace:\n%s", args, e.String())
	}
	return code, o.String(), e.String()
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "usage: data <command>"},
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"fewshot", "-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"fewshot", "-dataset", "x", "-root", "y"}, "-shots is required"},
		{[]string{"fewshot", "-dataset", "x", "-root", "y", "-shots", "0"}, "-shots must be at least 1"},
		{[]string{"fewshot", "-dataset", "x", "-root", "y", "-shots", "two"}, "invalid value"},
		{[]string{"synth", "-classes", "3"}, "-out is required"},
		{[]string{"synth", "-out", "y", "-classes", "1000"}, "-classes must be 1..240, got 1000"},
		{[]string{"synth", "-out", "y", "-per-class", "0"}, "-per-class must be 1..100000, got 0"},
		{[]string{"check", "-dataset", "x"}, "-root is required"},
		{[]string{"check", "-dataset", "x", "-root", "y", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		code, _, stderr := runArgs(t, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tt.args, code, stderr, tt.want)
		}
	}
	if code, stdout, _ := runArgs(t, "help"); code != 0 || !strings.Contains(stdout, "fewshot") {
		t.Errorf("help: exit %d", code)
	}
	if code, _, stderr := runArgs(t, "synth", "-h"); code != 0 || !strings.Contains(stderr, "-per-class") {
		t.Errorf("synth -h: exit %d, stderr %q", code, stderr)
	}
}

func TestErrorsAreOneLine(t *testing.T) {
	root := t.TempDir()
	foreign := filepath.Join(root, "foreign")
	if err := os.MkdirAll(filepath.Join(foreign, "caltech-101"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "caltech-101", "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"fewshot", "-dataset", "cifar", "-root", root, "-shots", "1"},
		{"fewshot", "-dataset", "eurosat", "-root", root, "-shots", "1"},
		{"check", "-dataset", "dtd", "-root", filepath.Join(root, "missing")},
		{"synth", "-out", foreign}, // a non-empty caltech-101 folder synth did not write
	} {
		code, stdout, stderr := runArgs(t, args...)
		if prefix := "data " + args[0] + ": "; code != 1 || !strings.HasPrefix(stderr, prefix) || strings.Count(stderr, "\n") != 1 || stdout != "" ||
			strings.Contains(stderr, args[0]+": "+args[0]+":") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 1 and one line %q", args, code, stdout, stderr, prefix+"...")
		}
	}
}

type output struct {
	Train []map[string]any `json:"train"`
	Val   []map[string]any `json:"val"`
}

func TestSynthFewShotCheck(t *testing.T) {
	root := t.TempDir()
	code, stdout, stderr := runArgs(t, "synth", "-out", root, "-classes", "4", "-per-class", "10", "-seed", "5")
	if code != 0 || !strings.Contains(stdout, "wrote 40 images of 4 classes") {
		t.Fatalf("synth: exit %d, %q %q", code, stdout, stderr)
	}
	code, stdout, stderr = runArgs(t, "fewshot", "-dataset", "caltech101", "-root", root, "-shots", "2", "-seed", "3")
	if code != 0 {
		t.Fatalf("fewshot: exit %d, %s", code, stderr)
	}
	var got output
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("fewshot output is not the contract's JSON: %v\n%s", err, stdout)
	}
	d, err := datasets.Load("Caltech101", root)
	if err != nil {
		t.Fatal(err)
	}
	train, val, err := datasets.FewShot(d, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	compare := func(name string, got []map[string]any, want []datasets.Item) {
		if len(got) != len(want) {
			t.Fatalf("%s: %d items, want %d", name, len(got), len(want))
		}
		for i, w := range want {
			g := got[i]
			if len(g) != 3 || g["path"] != w.Path || g["label"] != float64(w.Label) || g["classname"] != w.ClassName {
				t.Errorf("%s[%d] = %v, want %+v", name, i, g, w)
			}
		}
	}
	compare("train", got.Train, train)
	compare("val", got.Val, val)
	if _, err := os.Stat(filepath.Join(root, "caltech-101", "split_fewshot", "shot_2-seed_3.json")); err != nil {
		t.Errorf("no cache written: %v", err)
	}

	code, stdout, stderr = runArgs(t, "check", "-dataset", "Caltech101", "-root", root, "-workers", "2")
	if code != 0 || !strings.Contains(stdout, "40 images") || !strings.Contains(stdout, "0 bad") || !strings.Contains(stderr, "40/40") {
		t.Errorf("check (clean): exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	broken := d.File(d.Test[0])
	if err := os.WriteFile(broken, []byte("not a jpeg"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := d.File(d.Val[0])
	os.Remove(missing)
	code, stdout, stderr = runArgs(t, "check", "-dataset", "Caltech101", "-root", root)
	if code != 1 || !strings.Contains(stdout, broken) || !strings.Contains(stdout, missing) ||
		!strings.Contains(stdout, "2 bad") || !strings.HasSuffix(stderr, "data check: Caltech101: 2 bad image(s)\n") {
		t.Errorf("check (2 bad): exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
