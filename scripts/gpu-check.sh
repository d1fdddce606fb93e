#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU and PyTorch but no Go and no
# network (prepare .carry/ here first with `make gpu-bundle`):
#   1. unpack the carried Go toolchain and module cache;
#   2. prepare gotch against that PyTorch's libtorch (LIBTORCH = torch/);
#   3. run the test suite with CUDA available (CUDA tests run, not skip);
#   4. encoder benchmark Go vs PyTorch on the GPU (fp16 and fp32, ViT-B/32,
#      ViT-L/14, random weights) and a short CLIP-Adapter training run.
# Everything it prints also goes to $OUT/gpu-check.log when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
t0=$(date +%s)
stamp() { echo "== $(( $(date +%s) - t0 ))s: $*"; }

[ -f .carry/go.tar.xz ] && [ -f .carry/modcache.tar.xz ] || { echo "gpu-check: .carry/ is missing: run 'make gpu-bundle' on a machine with Go"; exit 1; }
stamp "unpacking Go and the module cache"
mkdir -p /tmp/clipgo-go
tar -C /tmp/clipgo-go -xJf .carry/go.tar.xz
tar -C /tmp/clipgo-go -xJf .carry/modcache.tar.xz
export GOROOT=/tmp/clipgo-go/go PATH=/tmp/clipgo-go/go/bin:$PATH
export GOMODCACHE=/tmp/clipgo-go/modcache GOPROXY=off GOFLAGS=-mod=mod GONOSUMDB='*' GONOSUMCHECK=1 GOSUMDB=off
export GOCACHE=/tmp/clipgo-go/cache
go version

PY=$(./scripts/find-python.sh torch)
LIBTORCH=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
export LIBTORCH
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

# JPEGs are decoded with libjpeg when its header is there; a machine without
# it (and without apt) builds with Go's decoder instead.
if ! echo '#include <jpeglib.h>' | ${CC:-cc} -E -x c - >/dev/null 2>&1; then
  echo "gpu-check: no jpeglib.h: building with -tags nolibjpeg (Go's JPEG decoder)"
  export GOFLAGS="$GOFLAGS -tags=nolibjpeg"
fi

stamp "setup against $LIBTORCH"
go run ./cmd/gotchprep
stamp "gotch check on cuda"
go run ./cmd/gotchcheck -device cuda

stamp "tests (CUDA tests enabled where a GPU is present)"
go vet ./... && go test -short ./... 2>&1 | tee "$OUT/tests.log"
go test -run CUDA -v ./clip ./internal/torch 2>&1 | grep -E "^(=== RUN|--- |ok|FAIL|PASS)|relative" | tee -a "$OUT/tests.log"

if [ -x bench/encoder/run.sh ]; then
  stamp "encoder benchmark on cuda (Go vs PyTorch)"
  for arch in ViT-B/32 ViT-L/14; do
    for prec in fp16 fp32; do
      PYTHON="$PY" bench/encoder/run.sh -device cuda -precision "$prec" -archs "$arch" -n 256 -batch 64 -threads 8 2>&1 | tee -a "$OUT/bench.log" || echo "benchmark $arch $prec failed"
    done
  done
fi

stamp "CLIP-Adapter training on cuda (synthetic data, random ViT-B/32)"
go run ./cmd/train -config configs/demo.toml -out /tmp/clipgo-gpu-run \
  -set model.name=random:ViT-B/32 -set model.device=cuda -set method.name=clip-adapter \
  -set data.synth_classes=20 -set data.synth_per_class=40 -set data.shots=16 -set data.root=/tmp/clipgo-gpu-data \
  -set train.epochs=10 -set train.batch_size=32 -set train.optimizer=adamw -set method.alpha=0.8 2>&1 | tail -5
cp /tmp/clipgo-gpu-run/result.json "$OUT/train-result.json" 2>/dev/null || true
stamp "done"
