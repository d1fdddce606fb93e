//go:build !linux

package datasets

import "testing"

// getdentsNames needs Linux's getdents64; elsewhere the order check is
// skipped.
func getdentsNames(t *testing.T, dir string) []string {
	t.Skip("the directory-order reference reads getdents64 (Linux only)")
	return nil
}
