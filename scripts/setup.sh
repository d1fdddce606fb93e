#!/usr/bin/env bash
# One-command setup (`make setup`): installs what the toolkit needs from
# Debian's packages when it is missing, then prepares gotch for the libtorch
# that is installed (see cmd/gotchprep). Idempotent and quick when done.
#
#   LIBTORCH=/dir  use an official libtorch distribution or a PyTorch
#                  installation's torch/ directory instead of the system one.
#
# `setup.sh torch2 [VERSION]` (make setup-torch2) instead prepares a second
# build beside the default one: libtorch VERSION (default 2.11.0) unpacked
# from PyPI's torch wheel by scripts/fetch-libtorch.sh (CPU libraries only,
# nothing installed into any Python), gotch prepared for it in
# .gotch/torch-VERSION/, used through GOWORK=.gotch/torch-VERSION/go.work.
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

mode=${1:-}
torch2_version=${2:-${TORCH2:-2.11.0}}

# `setup.sh python-torch2 [VERSION]` (make python-deps-torch2): a virtual
# environment in .libtorch/venv-torch-VERSION with PyTorch VERSION from PyPI
# (with its CUDA library wheels, as any user gets it) and torchvision, PIL
# and numpy, for the benchmarks' PyTorch 2.x side. The system Python is not
# touched; the toolkit never runs Python.
if [ "${1:-}" = python-torch2 ]; then
  version=${2:-${TORCH2:-2.11.0}}
  venv=".libtorch/venv-torch-$version"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch, torchvision, PIL, numpy' >/dev/null 2>&1; then
    python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv $venv failed (apt-get install python3-venv)"
    echo "setup: installing torch==$version, torchvision, pillow and numpy into $venv (several GB)" >&2
    "$venv/bin/python" -m pip install -q "torch==$version" torchvision pillow numpy \
      || die "pip install torch==$version into $venv failed"
  fi
  echo "setup: PYTHON=$PWD/$venv/bin/python ($("$venv/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
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
if [ "$mode" = torch2 ]; then
  # fetch-libtorch.sh: pip downloads the wheel, unzip and readelf unpack it.
  command -v unzip >/dev/null 2>&1 || need+=(unzip)
  command -v readelf >/dev/null 2>&1 || need+=(binutils)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
elif [ -z "${LIBTORCH:-}" ]; then
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

if [ -z "${LIBTORCH:-}" ] && [ "$mode" != torch2 ] && command -v update-alternatives >/dev/null 2>&1; then
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

if [ "$mode" = torch2 ]; then
  dir=$(./scripts/fetch-libtorch.sh "$torch2_version" | tail -n 1)
  exec go run ./cmd/gotchprep -libtorch "$dir" -dest ".gotch/torch-$torch2_version/gotch" -work ".gotch/torch-$torch2_version/go.work"
fi
exec go run ./cmd/gotchprep
