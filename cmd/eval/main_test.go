package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipadapter/clipgo/datasets"
	"github.com/clipadapter/clipgo/internal/runtest"
	"github.com/clipadapter/clipgo/rundir"
)

func TestEvalCommand(t *testing.T) {
	dir, data := runtest.ZeroShot(t)
	ds, err := datasets.Load(datasets.SynthName, data)
	if err != nil {
		t.Fatal(err)
	}
	// An ImageNet-Sketch-like copy of two of the three classes.
	shift := t.TempDir()
	var cn strings.Builder
	for _, c := range ds.ClassNames[:2] {
		fmt.Fprintf(&cn, "%s %s\n", c, c)
		for i := range 2 {
			p := filepath.Join(shift, "imagenet-sketch", "images", c, fmt.Sprintf("%d.png", i))
			os.MkdirAll(filepath.Dir(p), 0o755)
			f, _ := os.Create(p)
			png.Encode(f, image.NewGray(image.Rect(0, 0, 16+i, 16)))
			f.Close()
		}
	}
	os.WriteFile(filepath.Join(shift, "imagenet-sketch", "classnames.txt"), []byte(cn.String()), 0o644)

	var stdout, stderr bytes.Buffer
	if code := run([]string{"-run", dir, "-dataset", "imagenet_sketch", "-root", shift}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "ImageNetSketch (2 classes, class names): top-1") {
		t.Errorf("stdout %q", stdout.String())
	}
	evals, err := rundir.ReadEvals(dir)
	if err != nil {
		t.Fatal(err)
	}
	if e := evals["imagenet_sketch"]; e.Test.N != 4 || e.Classes != 2 || e.Restricted {
		t.Errorf("eval/imagenet_sketch.json %+v", e)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-run", dir, "-root", shift}, 2, "required"},
		{[]string{"-run", dir, "-dataset", "imagenet_q", "-root", shift}, 2, `unknown dataset "imagenet_q"`},
		{[]string{"-run", dir, "-dataset", "imagenet_a", "-root", shift}, 1, "imagenet-adversarial"},
		{[]string{"-run", shift, "-dataset", "imagenet_sketch", "-root", shift}, 1, "not a finished run"},
	} {
		stdout.Reset()
		stderr.Reset()
		if code := run(tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %s; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}
