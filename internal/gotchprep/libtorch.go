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
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
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
	// CUDA reports whether libtorch_cuda is present.
	CUDA bool
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
	inc := filepath.Join(abs, "include")
	lib := filepath.Join(abs, "lib")
	for _, p := range []string{
		filepath.Join(inc, "torch", "csrc", "api", "include", "torch", "torch.h"),
		filepath.Join(lib, "libtorch.so"),
		filepath.Join(lib, "libc10.so"),
	} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("LIBTORCH=%s is not a libtorch directory: missing %s (expected an official libtorch distribution or a PyTorch installation's torch/ directory, with include/ and lib/)", dir, p)
		}
	}
	lt := &Libtorch{
		Root:        abs,
		IncludeDirs: []string{inc, filepath.Join(inc, "torch", "csrc", "api", "include")},
		LibDir:      lib,
	}
	return lt, lt.inspect()
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
	abi, err := usesCXX11ABI(filepath.Join(lt.LibDir, "libc10.so"))
	if err != nil {
		return err
	}
	lt.CXX11ABI = abi
	return nil
}

var versionDefine = regexp.MustCompile(`#define\s+TORCH_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)`)

func readVersion(includeDirs []string) (string, error) {
	for _, inc := range includeDirs {
		p := filepath.Join(inc, "torch", "version.h")
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		parts := map[string]string{}
		for _, m := range versionDefine.FindAllStringSubmatch(string(b), -1) {
			parts[m[1]] = m[2]
		}
		if parts["MAJOR"] == "" || parts["MINOR"] == "" {
			return "", fmt.Errorf("read %s: no TORCH_VERSION_MAJOR/MINOR", p)
		}
		v := parts["MAJOR"] + "." + parts["MINOR"]
		if parts["PATCH"] != "" {
			v += "." + parts["PATCH"]
		}
		return v, nil
	}
	return "", fmt.Errorf("torch/version.h not found in %s", strings.Join(includeDirs, ", "))
}

// usesCXX11ABI reports whether a shared library exports symbols of the C++11
// std::string ABI (names containing "__cxx11"). libc10 always exports
// functions taking std::string, so the answer is reliable for it.
func usesCXX11ABI(lib string) (bool, error) {
	nm, err := exec.LookPath("nm")
	if err != nil {
		return false, fmt.Errorf("nm not found (install binutils): needed to inspect %s", lib)
	}
	cmd := exec.Command(nm, "-D", "--defined-only", lib)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false, err
	}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("nm %s: %w", lib, err)
	}
	found := false
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "__cxx11") {
			found = true
		}
	}
	if err := cmd.Wait(); err != nil {
		return false, fmt.Errorf("nm %s: %w", lib, err)
	}
	return found, nil
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

// CgoFlags returns the body of the cgo preamble (the "#cgo" lines) that
// builds gotch's libtch package against this libtorch.
func (lt *Libtorch) CgoFlags() (string, error) {
	for _, p := range append(append([]string{}, lt.IncludeDirs...), lt.LibDir) {
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
	b.WriteString("// #cgo CXXFLAGS: -std=c++17 -O1 -w\n")
	libs := []string{"-L" + lt.LibDir, "-Wl,-rpath," + lt.LibDir, "-Wl,--no-as-needed", "-ltorch", "-ltorch_cpu", "-lc10"}
	if lt.CUDA {
		libs = append(libs, "-ltorch_cuda", "-lc10_cuda")
	}
	libs = append(libs, "-Wl,--as-needed", "-lstdc++")
	fmt.Fprintf(&b, "// #cgo LDFLAGS: %s\n", strings.Join(libs, " "))
	return b.String(), nil
}
