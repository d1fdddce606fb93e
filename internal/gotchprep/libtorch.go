// Package gotchprep adapts github.com/sugarme/gotch to the libtorch that is
// installed on this machine.
//
// gotch ships C++ wrappers generated for one libtorch release and cgo flags
// that assume a CUDA build in a fixed place. Prepare copies gotch out of the
// Go module cache into a project-local directory, writes cgo flags for the
// libtorch it finds, replaces every wrapper that does not compile against
// that libtorch with a stub that reports a clear error through gotch's normal
// error path, and writes a go.work that points the build at the copy. The
// module cache is never modified.
package gotchprep

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
)

// Libtorch describes one libtorch installation.
type Libtorch struct {
	// Root is the directory the installation was found in: LIBTORCH, a
	// PyTorch package's torch/ directory, or "/usr" for the system one.
	Root string
	// IncludeDirs are the directories passed to the C++ compiler with -I.
	IncludeDirs []string
	// LibDir holds libtorch.so, libc10.so and friends.
	LibDir string
	// Version is the version from torch/version.h, such as "1.13.0".
	Version string
	// Package is the distribution package version when the system libtorch
	// comes from a package manager (for example "1.13.1+dfsg-4"), else "".
	Package string
	// LinkDirs are extra folders the linker searches for the libraries that
	// libtorch's own libraries need (the nvidia-* wheels of a pip install).
	LinkDirs []string
	// CUDA reports whether libtorch_cuda is present.
	CUDA bool
	// CXXStd is the C++ standard its headers need: "c++17", or "c++20" for
	// releases whose ATen.h requires C++20 (2.15 does).
	CXXStd string
	// CXX11ABI reports whether the libraries use the C++11 std::string ABI.
	CXX11ABI bool
	// System reports whether this is the distribution's libtorch.
	System bool
}

// ErrNotFound is returned by Find when no libtorch is installed.
var ErrNotFound = errors.New("no libtorch found")

// Find locates libtorch. A non-empty dir (the LIBTORCH variable) must be an
// official libtorch distribution or a PyTorch installation's torch/ directory,
// that is, a directory with include/ and lib/. An empty dir means the
// system libtorch (Debian's libtorch-dev).
func Find(dir string) (*Libtorch, error) {
	if dir != "" {
		return findDir(dir)
	}
	return findSystem()
}

func findDir(dir string) (*Libtorch, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("libtorch %s: %w", dir, err)
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("LIBTORCH=%s: no such directory (point it at a libtorch distribution, a PyTorch installation's torch/ directory, or run scripts/fetch-libtorch.sh)", dir)
	}
	// A site-packages folder or the folder scripts/fetch-libtorch.sh writes
	// holds torch/: say so rather than "not a libtorch".
	if _, err := os.Stat(filepath.Join(abs, "torch", "lib", "libc10.so")); err == nil {
		return nil, fmt.Errorf("LIBTORCH=%s is the folder above libtorch: use LIBTORCH=%s", dir, filepath.Join(dir, "torch"))
	}
	if m, _ := filepath.Glob(filepath.Join(abs, "*.whl")); len(m) > 0 {
		return nil, fmt.Errorf("LIBTORCH=%s holds a wheel (%s), not an unpacked libtorch: run scripts/fetch-libtorch.sh, which unpacks one", dir, filepath.Base(m[0]))
	}
	inc := filepath.Join(abs, "include")
	lib := filepath.Join(abs, "lib")
	if m, _ := filepath.Glob(filepath.Join(lib, "*.dylib")); len(m) > 0 {
		return nil, fmt.Errorf("LIBTORCH=%s is a macOS libtorch (%s): this machine needs the Linux one", dir, filepath.Base(m[0]))
	}
	if m, _ := filepath.Glob(filepath.Join(lib, "*.dll")); len(m) > 0 {
		return nil, fmt.Errorf("LIBTORCH=%s is a Windows libtorch (%s): this machine needs the Linux one", dir, filepath.Base(m[0]))
	}
	for _, p := range []string{
		filepath.Join(inc, "torch", "csrc", "api", "include", "torch", "torch.h"),
		filepath.Join(lib, "libtorch_cpu.so"),
		filepath.Join(lib, "libc10.so"),
	} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("LIBTORCH=%s is not a libtorch directory, or only part of one: missing %s (expected an official libtorch distribution or a PyTorch installation's torch/ directory, with include/ and lib/; scripts/fetch-libtorch.sh fetches one)", dir, p)
		}
	}
	lt := &Libtorch{
		Root:        abs,
		IncludeDirs: []string{inc, filepath.Join(inc, "torch", "csrc", "api", "include")},
		LibDir:      lib,
	}
	if err := lt.inspect(); err != nil {
		return nil, fmt.Errorf("LIBTORCH=%s: %w", dir, err)
	}
	if lt.CUDA {
		lt.LinkDirs = pipCUDALibDirs(abs)
	}
	return lt, nil
}

