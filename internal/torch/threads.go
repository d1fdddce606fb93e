package torch

// libtorch's intra-op thread count is set by at::set_num_threads, which
// gotch's C API declares but does not expose to Go. The C++ functions are
// exported by libtorch_cpu, which every gotch program loads, so they are
// looked up by their (stable, Itanium-mangled) names at run time; nothing
// extra is linked.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>

typedef void (*clipgo_set_fn)(int);
typedef int (*clipgo_get_fn)(void);

static int clipgo_set_num_threads(int n) {
	clipgo_set_fn f = (clipgo_set_fn)dlsym(RTLD_DEFAULT, "_ZN2at15set_num_threadsEi");
	if (f == NULL) return -1;
	f(n);
	return 0;
}

static int clipgo_get_num_threads(void) {
	clipgo_get_fn f = (clipgo_get_fn)dlsym(RTLD_DEFAULT, "_ZN2at15get_num_threadsEv");
	if (f == NULL) return -1;
	return f();
}
*/
import "C"

import (
	"errors"
	"fmt"
)

// errNoThreadControl reports a libtorch without at::set_num_threads.
var errNoThreadControl = errors.New("libtorch's at::set_num_threads/at::get_num_threads not found in the loaded libraries")

// SetNumThreads sets the number of threads libtorch uses inside one
// operation on the CPU (at::set_num_threads, what torch.set_num_threads
// does in Python). n must be positive. With libtorch's OpenMP backend (the
// PyPI wheels') the count is a setting of each OS thread: it applies to the
// calling thread and to threads that first run libtorch work after it, not
// to threads that already have (measured on 2.11: a thread that had read 2
// kept 2 after another thread set 1). Set it on the locked thread that then
// drives the model.
func SetNumThreads(n int) error {
	if n <= 0 {
		return fmt.Errorf("libtorch threads: %d, want a positive number", n)
	}
	if C.clipgo_set_num_threads(C.int(n)) != 0 {
		return errNoThreadControl
	}
	return nil
}

// NumThreads returns the number of threads libtorch uses inside one
// operation on the CPU (at::get_num_threads). By default libtorch uses one
// per physical core, or OMP_NUM_THREADS when that is set.
func NumThreads() (int, error) {
	n := int(C.clipgo_get_num_threads())
	if n < 0 {
		return 0, errNoThreadControl
	}
	return n, nil
}
