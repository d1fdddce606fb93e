#!/usr/bin/env bash
# Builds .carry/ (git-ignored) for scripts/gpu-check.sh on a GPU machine that
# has PyTorch but no Go and no network:
#   .carry/go.tar.xz        a trimmed GOROOT (no tests, docs, testdata)
#   .carry/modcache.tar.xz  the Go module cache entries this project needs
# Together about 50 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .carry
goroot=$(go env GOROOT)
echo "gpu-bundle: trimming $goroot"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -a "$goroot" "$tmp/go"
(
  cd "$tmp/go"
  # src/cmd is the toolchain's own source: building and testing need the
  # compiled tools under pkg/tool, not their source.
  rm -rf api doc test misc lib/wasm src/cmd pkg/tool/*/{api,covdata,doc,fix,preprofile,test2json,trace} 2>/dev/null || true
  find . -type d -name testdata -prune -exec rm -rf {} +
  find . -name '*_test.go' -delete
)
tar -C "$tmp" -cJf .carry/go.tar.xz go
echo "gpu-bundle: module cache"
export GOMODCACHE="$tmp/modcache" GOFLAGS=-mod=mod GOWORK=off
# Only the modules whose packages the build and tests load (plus the go.mod
# files of the module graph, which go fetches on its own).
go list -e -deps -test ./... >/dev/null
go mod download github.com/sugarme/gotch
# Workspace mode (the go.work that setup writes there) loads the replaced
# gotch's own requirements unpruned: fetch what that needs too.
[ -f go.work ] || { echo "gpu-bundle: run 'make setup' first (the workspace's module graph is needed)" >&2; exit 1; }
GOWORK="$PWD/go.work" GOFLAGS= go list -e -deps -test ./... >/dev/null
rm -rf "$GOMODCACHE/cache/download/sumdb"
find "$GOMODCACHE/cache/download" -name '*.zip' -delete
# gotch's examples and generator sources (90 MB) are not needed to build it.
chmod -R u+w "$GOMODCACHE"
rm -rf "$GOMODCACHE"/github.com/sugarme/gotch@*/{example,gen}
# Dependencies' own tests never run here.
find "$GOMODCACHE" -path "$GOMODCACHE/cache" -prune -o -type d -name testdata -prune -exec rm -rf {} +
find "$GOMODCACHE" -path "$GOMODCACHE/cache" -prune -o -name '*_test.go' -type f -exec rm -f {} +
tar -C "$tmp" -cJf .carry/modcache.tar.xz modcache
chmod -R u+w "$tmp" 2>/dev/null || true
du -sh .carry/*
