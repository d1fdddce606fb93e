// Command gotchprep prepares github.com/sugarme/gotch for the installed
// libtorch: it copies gotch from the module cache into .gotch/gotch, writes
// cgo flags for the libtorch it finds, stubs the C++ wrappers that do not
// compile or link against it, builds it once and writes go.work. `make setup`
// runs it; it is quick when nothing changed.
//
// Usage:
//
//	go run ./cmd/gotchprep [-libtorch DIR] [-dest DIR] [-work FILE] [-no-build]
//
// LIBTORCH (or -libtorch) names an official libtorch distribution or a
// PyTorch installation's torch/ directory; without it the system libtorch
// (Debian's libtorch-dev) is used.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/clipadapter/clipgo/internal/gotchprep"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gotchprep:", err)
		os.Exit(1)
	}
}

func run() error {
	libtorchDir := flag.String("libtorch", os.Getenv("LIBTORCH"), "libtorch directory (default $LIBTORCH, else the system libtorch)")
	dest := flag.String("dest", ".gotch/gotch", "where to write the prepared gotch copy")
	work := flag.String("work", "go.work", "the go.work file to write (another name, used through GOWORK, keeps a second preparation beside the default one)")
	noBuild := flag.Bool("no-build", false, "prepare only; do not build and link-check gotch")
	flag.Parse()
	start := time.Now()

	project, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(project, "go.mod")); err != nil {
		return errors.New("run from the project root (where go.mod is)")
	}
	lt, err := gotchprep.Find(*libtorchDir)
	if err != nil {
		return err
	}
	src, version, err := gotchSource()
	if err != nil {
		return err
	}
	destAbs, err := filepath.Abs(*dest)
	if err != nil {
		return err
	}
	workAbs, err := filepath.Abs(*work)
	if err != nil {
		return err
	}
	ctx := context.Background()
	res, err := gotchprep.Prepare(ctx, gotchprep.Options{
		ProjectDir: project, Dest: destAbs, WorkFile: workAbs, Source: src, Version: version, Libtorch: lt, Log: os.Stderr,
	})
	if err != nil {
		return err
	}
	if !*noBuild {
		stubbed, err := buildAndLinkCheck(destAbs, workAbs, lt)
		if err != nil {
			return err
		}
		if len(stubbed) > 0 {
			res.Stubbed = append(res.Stubbed, stubbed...)
			r, _ := gotchprep.Reprepare(destAbs)
			if err := gotchprep.WriteInfo(destAbs, r); err != nil {
				return err
			}
		}
	}
	state := "prepared"
	if res.Reused {
		state = "up to date"
	}
	abi := "pre-C++11 string ABI"
	if lt.CXX11ABI {
		abi = "C++11 string ABI"
	}
	fmt.Printf("setup: %s, %s; BLAS: %s; gotch %s %s in %s, %d wrappers stubbed (%s)\n",
		lt.Describe(), abi, blasInUse(lt), version, state, *dest, len(res.Stubbed), time.Since(start).Round(time.Second))
	return nil
}

// gotchSource returns gotch's directory in the module cache and its version,
// as required by go.mod (ignoring any go.work).
func gotchSource() (dir, version string, err error) {
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	list := func() (string, string, error) {
		cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}} {{.Version}}", gotchprep.Module)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			return "", "", fmt.Errorf("go list -m %s: %w", gotchprep.Module, err)
		}
		f := strings.Fields(string(out))
		if len(f) != 2 || f[0] == "" {
			return "", "", fmt.Errorf("go list -m %s: not in the module cache (%q)", gotchprep.Module, out)
		}
		return f[0], f[1], nil
	}
	// Already extracted (also on a machine without network, with a carried
	// module cache): no download needed.
	if dir, version, err := list(); err == nil {
		return dir, version, nil
	}
	dl := exec.Command("go", "mod", "download", gotchprep.Module)
	dl.Env = env
	if out, err := dl.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go mod download %s: %v\n%s", gotchprep.Module, err, out)
	}
	return list()
}

const linkCheckSrc = `// Command linkcheck is written by gotchprep: it proves that gotch links
// against the installed libtorch and runs one matrix product.
package main

import (
	"fmt"
	"os"

	"github.com/sugarme/gotch/ts"
)

func main() {
	a, err := ts.OfSlice([]float32{1, 2, 3, 4})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	a = a.MustView([]int64{2, 2}, true)
	b := a.MustMatmul(a, false)
	fmt.Println(b.Float64Values())
}
`

// buildAndLinkCheck compiles gotch (the slow, cached first build) and links
// a small program against libtorch, stubbing wrappers that reference symbols
// the library does not export.
func buildAndLinkCheck(dest, work string, lt *gotchprep.Libtorch) ([]string, error) {
	dir := filepath.Join(dest, "internal", "linkcheck")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(linkCheckSrc), 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(dest, "linkcheck.bin")
	var stubbed []string
	for round := 1; round <= 3; round++ {
		fmt.Fprintln(os.Stderr, "gotchprep: building gotch (the first build takes a few minutes)...")
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", bin, gotchprep.Module+"/internal/linkcheck")
		cmd.Env = append(os.Environ(), "GOWORK="+work)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			names, serr := gotchprep.StubLinkFailures(filepath.Join(dest, "libtch"), out.String(), lt.Version)
			if serr != nil || len(names) == 0 {
				return nil, fmt.Errorf("build gotch against %s: %v\n%s", lt.Describe(), err, tail(out.String(), 40))
			}
			fmt.Fprintf(os.Stderr, "gotchprep: stubbed %d wrappers that do not link\n", len(names))
			if err := gotchprep.AddStubbed(dest, names); err != nil {
				return nil, err
			}
			stubbed = append(stubbed, names...)
			continue
		}
		fmt.Fprintf(os.Stderr, "gotchprep: gotch built (%s)\n", time.Since(start).Round(time.Second))
		run := exec.Command(bin)
		got, err := run.CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != "[7 10 15 22]" {
			return nil, fmt.Errorf("gotch built, but a matrix product against %s failed (%v): %s", lt.Describe(), err, tail(string(got), 20))
		}
		return stubbed, nil
	}
	return nil, errors.New("gotch still does not link after stubbing")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// blasInUse names the BLAS libtorch's matrix products run on.
func blasInUse(lt *gotchprep.Libtorch) string {
	if !lt.System {
		return "bundled with libtorch"
	}
	for _, dir := range []string{lt.LibDir, "/lib/x86_64-linux-gnu", "/usr/lib"} {
		p, err := filepath.EvalSymlinks(filepath.Join(dir, "libblas.so.3"))
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(p, "openblas-pthread"):
			return "OpenBLAS (pthread)"
		case strings.Contains(p, "openblas"):
			return "OpenBLAS"
		case strings.Contains(p, "blis"):
			return "BLIS"
		case strings.Contains(p, "mkl"):
			return "MKL"
		default:
			return "reference BLAS (slow: install libopenblas0-pthread)"
		}
	}
	return "unknown"
}
