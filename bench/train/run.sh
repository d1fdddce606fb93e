#!/usr/bin/env bash
# End-to-end wall time of a CLIP-Adapter few-shot run, three ways:
#   Go, features cached (each augmented view encoded once, reused by epochs),
#   Go, cache_features=false (features recomputed every step: the official way),
#   PyTorch, the official-style loop (bench/train/torch_clip_adapter.py),
# on the same random full-size archive, synthetic images, few-shot split,
# hyper-parameters, libtorch and thread count (Go links the libtorch its setup
# prepared: GOWORK=.gotch/torch-2.11.0/go.work for 2.11; the PyTorch side is
# $PYTHON's torch, e.g. PYTHON=.libtorch/venv-torch-2.11.0/bin/python). Each
# side ends with one evaluation of the few-shot val split (the Go run's
# best-on-val check); per-run logs are left in the work folder ($BENCH_DIR,
# default $TMPDIR/clipgo-bench-train).
#
#   bench/train/run.sh   (env: ARCH=ViT-B/32 CLASSES=100 SHOTS=16 EPOCHS=10 VIEWS=1 WORKERS=2 BATCH=32
#                         NOCACHE=1; NOCACHE=0 skips the uncached Go run, the longest Go one)
# The defaults are the issue's setting; on a 2-core CPU that takes hours, so
# try e.g. CLASSES=10 SHOTS=4 EPOCHS=5 first.
set -euo pipefail
cd "$(dirname "$0")/../.."
ARCH=${ARCH:-ViT-B/32} CLASSES=${CLASSES:-100} SHOTS=${SHOTS:-16} EPOCHS=${EPOCHS:-10}
VIEWS=${VIEWS:-1} WORKERS=${WORKERS:-2} BATCH=${BATCH:-32} THREADS=${THREADS:-$(nproc)}
PY=$(./scripts/find-python.sh torch torchvision numpy)
W=${BENCH_DIR:-${TMPDIR:-/tmp}/clipgo-bench-train}
mkdir -p "$W"
export OMP_NUM_THREADS=$THREADS

"$PY" bench/encoder/make_model.py "$W" "$ARCH" >&2
archive="$W/$(echo "$ARCH" | tr '/' '-').pt"
data="$W/data-$CLASSES-$SHOTS"
# Caltech101's split puts half of each class in train: 2K+4 images give K shots.
[ -f "$data/SYNTHETIC" ] || go run ./cmd/data synth -out "$data" -classes "$CLASSES" -per-class $((2 * SHOTS + 4)) -seed 1 >&2
go run ./cmd/data fewshot -dataset caltech101 -root "$data" -shots "$SHOTS" -seed 1 > "$W/split.json"
ntrain=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["train"]))' "$W/split.json")
[ "$ntrain" -eq $((CLASSES * SHOTS)) ] || { echo "run.sh: the few-shot split has $ntrain training images, want $((CLASSES * SHOTS))" >&2; exit 1; }
prompts=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))["train"]; n={}; [n.setdefault(i["label"], i["classname"]) for i in d]; print("\n".join("a photo of a %s." % n[k].replace("_"," ") for k in sorted(n)))' "$W/split.json")
mapfile -t plist <<<"$prompts"
go run ./cmd/clip tokenize "${plist[@]}" > "$W/tokens.json"
"$PY" -c 'import json,sys,numpy as np; np.save(sys.argv[2], np.array(json.load(open(sys.argv[1]))["tokens"], dtype=np.int64))' "$W/tokens.json" "$W/tokens.npy"

go build -o "$W/train" ./cmd/train
common=(-set "model.name=$archive" -set model.device=cpu -set method.name=clip-adapter -set data.dataset=caltech101
  -set "data.root=$data" -set "data.shots=$SHOTS" -set "data.num_workers=$WORKERS" -set data.max_test=1
  -set "train.epochs=$EPOCHS" -set "train.batch_size=$BATCH" -set train.optimizer=sgd -set train.lr=0.002
  -set "train.augment_views=$VIEWS" -set train.eval_every=0 -set data.templates=single)
# timeit LOG CMD...: runs CMD with its stderr in $W/LOG.log and prints its wall time.
timeit() { local s log="$W/$1.log"; shift; s=$(date +%s.%N); "$@" >/dev/null 2>"$log" || { tail -5 "$log"; exit 1; }; awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN{print e-s}'; }

rm -rf "$W/runs"
go_cold=$(timeit go-cold "$W/train" -config configs/demo.toml "${common[@]}" -set "output.dir=$W/runs" -out "$W/runs/cached")
go_warm=$(timeit go-warm "$W/train" -config configs/demo.toml "${common[@]}" -set "output.dir=$W/runs" -out "$W/runs/cached2")
go_nocache=nan
[ "${NOCACHE:-1}" = 0 ] || go_nocache=$(timeit go-nocache "$W/train" -config configs/demo.toml "${common[@]}" -set "output.dir=$W/runs" -set train.cache_features=false -out "$W/runs/nocache")
s=$(date +%s.%N)
"$PY" bench/train/torch_clip_adapter.py "$archive" "$W/split.json" "$data/caltech-101/101_ObjectCategories" "$W/tokens.npy" \
  --epochs "$EPOCHS" --batch "$BATCH" --workers "$WORKERS" --threads "$THREADS" > "$W/torch.log" 2>&1 || { tail -5 "$W/torch.log"; exit 1; }
torch=$(awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN{print e-s}')

printf '\nCLIP-Adapter %s, %d classes x %d shots, %d epochs, batch %d, %d threads, %d loader workers\n' "$ARCH" "$CLASSES" "$SHOTS" "$EPOCHS" "$BATCH" "$THREADS" "$WORKERS"
printf '%-44s %9.1f s\n' "Go, cached features (cold, $VIEWS view(s))" "$go_cold"
printf '%-44s %9.1f s\n' "Go, cached features (warm cache)" "$go_warm"
printf '%-44s %9.1f s\n' "Go, recomputed every step (official way)" "$go_nocache"
printf '%-44s %9.1f s\n' "PyTorch, official-style loop" "$torch"
awk -v t="$torch" -v a="$go_cold" -v b="$go_warm" -v c="$go_nocache" \
  'BEGIN{printf "ratios: PyTorch / Go cached cold = %.1fx, / Go cached warm = %.1fx, / Go uncached = %s\n", t/a, t/b, (c == "nan") ? "skipped" : sprintf("%.2fx", t/c)}'
printf 'logs: %s/{go-cold,go-warm,go-nocache,torch}.log\n' "$W"
