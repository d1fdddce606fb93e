package fsutil

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// entries lists the names in dir, sorted.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name string
		old  []byte // nil: no file before
		data []byte
		perm os.FileMode
	}{
		{"new file", nil, []byte("hello\n"), 0o644},
		{"private file", nil, []byte("secret"), 0o600},
		{"replace longer", []byte("a much longer old content\n"), []byte("short"), 0o644},
		{"empty", []byte("old"), []byte{}, 0o644},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.txt")
			if tc.old != nil {
				if err := os.WriteFile(path, tc.old, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(path, tc.data, tc.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tc.data) {
				t.Errorf("content %q, want %q", got, tc.data)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tc.perm {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tc.perm)
			}
			if names := entries(t, dir); !slices.Equal(names, []string{"out.txt"}) {
				t.Errorf("directory holds %q, want only out.txt", names)
			}
		})
	}
}

// TestCreateReplacesAtomically checks that the destination keeps its old
// content until Commit and is then replaced by a new file (a rename, not a
// rewrite in place: a handle opened before still reads the old bytes).
func TestCreateReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data.bin")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	f, err := Create(path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	for _, s := range []string{"new ", "content"} {
		if _, err := f.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("before Commit the destination holds %q, want %q", got, "old")
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new content" {
		t.Errorf("after Commit the destination holds %q, want %q", got, "new content")
	}
	buf := make([]byte, 16)
	n, _ := before.Read(buf)
	if string(buf[:n]) != "old" {
		t.Errorf("handle opened before Commit reads %q, want %q", buf[:n], "old")
	}
	if names := entries(t, dir); !slices.Equal(names, []string{"data.bin"}) {
		t.Errorf("directory holds %q, want only data.bin", names)
	}
	f.Abort() // no effect after Commit
	if got, _ := os.ReadFile(path); string(got) != "new content" {
		t.Errorf("Abort after Commit changed the file to %q", got)
	}
	if err := f.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
}

func TestAbort(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keep.txt")
	if err := os.WriteFile(path, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("discard")); err != nil {
		t.Fatal(err)
	}
	f.Abort()
	if got, _ := os.ReadFile(path); string(got) != "keep" {
		t.Errorf("after Abort the destination holds %q, want %q", got, "keep")
	}
	if names := entries(t, dir); !slices.Equal(names, []string{"keep.txt"}) {
		t.Errorf("directory holds %q, want only keep.txt", names)
	}
	if err := f.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
}

func TestWriteFileErrors(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "no", "such", "file")
		err := WriteFile(path, []byte("x"), 0o644)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("error %v, want one naming %s", err, path)
		}
	})
	t.Run("rename fails", func(t *testing.T) {
		// The destination is a non-empty directory, so the final rename
		// fails; the temporary file must be removed and the directory kept.
		dir := t.TempDir()
		path := filepath.Join(dir, "target")
		if err := os.MkdirAll(filepath.Join(path, "child"), 0o755); err != nil {
			t.Fatal(err)
		}
		err := WriteFile(path, []byte("x"), 0o644)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("error %v, want one naming %s", err, path)
		}
		if names := entries(t, dir); !slices.Equal(names, []string{"target"}) {
			t.Errorf("directory holds %q after a failed write, want only target", names)
		}
		if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
			t.Errorf("destination changed: %v %v", fi, err)
		}
	})
}
