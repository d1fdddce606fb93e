package torch

// #include <malloc.h>
import "C"

import "errors"

// RetainFreedMemory makes the C allocator (glibc's malloc, which libtorch
// uses for CPU tensors) keep the memory of freed tensors for reuse instead
// of handing it back to the operating system: large blocks are carved from
// the heap rather than mapped afresh (M_MMAP_MAX = 0) and the heap is never
// trimmed (M_TRIM_THRESHOLD = -1).
//
// Inference allocates and frees the same large activation tensors in every
// batch. By default each of them above 32 MiB is a fresh mapping, so every
// operation that writes one first takes a page fault per 4 KiB page; on
// virtual machines, where such faults are expensive, that can cost more
// than the arithmetic. With freed memory retained, later batches reuse
// pages that are already mapped. The price is that the resident memory
// stays at its high-water mark instead of shrinking between batches, and
// that high-water mark is higher than one batch needs: glibc reuses freed
// 64-byte-aligned blocks (libtorch's) only after several rounds, so a
// 48 MiB tensor allocated and dropped over and over levels off at about
// nine times its size (glibc 2.36; TestRetainFreedMemory logs it).
//
// It applies to the whole process and cannot be undone; call it before the
// tensor work starts.
func RetainFreedMemory() error {
	if C.mallopt(C.M_MMAP_MAX, 0) != 1 {
		return errors.New("mallopt(M_MMAP_MAX, 0) failed")
	}
	if C.mallopt(C.M_TRIM_THRESHOLD, -1) != 1 {
		return errors.New("mallopt(M_TRIM_THRESHOLD, -1) failed")
	}
	return nil
}

// TrimFreedMemory hands the C allocator's free memory back to the operating
// system (glibc's malloc_trim(0): the top of every heap and the whole free
// pages inside it). Memory checks call it before reading the process's
// anonymous memory, so that the reading reflects live C memory: without it,
// memory freed earlier in the process stays resident and new (or leaked)
// allocations reuse it without the reading moving.
func TrimFreedMemory() { C.malloc_trim(0) }