// pipCUDALibDirs returns the library folders of the nvidia-* wheels installed
// beside a pip torch/ directory (site-packages/nvidia/*/lib and
// nvidia/cu13/lib). libtorch_cuda finds them at run time through its own
// $ORIGIN-relative RPATH; the linker is told them as well, so that linking
// does not depend on whether it expands $ORIGIN.
func pipCUDALibDirs(torchDir string) []string {
	var dirs []string
	for _, pattern := range []string{"*/lib", "*/*/lib"} {
		m, _ := filepath.Glob(filepath.Join(filepath.Dir(torchDir), "nvidia", pattern))
		for _, d := range m {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				dirs = append(dirs, d)
			}
		}
	}
	sort.Strings(dirs)
	return dirs
}

func findSystem() (*Libtorch, error) {
	api := "/usr/include/torch/csrc/api/include"
	if _, err := os.Stat(filepath.Join(api, "torch", "torch.h")); err != nil {
		return nil, fmt.Errorf("%w: %s/torch/torch.h is missing (install Debian's libtorch-dev, or set LIBTORCH to a libtorch directory)", ErrNotFound, api)
	}
	var libDir string
	for _, d := range systemLibDirs() {
		if _, err := os.Stat(filepath.Join(d, "libtorch.so")); err == nil {
			libDir = d
			break
		}
	}
	if libDir == "" {
		return nil, fmt.Errorf("%w: libtorch.so is not in %s (install libtorch-dev)", ErrNotFound, strings.Join(systemLibDirs(), ", "))
	}
	lt := &Libtorch{
		Root:        "/usr",
		IncludeDirs: []string{"/usr/include", api},
		LibDir:      libDir,
		System:      true,
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "libtorch-dev").Output(); err == nil {
		lt.Package = strings.TrimSpace(string(out))
	}
	if err := lt.inspect(); err != nil {
		return nil, err
	}
	// Debian's 1.13.1 ships a version.h that still says 1.13.0: trust the
	// package's upstream version when it agrees on major.minor.
	if up := upstreamVersion(lt.Package); up != "" && majorMinor(up) == majorMinor(lt.Version) {
		lt.Version = up
	}
	return lt, nil
}

// upstreamVersion returns the upstream part of a Debian version such as
// "1.13.1+dfsg-4" ("1.13.1").
func upstreamVersion(pkg string) string {
	if i := strings.IndexAny(pkg, ":"); i >= 0 {
		pkg = pkg[i+1:]
	}
	if i := strings.IndexAny(pkg, "+-~"); i >= 0 {
		pkg = pkg[:i]
	}
	return pkg
}

func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

func systemLibDirs() []string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "powerpc64le", "s390x": "s390x", "riscv64": "riscv64"}[runtime.GOARCH]
	return []string{
		"/usr/lib/" + arch + "-linux-gnu",
		"/usr/lib",
		"/usr/local/lib",
	}
}

// inspect fills in Version, CUDA and CXX11ABI.
func (lt *Libtorch) inspect() error {
	v, err := readVersion(lt.IncludeDirs)
	if err != nil {
		return err
	}
	lt.Version = v
	if _, err := os.Stat(filepath.Join(lt.LibDir, "libtorch_cuda.so")); err == nil {
		lt.CUDA = true
	}
	if lt.CUDA {
		for _, name := range []string{"libtorch.so", "libc10_cuda.so"} {
			if _, err := os.Stat(filepath.Join(lt.LibDir, name)); err != nil {
				return fmt.Errorf("libtorch_cuda.so is present but %s is missing: a partial copy of a CUDA libtorch", name)
			}
		}
	}
	lt.CXXStd = "c++17"
	for _, inc := range lt.IncludeDirs {
		if b, err := os.ReadFile(filepath.Join(inc, "ATen", "ATen.h")); err == nil {
			if strings.Contains(string(b), "C++20 or later") {
				lt.CXXStd = "c++20"
			}
			break
		}
	}
	abi, err := usesCXX11ABI(filepath.Join(lt.LibDir, "libc10.so"))
	if err != nil {
		return err
	}
	lt.CXX11ABI = abi
	return nil
}

var versionDefine = regexp.MustCompile(`#define\s+TORCH_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)`)

