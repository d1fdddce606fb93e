#!/usr/bin/env bash
# Fetches the libtorch inside PyPI's `torch` wheel (the libtorch PyTorch 2.x
# users have) into a git-ignored folder, without installing anything into any
# Python: `pip download` fetches the wheel and only its torch/include and
# torch/lib are unpacked.
#
#   scripts/fetch-libtorch.sh [--cuda] [VERSION]     (default VERSION: $TORCH_VERSION, else 2.11.0)
#
# CPU (default): .libtorch/torch-VERSION/torch with include/ and lib/, less
#   the CUDA libraries (libtorch_cuda, libc10_cuda, ...) and the Python
#   binding. The wheel's libtorch_cpu still needs the CUDA runtime and CUPTI
#   sonames; their small pinned wheels are fetched and the two libraries put
#   beside it.
# --cuda: .libtorch/torch-VERSION-cuda, laid out as a site-packages folder:
#   torch/ whole (less the Python binding) and every nvidia/* library wheel the
#   torch wheel pins, so that the CUDA link can be built and checked on a
#   machine without a GPU (about 3 GB).
#
# Prints the LIBTORCH directory on its last line. Idempotent: a complete
# folder is kept; a half-written one (no .complete marker) is fetched anew.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "fetch-libtorch: $*" >&2; exit 1; }

cuda=""
if [ "${1:-}" = --cuda ]; then cuda=1; shift; fi
version=${1:-${TORCH_VERSION:-2.11.0}}
[[ "$version" =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] || die "version '$version' is not of the form 2.11.0"
[[ "$version" == 2.* ]] || die "version $version: this script fetches libtorch 2.x from the torch wheel (1.13 comes from Debian's libtorch-dev)"

name="torch-$version${cuda:+-cuda}"
dest="$PWD/.libtorch/$name"
if [ -f "$dest/.complete" ]; then
  echo "$dest/torch"
  exit 0
fi

arch=$(uname -m)
case "$arch" in
  x86_64|aarch64) ;;
  *) die "no torch wheel is published for $arch" ;;
esac

py=""
for p in "${PYTHON:-}" python3 /usr/bin/python3; do
  [ -n "$p" ] || continue
  if command -v "$p" >/dev/null 2>&1 && "$p" -m pip --version >/dev/null 2>&1; then py=$p; break; fi
done
[ -n "$py" ] || die "no python3 with pip found (install python3-pip; pip only downloads here, nothing is installed)"
for t in unzip readelf; do
  command -v "$t" >/dev/null 2>&1 || die "$t is missing (apt-get install ${t/readelf/binutils})"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/fetch-libtorch.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Wheels are tagged per Python version, but libtorch inside is the same for
# all: ask for CPython 3.12's, which every current release publishes.
platforms=()
for n in 17 24 25 26 27 28 31 34 35 39; do platforms+=(--platform "manylinux_2_${n}_$arch"); done
[ "$arch" = x86_64 ] && platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
pipdl() { # dir spec...
  local d=$1; shift
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$d" "$@" >&2 || die "pip download $* failed (is PyPI reachable? is the version published for $arch?)"
}

echo "fetch-libtorch: downloading torch==$version ($arch)" >&2
pipdl "$work/torch" "torch==$version"
wheel=$(ls "$work"/torch/torch-"$version"-*.whl 2>/dev/null | head -n 1)
[ -n "$wheel" ] || die "pip did not save torch-$version-*.whl in $work/torch"
case "$wheel" in
  *"_$arch.whl") ;;
  *) die "$wheel is not a Linux $arch wheel" ;;
esac
unzip -tq "$wheel" >/dev/null || die "$wheel is corrupt (unzip -t failed): run again"

stage="$dest.partial"
rm -rf "$stage" "$dest"
mkdir -p "$stage"
echo "fetch-libtorch: unpacking torch/include and torch/lib" >&2
unzip -q "$wheel" 'torch/include/*' 'torch/lib/*' 'torch/version.py' -d "$stage" \
  || die "unzip $wheel failed"
