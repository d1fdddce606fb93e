#!/usr/bin/env bash
# CoOp's text side, Go against an official-style PyTorch step, on the same
# libtorch and thread count (Go links the libtorch its setup prepared; the
# PyTorch side is $PYTHON's torch: Debian's 1.13 by default, or
# GOWORK=$PWD/.gotch/torch-2.11.0/go.work PYTHON=$PWD/.libtorch/venv-torch-2.11.0/bin/python for 2.11):
#   CoOp steps/s (16 context vectors, class token at the end, batch 32 of
#   cached image features, SGD) at 10 and 100 classes with RN50's text
#   transformer (width 512, 12 layers) and at 1,000 classes with a small one
#   (width 256, 4 layers; SMALL1000=0 uses RN50's there too), three ways: Go
#   with the text side's savings (cut after the last end-of-text token,
#   shared prefix once; the default), Go without them
#   (model.full_text_context + method.no_prefix_sharing: 77 positions per
#   prompt, as CoOp's code runs), and PyTorch (bench/coop/torch_coop.py);
#   then the time to build a zero-shot classifier for 1,000 classes x 7
#   templates with the small text transformer, Go (cut) against PyTorch (77
#   positions).
#
# Each configuration runs REPEAT times, the three sides in turn, and the medians
# are printed: steps/s (wall) and process CPU seconds per step (user + system;
# on a machine shared with other work, THREADS=1 CPU seconds are the steadier
# measure of the work done).
#
#   bench/coop/run.sh   (env: THREADS=$(nproc) STEPS=3 CLASSES="10 100 1000" ZEROSHOT=1 REPEAT=3)
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-$(nproc)} STEPS=${STEPS:-3} CLASSES=${CLASSES:-"10 100 1000"} ZEROSHOT=${ZEROSHOT:-1} REPEAT=${REPEAT:-3}
PY=$(./scripts/find-python.sh torch numpy)
W=${BENCH_DIR:-${TMPDIR:-/tmp}/clipgo-bench-coop}
mkdir -p "$W"
export OMP_NUM_THREADS=$THREADS
go build -o "$W/coopbench" ./bench/coop

# measure CMD...: "WALL CPU" from CMD's output line (steps/s and CPU seconds per
# step, or classifier seconds and CPU seconds).
measure() { "$@" 2>>"$W/stderr.log" | awk '/^steps\/s/{print $2, $4} /^classifier_seconds/{print $2, $4}'; }
# median: the median of the numbers on stdin.
median() { sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

printf 'CoOp text side, %d thread(s), %d timed steps after 1 warm-up, medians of %d interleaved rounds\n' "$THREADS" "$STEPS" "$REPEAT"
printf '%-6s %-16s | %-30s | %-30s | %-12s\n' "" "" "steps/s (wall)" "CPU s per step" "Go / PyTorch"
printf '%-6s %-16s | %9s %9s %9s  | %9s %9s %9s  | %6s %6s\n' classes "text model" Go "Go off" PyTorch Go "Go off" PyTorch wall CPU
for c in $CLASSES; do
  size=(-width 512 -layers 12 -heads 8); pysize=(--width 512 --layers 12); label="RN50 512x12"
  if [ "$c" -ge 1000 ] && [ "${SMALL1000:-1}" = 1 ]; then
    size=(-width 256 -layers 4 -heads 4); pysize=(--width 256 --layers 4); label="small 256x4"
  fi
  "$W/coopbench" -classes "$c" -tokens "$W/tokens-$c.npy"
  : >"$W/on" ; : >"$W/off" ; : >"$W/py"
  for _ in $(seq "$REPEAT"); do
    measure "$W/coopbench" -classes "$c" "${size[@]}" -threads "$THREADS" -steps "$STEPS" >>"$W/on"
    measure "$W/coopbench" -classes "$c" "${size[@]}" -threads "$THREADS" -steps "$STEPS" -savings=false >>"$W/off"
    measure "$PY" bench/coop/torch_coop.py "$W/tokens-$c.npy" "${pysize[@]}" --threads "$THREADS" --steps "$STEPS" >>"$W/py"
  done
  on_w=$(cut -d' ' -f1 "$W/on" | median); off_w=$(cut -d' ' -f1 "$W/off" | median); py_w=$(cut -d' ' -f1 "$W/py" | median)
  on_c=$(cut -d' ' -f2 "$W/on" | median); off_c=$(cut -d' ' -f2 "$W/off" | median); py_c=$(cut -d' ' -f2 "$W/py" | median)
  awk -v c="$c" -v l="$label" -v a="$on_w" -v b="$off_w" -v p="$py_w" -v ac="$on_c" -v bc="$off_c" -v pc="$py_c" \
    'BEGIN{printf "%-6s %-16s | %9.3f %9.3f %9.3f  | %9.3f %9.3f %9.3f  | %5.1fx %5.1fx\n", c, l, a, b, p, ac, bc, pc, a/p, pc/ac}'
done

if [ "$ZEROSHOT" = 1 ]; then
  "$W/coopbench" -zeroshot -classes 1000 -tokens "$W/zs-1000.npy"
  : >"$W/zgo" ; : >"$W/zpy"
  for _ in $(seq "$REPEAT"); do
    measure "$W/coopbench" -zeroshot -classes 1000 -width 256 -layers 4 -heads 4 -threads "$THREADS" >>"$W/zgo"
    measure "$PY" bench/coop/torch_coop.py --zeroshot "$W/zs-1000.npy" --width 256 --layers 4 --threads "$THREADS" >>"$W/zpy"
  done
  gw=$(cut -d' ' -f1 "$W/zgo" | median); pw=$(cut -d' ' -f1 "$W/zpy" | median)
  gc=$(cut -d' ' -f2 "$W/zgo" | median); pc=$(cut -d' ' -f2 "$W/zpy" | median)
  awk -v gw="$gw" -v pw="$pw" -v gc="$gc" -v pc="$pc" 'BEGIN{printf "zero-shot classifier, 1,000 classes x 7 templates, small 256x4: Go %.2f s (%.2f CPU s), PyTorch %.2f s (%.2f CPU s), PyTorch/Go %.1fx wall, %.1fx CPU\n", gw, gc, pw, pc, pw/gw, pc/gc}'
fi
