#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU and PyTorch but no Go and no
# network (prepare .carry/ here first with `make gpu-bundle`). One run,
# sized for nine minutes at most on an H200 with 16 cores:
#   1. unpack the carried Go toolchain and module cache;
#   2. in the background, on PyTorch: the random full-size archives
#      (ViT-B/32, ViT-B/16, ViT-L/14, RN50), PyTorch's own CUDA features of
#      the test fixtures (bench/gpu/parity.py) and 1,024 JPEGs;
#   3. prepare gotch against that PyTorch's libtorch (CUDA), list the stubs,
#      gotchcheck on cuda;
#   4. the CUDA tests (verbose), then the whole test suite, with PyTorch's
#      GPU features as the reference (CLIPGO_CUDA_REFS);
#   5. encoder throughput, Go against PyTorch eager on the same GPU
#      (bench/gpu/run.sh: model alone fp16/fp32, end to end from JPEGs,
#      channels-last and torch.compile as the ceiling);
#   6. short CLIP-Adapter and CoOp runs on cuda with the feature cache.
# Each stage has its own time limit and the script goes on after a failed
# stage, so that one run reports as much as it can. Everything it prints also
# goes to $OUT/gpu-check.log (OUT set by the device tool, else a temporary
# folder); stage logs go to $OUT as well.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
t0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - t0 ))s: $*"; }
# GPU_CHECK_EPOCH=1 replaces the encoder-throughput stage with bench/gpu/epoch.sh
# (issue #14: CoOp on 1,000 classes, peak memory, sweep GPU-hours).
# The whole run must end within GPU_CHECK_SECONDS (default 540): each stage's
# time limit is its own or what is left, whichever is less.
deadline=${GPU_CHECK_SECONDS:-540}
left() { echo $(( deadline - ($(date +%s) - t0) )); }
limit() { local l; l=$(left); [ "$l" -lt "$1" ] || l=$1; [ "$l" -gt 5 ] || l=5; echo "$l"; }
failed=()
stage() { # name timeout command...: runs a stage, records a failure
  local name=$1 limit=$2; shift 2
  stamp "$name"
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  [ $rc -eq 0 ] || { failed+=("$name (exit $rc)"); echo "gpu-check: stage '$name' failed with exit $rc"; }
  return $rc
}

[ -f .carry/go.tar.xz ] && [ -f .carry/modcache.tar.xz ] || { echo "gpu-check: .carry/ is missing: run 'make gpu-bundle' on a machine with Go"; exit 1; }
CXX=${CXX:-$(command -v g++ || command -v c++ || true)}
[ -n "$CXX" ] || { echo "gpu-check: no C++ compiler on this machine: gotch's wrappers cannot be built"; exit 1; }
stamp "unpacking Go and the module cache"
work=/tmp/clipgo-go
mkdir -p $work
tar -C $work -xJf .carry/go.tar.xz
tar -C $work -xJf .carry/modcache.tar.xz
export GOROOT=$work/go PATH=$work/go/bin:$PATH
export GOMODCACHE=$work/modcache GOPROXY=off GOFLAGS= GONOSUMDB='*' GOSUMDB=off GOTOOLCHAIN=local
export GOCACHE=$work/cache
go version

PY=$(./scripts/find-python.sh torch numpy PIL) || exit 1
LIBTORCH=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
export LIBTORCH PYTHON=$PY
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO GPU")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
nproc; $CXX --version | head -n 1

# 2. PyTorch-side preparation, in the background while gotch compiles.
data=/tmp/clipgo-gpu
mkdir -p $data/refs
(
  set -e
  "$PY" bench/gpu/parity.py $data/refs
  "$PY" bench/encoder/make_model.py $data ViT-B/32 ViT-B/16 ViT-L/14 RN50
  "$PY" bench/data/gen_images.py $data/images --images 1024 --classes 1 >/dev/null
  touch $data/.ready
) >"$OUT/prepare.log" 2>&1 &

# JPEGs are decoded with libjpeg when its header is there; a machine without
# it (and without apt) builds with Go's decoder instead.
if ! echo '#include <jpeglib.h>' | ${CC:-cc} -E -x c - >/dev/null 2>&1; then
  echo "gpu-check: no jpeglib.h: building with -tags nolibjpeg (Go's JPEG decoder)"
  export GOFLAGS="$GOFLAGS -tags=nolibjpeg"
