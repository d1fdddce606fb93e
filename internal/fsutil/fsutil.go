// Package fsutil writes files atomically: the bytes go to a temporary file
// in the destination's directory, which is flushed to disk and then renamed
// over the destination. Readers see either the old file or the complete new
// one, never a partial write, and a failed write leaves no temporary file
// behind.
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile writes data to path atomically and gives the file the
// permission bits perm (not subject to the umask). The directory of path
// must exist.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// AtomicFile is a file being written in place of another. Write to it, then
// call Commit to replace the destination, or Abort to discard what was
// written. Calling Abort after Commit does nothing, so
//
//	f, err := fsutil.Create(path, 0o644)
//	if err != nil { ... }
//	defer f.Abort()
//	... write ...
//	return f.Commit()
//
// cleans up on every path.
type AtomicFile struct {
	f    *os.File
	path string
	perm os.FileMode
	done bool
}

// Create starts an atomic write of path; the file gets the permission bits
// perm when committed. The directory of path must exist.
func Create(path string, perm os.FileMode) (*AtomicFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &AtomicFile{f: f, path: path, perm: perm}, nil
}

// Write writes p to the temporary file. Errors name the destination.
func (a *AtomicFile) Write(p []byte) (int, error) {
	n, err := a.f.Write(p)
	if err != nil {
		err = fmt.Errorf("write %s: %w", a.path, err)
	}
	return n, err
}

// Commit flushes the temporary file to disk, sets its permissions and
// renames it over the destination. On failure the temporary file is
// removed and the destination is left as it was.
func (a *AtomicFile) Commit() error {
	if a.done {
		return fmt.Errorf("write %s: already committed or aborted", a.path)
	}
	a.done = true
	tmp := a.f.Name()
	err := a.f.Sync()
	if err == nil {
		err = a.f.Chmod(a.perm)
	}
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, a.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", a.path, err)
	}
	return nil
}

// Abort discards the temporary file, leaving the destination as it was.
// It does nothing after Commit or a previous Abort.
func (a *AtomicFile) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.f.Close()
	os.Remove(a.f.Name())
}
