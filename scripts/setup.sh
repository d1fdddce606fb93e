#!/usr/bin/env bash
# One-command setup (`make setup`): installs what the toolkit needs from
# Debian's packages when it is missing, then prepares gotch for the libtorch
# that is installed (see cmd/gotchprep). Idempotent and quick when done.
#
#   LIBTORCH=/dir  use an official libtorch distribution or a PyTorch
#                  installation's torch/ directory instead of the system one.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "setup: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

apt_updated=""
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "missing: $* — this is not a Debian/Ubuntu machine; install the equivalent packages by hand, or set LIBTORCH to a libtorch directory"
  if [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; then
    die "missing: $* — run 'apt-get install $*' as root (or install sudo)"
  fi
  if [ -z "$apt_updated" ]; then
    echo "setup: apt-get update" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || die "apt-get update failed: check the network or the apt sources"
    apt_updated=1
  fi
  echo "setup: installing $*" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed: run it by hand to see why"
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# `setup.sh python` (make python-deps): the Debian Python packages that the
# fixture generators and the benchmarks' PyTorch sides use. The toolkit itself
# never runs Python.
if [ "${1:-}" = python ]; then
  pk=()
  for p in python3-torch python3-torchvision python3-pil python3-numpy python3-sklearn python3-regex; do
    installed "$p" || pk+=("$p")
  done
  [ ${#pk[@]} -eq 0 ] || apt_install "${pk[@]}"
  py=$(./scripts/find-python.sh torch torchvision PIL numpy sklearn regex) || exit 1
  echo "setup: $py imports torch, torchvision, PIL, numpy, sklearn and regex"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not on PATH: install Go 1.22 or newer (https://go.dev/dl) and retry"

need=()
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v nm >/dev/null 2>&1 || need+=(binutils)
# clip/preprocess decodes JPEGs with libjpeg-turbo through cgo (jpeglib.h,
# -ljpeg), the library Pillow uses.
if command -v dpkg-query >/dev/null 2>&1 && ! installed libjpeg62-turbo-dev; then
  need+=(libjpeg62-turbo-dev)
fi
if [ -z "${LIBTORCH:-}" ]; then
  [ -f /usr/include/torch/csrc/api/include/torch/torch.h ] || need+=(libtorch-dev)
  # Debian's default BLAS is the slow reference one; OpenBLAS makes matrix
  # products about 20x faster.
  if command -v dpkg-query >/dev/null 2>&1 && ! installed libopenblas0-pthread; then
    need+=(libopenblas0-pthread)
  fi
fi
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi

if [ -z "${LIBTORCH:-}" ] && command -v update-alternatives >/dev/null 2>&1; then
  alt="libblas.so.3-$(uname -m)-linux-gnu"
  current=$(update-alternatives --query "$alt" 2>/dev/null | sed -n 's/^Value: //p')
  if [ -n "$current" ] && [[ "$current" != *openblas* ]]; then
    best=$(update-alternatives --list "$alt" | grep openblas-pthread | head -n 1 || true)
    [ -n "$best" ] && $SUDO update-alternatives --set "$alt" "$best" >/dev/null
    lapack="liblapack.so.3-$(uname -m)-linux-gnu"
    best=$(update-alternatives --list "$lapack" 2>/dev/null | grep openblas-pthread | head -n 1 || true)
    [ -n "$best" ] && $SUDO update-alternatives --set "$lapack" "$best" >/dev/null
  fi
fi

exec go run ./cmd/gotchprep