// readVersion reads TORCH_VERSION_MAJOR/MINOR/PATCH from torch/version.h
// (libtorch 1.x to 2.8) or torch/headeronly/version.h, which the former
// only includes from 2.9 on.
func readVersion(includeDirs []string) (string, error) {
	var seen []string
	for _, inc := range includeDirs {
		for _, rel := range []string{"torch/version.h", "torch/headeronly/version.h"} {
			p := filepath.Join(inc, rel)
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			seen = append(seen, p)
			parts := map[string]string{}
			for _, m := range versionDefine.FindAllStringSubmatch(string(b), -1) {
				parts[m[1]] = m[2]
			}
			if parts["MAJOR"] == "" || parts["MINOR"] == "" {
				continue
			}
			v := parts["MAJOR"] + "." + parts["MINOR"]
			if parts["PATCH"] != "" {
				v += "." + parts["PATCH"]
			}
			return v, nil
		}
	}
	if len(seen) > 0 {
		return "", fmt.Errorf("no TORCH_VERSION_MAJOR/MINOR in %s", strings.Join(seen, ", "))
	}
	return "", fmt.Errorf("torch/version.h not found in %s", strings.Join(includeDirs, ", "))
}

// usesCXX11ABI reports whether a shared library exports symbols of the C++11
// std::string ABI (names containing "__cxx11"). libc10 always exports
// functions taking std::string, so the answer is reliable for it. It also
// checks that the library is an ELF file for this machine's architecture.
func usesCXX11ABI(lib string) (bool, error) {
	f, err := elf.Open(lib)
	if err != nil {
		return false, fmt.Errorf("cannot read %s (truncated, half-extracted or not a Linux library?): %w", lib, err)
	}
	defer f.Close()
	if want, ok := elfMachines[runtime.GOARCH]; ok && f.Machine != want {
		return false, fmt.Errorf("%s is built for %s, this machine is %s: use a libtorch (or wheel) for %s", lib, f.Machine, runtime.GOARCH, runtime.GOARCH)
	}
	syms, err := f.DynamicSymbols()
	if err != nil {
		return false, fmt.Errorf("cannot read the symbols of %s (truncated or corrupt?): %w", lib, err)
	}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF && strings.Contains(s.Name, "__cxx11") {
			return true, nil
		}
	}
	return false, nil
}

var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
}

// Describe returns a short human description, such as
// "libtorch 1.13.0 (Debian libtorch-dev 1.13.1+dfsg-4) at /usr, CPU".
func (lt *Libtorch) Describe() string {
	s := "libtorch " + lt.Version
	if lt.Package != "" {
		s += " (Debian " + lt.Package + ")"
	}
	s += " at " + lt.Root
	if lt.CUDA {
		s += ", CUDA"
	} else {
		s += ", CPU"
	}
	return s
}

func (lt *Libtorch) cxxStd() string {
	if lt.CXXStd == "" {
		return "c++17"
	}
	return lt.CXXStd
}

// CgoFlags returns the body of the cgo preamble (the "#cgo" lines) that
// builds gotch's libtch package against this libtorch.
func (lt *Libtorch) CgoFlags() (string, error) {
	for _, p := range append(append(append([]string{}, lt.IncludeDirs...), lt.LibDir), lt.LinkDirs...) {
		if strings.ContainsAny(p, " \t\"'") {
			return "", fmt.Errorf("libtorch path %q contains a space or quote, which cgo flags cannot carry; move or link it to a plain path", p)
		}
	}
	abi := "0"
	if lt.CXX11ABI {
		abi = "1"
	}
	var b strings.Builder
	cpp := []string{"-I${SRCDIR}"}
	for _, inc := range lt.IncludeDirs {
		cpp = append(cpp, "-I"+inc)
	}
	cpp = append(cpp, "-D_GLIBCXX_USE_CXX11_ABI="+abi)
	fmt.Fprintf(&b, "// #cgo CPPFLAGS: %s\n", strings.Join(cpp, " "))
	b.WriteString("// #cgo CFLAGS: -O2 -w\n")
	fmt.Fprintf(&b, "// #cgo CXXFLAGS: -std=%s -O1 -w\n", lt.cxxStd())
	libs := []string{"-L" + lt.LibDir, "-Wl,-rpath," + lt.LibDir}
	for _, d := range lt.LinkDirs {
		libs = append(libs, "-Wl,-rpath-link,"+d)
	}
	// The CPU operators live in libtorch_cpu; libtorch.so only adds the
	// CUDA ones (and, in a pip wheel, needs libtorch_cuda), so it is linked
	// for CUDA alone. --no-as-needed keeps the CUDA libraries, which
	// register their operators when loaded, although no symbol of theirs is
	// referenced.
	libs = append(libs, "-Wl,--no-as-needed", "-ltorch_cpu", "-lc10")
	if lt.CUDA {
		libs = append(libs, "-ltorch", "-ltorch_cuda", "-lc10_cuda")
	}
	libs = append(libs, "-Wl,--as-needed", "-lstdc++")
	fmt.Fprintf(&b, "// #cgo LDFLAGS: %s\n", strings.Join(libs, " "))
	return b.String(), nil
}
