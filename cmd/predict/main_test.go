package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/clipadapter/clipgo/internal/cli"
	"github.com/clipadapter/clipgo/internal/runtest"
)

func writePNG(t *testing.T, path string, c color.RGBA) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 20, 24))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, 255
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

func TestPredictCommand(t *testing.T) {
	dir, _ := runtest.ZeroShot(t)
	imgs := t.TempDir()
	writePNG(t, filepath.Join(imgs, "a", "red.png"), color.RGBA{R: 220})
	writePNG(t, filepath.Join(imgs, "b", "c", "blue.PNG"), color.RGBA{B: 220})
	os.WriteFile(filepath.Join(imgs, "a", "notes.txt"), []byte("skipped: not an image extension"), 0o644)
	broken := filepath.Join(imgs, "b", "broken.jpg")
	os.WriteFile(broken, []byte("not a jpeg"), 0o644)
	single := filepath.Join(t.TempDir(), "one.png")
	writePNG(t, single, color.RGBA{G: 200})

	t.Run("jsonl file with a bad image", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "preds.jsonl")
		var stdout, stderr bytes.Buffer
		code := run([]string{"-run", dir, "-top", "2", "-out", out, "-batch", "2", imgs, single}, &stdout, &stderr)
		if code != 1 {
			t.Fatalf("exit %d, want 1 (a bad image); stderr:\n%s", code, stderr.String())
		}
		if !strings.Contains(stderr.String(), broken) || !strings.Contains(stderr.String(), "1 of 4 images could not be read") {
			t.Errorf("stderr does not report %s:\n%s", broken, stderr.String())
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		want := []string{filepath.Join(imgs, "a", "red.png"), filepath.Join(imgs, "b", "c", "blue.PNG"), single}
		if len(lines) != len(want) {
			t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), b)
		}
		for i, l := range lines {
			var rec struct {
				Path    string    `json:"path"`
				Labels  []string  `json:"labels"`
				Probs   []float64 `json:"probs"`
				Classes []int     `json:"classes"`
			}
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatalf("line %d: %v", i, err)
			}
			if rec.Path != want[i] || len(rec.Labels) != 2 || len(rec.Probs) != 2 || rec.Probs[0] < rec.Probs[1] || rec.Probs[0] > 1 {
				t.Errorf("line %d: %+v", i, rec)
			}
		}
		if stdout.Len() != 0 {
			t.Errorf("stdout not empty with -out: %q", stdout.String())
		}
	})
	t.Run("csv", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "preds.csv")
		var stdout, stderr bytes.Buffer
		if code := run([]string{"-run", dir, "-top", "3", "-out", out, single}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		f, _ := os.Open(out)
		defer f.Close()
		rows, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 4 || strings.Join(rows[0], ",") != "path,rank,class,label,prob" || rows[3][1] != "3" {
			t.Errorf("csv rows %q", rows)
		}
	})
	t.Run("stdout", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"-run", dir, single}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		if n := strings.Count(stdout.String(), "\n"); n != 1 || !strings.Contains(stdout.String(), `"labels":[`) {
			t.Errorf("stdout %q", stdout.String())
		}
	})
	t.Run("usage and bad run", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run([]string{single}, &stdout, &stderr); code != 2 {
			t.Errorf("no -run: exit %d, want 2", code)
		}
		stderr.Reset()
		if code := run([]string{"-run", imgs, single}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "model.ckpt") {
			t.Errorf("not a run: exit %d, stderr %s", code, stderr.String())
		}
		out := filepath.Join(t.TempDir(), "x.jsonl")
		if code := run([]string{"-run", imgs, "-out", out, single}, &stdout, &stderr); code != 1 {
			t.Errorf("exit %d", code)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s written by a failed run", out)
		}
	})
	t.Run("interrupted after the output file is open", func(t *testing.T) {
		// A SIGINT already received: the run loads, opens its output,
		// stops before the first batch, and leaves no output file.
		ch := make(chan os.Signal, 1)
		ch <- syscall.SIGINT
		in := cli.FromSignals(ch, nil)
		<-in.Context().Done()
		out := filepath.Join(t.TempDir(), "x.jsonl")
		var stdout, stderr bytes.Buffer
		if code := runIn(in, []string{"-run", dir, "-out", out, imgs}, &stdout, &stderr); code != 130 {
			t.Errorf("exit %d, want 130; stderr %s", code, stderr.String())
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s written by an interrupted run", out)
		}
	})
}