fi

# 3. gotch against this libtorch.
stage "setup against $LIBTORCH" "$(limit 330)" go run ./cmd/gotchprep || { echo "gpu-check: setup failed; nothing else can run"; exit 1; }
echo "stubbed wrappers: $(sed -n '/"stubbed"/,/]/p' .gotch/gotch/gotchprep.json | grep -o '"at[a-z_0-9]*"' | tr -d '"' | tr '\n' ' ')"
stage "gotchcheck on cuda" "$(limit 60)" go run ./cmd/gotchcheck -device cuda

# 4. Tests. PyTorch's references must be there first.
wait_for() { local i; for i in $(seq 1 "$2"); do [ -e "$1" ] && return 0; sleep 1; done; return 1; }
wait_for $data/refs/rn_text_cuda_fp16.npy 90 || echo "gpu-check: PyTorch's CUDA references are missing (see prepare.log)"
grep '^parity:' "$OUT/prepare.log" || true
export CLIPGO_CUDA_REFS=$data/refs
stage "CUDA tests, verbose" "$(limit 150)" go test -count=1 -v -run 'CUDA|AcrossDevices' ./clip ./internal/torch ./train >"$OUT/cuda-tests.log" 2>&1
grep -E '^(=== RUN|\s*--- |ok|FAIL|PASS)|relative|max \||tolerance' "$OUT/cuda-tests.log"
stage "tests (all packages, CUDA tests enabled)" "$(limit 200)" go test -timeout 190s ./... >"$OUT/tests.log" 2>&1
grep -vE '^(ok|\?) ' "$OUT/tests.log" | head -n 40
grep -cE '^ok ' "$OUT/tests.log" | sed 's/^/packages ok: /'

# 5. Throughput (the preparation must have finished: the archives and JPEGs).
wait_for $data/.ready 120 || { failed+=("prepare (see prepare.log)"); tail -n 20 "$OUT/prepare.log"; }
if [ -e $data/.ready ] && [ -n "${GPU_CHECK_EPOCH:-}" ]; then
  # #14's measurements instead of the encoder throughput: one 16-shot
  # ImageNet-sized epoch, Go against PyTorch loops, peak memory, and the
  # paper sweep's GPU-hours (bench/gpu/epoch.sh).
  reserve=75
  stage "16-shot ImageNet-sized epoch, Go vs PyTorch" "$(limit $(( $(left) - reserve )))" bench/gpu/epoch.sh -dir $data >"$OUT/epoch.log" 2>&1
  tail -n 40 "$OUT/epoch.log"
elif [ -e $data/.ready ]; then
  reserve=75 # for the training runs after it
  stage "encoder throughput, Go vs PyTorch" "$(limit $(( $(left) - reserve )))" bench/gpu/run.sh -dir $data -deadline $(( $(left) - reserve - 40 )) >"$OUT/bench.log" 2>&1
  sed -n '/^GPU encoder throughput/,$p' "$OUT/bench.log"; grep -E '^(torch|go|run.sh):' "$OUT/bench.log" | grep -v '^go: model' || true
fi

# 6. Short runs on cuda with the feature cache (synthetic data, random ViT-B/32).
for m in clip-adapter coop; do
  start=$(date +%s)
  stage "$m training on cuda" "$(limit 60)" go run ./cmd/train -config configs/demo.toml -out /tmp/clipgo-gpu-run-$m \
    -set model.name=random:ViT-B/32 -set model.device=cuda -set method.name=$m \
    -set data.synth_classes=20 -set data.synth_per_class=40 -set data.shots=16 -set data.root=/tmp/clipgo-gpu-data \
    -set train.epochs=10 >"$OUT/train-$m.log" 2>&1
  echo "$m: $(( $(date +%s) - start ))s wall (go run, data synthesis and model creation included)"
  tail -n 3 "$OUT/train-$m.log"
done

stamp "done"
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu-check: failed stages: ${failed[*]}"
  exit 1
fi
echo "gpu-check: all stages passed"
