package torch

// OpenBLAS picks its kernels for the CPU model it recognises when it is
// loaded; a release older than the CPU does not recognise it and falls back
// to its oldest x86-64 kernels (SSE3, "Prescott"). Seen on this project's
// machines: Debian 12's OpenBLAS 0.3.21 on an Intel Xeon of family 6
// model 207 (with AVX-512) chose Prescott, and ViT-B/32 encoded 7.3
// images/s instead of 20.3 with OPENBLAS_CORETYPE=SkylakeX (libtorch 1.13,
// 2 threads, batch 32). The choice can only be changed before the library
// loads, by the environment, so the toolkit reports it and says what to set.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>

typedef char *(*clipgo_corename_fn)(void);

static const char *clipgo_openblas_corename(void) {
	clipgo_corename_fn f = (clipgo_corename_fn)dlsym(RTLD_DEFAULT, "openblas_get_corename");
	if (f == NULL) return NULL;
	return f();
}
*/
import "C"

import (
	"fmt"
	"strings"

	"golang.org/x/sys/cpu"
)

// BLASCore returns the name of the kernels OpenBLAS chose for this CPU
// (openblas_get_corename, e.g. "Haswell", "SkylakeX"), or "" when the
// loaded libraries hold no OpenBLAS (the PyPI wheels' libtorch uses MKL).
func BLASCore() string {
	p := C.clipgo_openblas_corename()
	if p == nil {
		return ""
	}
	return strings.TrimSpace(C.GoString(p))
}

// BLASWarning returns a one-line warning when OpenBLAS runs kernels older
// than the CPU supports (see blasAdvice), naming the OPENBLAS_CORETYPE to
// start the program with; "" when there is nothing to say.
func BLASWarning() string {
	return blasAdvice(BLASCore(), cpu.X86.HasAVX2 && cpu.X86.HasFMA, cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL)
}

// preAVX2Cores are OpenBLAS's x86-64 kernel sets without AVX2 and FMA:
// chosen on a CPU that has them, they leave most of its speed unused.
var preAVX2Cores = map[string]bool{
	"prescott": true, "core2": true, "penryn": true, "dunnington": true,
	"nehalem": true, "sandybridge": true, "atom": true, "nano": true,
	"opteron": true, "opteron(sse3)": true, "barcelona": true, "bobcat": true,
	"bulldozer": true, "piledriver": true, "steamroller": true,
	"excavator": true, "katmai": true, "coppermine": true, "northwood": true,
	"banias": true, "generic": true,
}

// blasAdvice is BLASWarning for a given kernel name and CPU: a warning when
// core is a pre-AVX2 kernel set and the CPU has AVX2 and FMA, recommending
// SkylakeX on a CPU with AVX-512 (F, BW, VL) and Haswell otherwise.
func blasAdvice(core string, avx2, avx512 bool) string {
	if core == "" || !avx2 || !preAVX2Cores[strings.ToLower(core)] {
		return ""
	}
	has, want := "AVX2", "Haswell"
	if avx512 {
		has, want = "AVX-512", "SkylakeX"
	}
	return fmt.Sprintf("OpenBLAS chose its %s kernels on a CPU with %s: matrix products on the CPU run several times slower than they can; start the program with OPENBLAS_CORETYPE=%s",
		core, has, want)
}
