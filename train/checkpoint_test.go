package train

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestPreviousCheckpoint: SaveCheckpoint keeps the file it replaces as
// .prev, and writes the new one even when that copy cannot be made (here
// a non-empty directory stands where .prev goes); SaveSnapshot keeps no
// copy; ReadLoopState reads the stored state and info.
func TestPreviousCheckpoint(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	views := []*Features{blobs(40, 4, 8, 3)}
	defer views[0].Drop()
	l := newTestLoop(3, views)
	defer l.Method.Drop()
	defer l.Optimizer.Drop()
	dir := t.TempDir()
	var saveErr error
	save := func(name string, fn func(string, *Loop, any) error) func(*Loop, EpochInfo) error {
		return func(l *Loop, e EpochInfo) error {
			if err := fn(filepath.Join(dir, name), l, map[string]float64{"epoch_done": float64(e.Epoch + 1)}); err != nil && saveErr == nil {
				saveErr = err
			}
			return nil
		}
	}
	// blocked.ckpt.prev cannot be replaced by a link.
	blocked := filepath.Join(dir, "blocked.ckpt")
	if err := os.MkdirAll(filepath.Join(blocked+PrevSuffix, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	l.Hooks.Epoch = append(l.Hooks.Epoch,
		save("last.ckpt", SaveCheckpoint), save("blocked.ckpt", SaveCheckpoint), save("best.ckpt", SaveSnapshot))
	if err := l.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if saveErr != nil {
		t.Fatalf("a checkpoint failed: %v", saveErr)
	}
	for _, tc := range []struct {
		file      string
		wantEpoch int // 0: no such file
	}{
		{"last.ckpt", 3},
		{"last.ckpt" + PrevSuffix, 2},
		{"blocked.ckpt", 3},
		{"best.ckpt", 3},
		{"best.ckpt" + PrevSuffix, 0},
	} {
		st, err := ReadLoopState(filepath.Join(dir, tc.file))
		if tc.wantEpoch == 0 {
			if !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: err = %v, want no such file", tc.file, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		var info map[string]float64
		if err := json.Unmarshal(st.Info, &info); err != nil {
			t.Errorf("%s: info %s: %v", tc.file, st.Info, err)
		}
		if st.Epoch != tc.wantEpoch || info["epoch_done"] != float64(tc.wantEpoch) {
			t.Errorf("%s: epoch %d, info %v; want the checkpoint after epoch %d", tc.file, st.Epoch, info, tc.wantEpoch)
		}
	}
}