[ -f "$stage/torch/include/torch/csrc/api/include/torch/torch.h" ] && [ -f "$stage/torch/lib/libtorch_cpu.so" ] \
  || die "$wheel holds no libtorch (torch/include/.../torch.h or torch/lib/libtorch_cpu.so missing)"
rm -f "$stage"/torch/lib/libtorch_python.so

meta=$(unzip -p "$wheel" '*.dist-info/METADATA')
# The CUDA packages the wheel pins (Linux only), as pip specifiers. Newer
# wheels pin one cuda-toolkit[extras]==V whose own metadata pins the
# libraries; older ones pin nvidia-*-cuNN packages directly.
pins=$(printf '%s\n' "$meta" | sed -n 's/^Requires-Dist: \([^;]*\);.*platform_system == "Linux".*/\1/p' | tr -d ' ')
nvidia_pins() { # prints nvidia-* specs, expanding cuda-toolkit[extras]==V
  local spec
  for spec in $pins; do
    case "$spec" in
      nvidia-*) echo "$spec" ;;
      cuda-toolkit*)
        local v=${spec##*==} extras
        extras=$(printf '%s' "$spec" | sed -n 's/.*\[\(.*\)\].*/\1/p' | tr ',' ' ')
        pipdl "$work/ct" "cuda-toolkit==$v"
        local ctmeta
        ctmeta=$(unzip -p "$work"/ct/cuda_toolkit-*.whl '*.dist-info/METADATA')
        local e
        for e in $extras; do
          printf '%s\n' "$ctmeta" | sed -n "s/^Requires-Dist: \(nvidia-[^;]*\);.*extra == '$e'.*/\1/p" | tr -d ' '
        done
        ;;
    esac
  done | sort -u
}

if [ -z "$cuda" ]; then
  rm -f "$stage"/torch/lib/{libtorch.so,libtorch_cuda.so,libtorch_cuda_linalg.so,libc10_cuda.so,libcaffe2_nvrtc.so,libtorch_nvshmem.so,libtorch_global_deps.so}
  # Which shared libraries does the CPU part still need that neither the
  # wheel nor the system has? (CUDA wheels: the CUDA runtime and CUPTI.)
  missing=()
  known=$(ldconfig -p 2>/dev/null || true)
  for so in $(readelf -d "$stage"/torch/lib/libtorch_cpu.so "$stage"/torch/lib/libc10.so | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u); do
    [ -e "$stage/torch/lib/$so" ] && continue
    grep -q "^[[:space:]]*$so " <<<"$known" && continue
    missing+=("$so")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "fetch-libtorch: the CPU libraries need ${missing[*]}: fetching the pinned CUDA runtime wheels" >&2
    specs=()
    for s in $(nvidia_pins); do
      case "$s" in nvidia-cuda-runtime*|nvidia-cuda-cupti*) specs+=("$s") ;; esac
    done
    [ ${#specs[@]} -gt 0 ] || die "torch $version needs ${missing[*]} but pins no nvidia-cuda-runtime/cupti package"
    pipdl "$work/nv" "${specs[@]}"
    for w in "$work"/nv/*.whl; do unzip -q -o "$w" 'nvidia/*' -d "$work/nvx"; done
    for so in "${missing[@]}"; do
      f=$(find "$work/nvx" -name "$so" | head -n 1)
      [ -n "$f" ] || die "$so is in none of ${specs[*]}"
      cp "$f" "$stage/torch/lib/"
    done
  fi
else
  specs=($(nvidia_pins))
  echo "fetch-libtorch: downloading ${#specs[@]} CUDA library wheels" >&2
  pipdl "$work/nv" "${specs[@]}"
  for w in "$work"/nv/*.whl; do unzip -q -o "$w" 'nvidia/*' -d "$stage" || die "unzip $w failed"; done
fi

mode=cpu; [ -z "$cuda" ] || mode=cuda
printf 'torch %s %s %s\n' "$version" "$mode" "$(basename "$wheel")" >"$stage/.complete"
mv "$stage" "$dest"
du -sh "$dest" >&2
echo "$dest/torch"
