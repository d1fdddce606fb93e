#!/usr/bin/env bash
# Data loading benchmark: decode + training transform, images/s, of the Go
# loader (datasets.Loader + clip/preprocess) against PIL + torchvision's
# DataLoader, on the same photo-like JPEGs with the same number of workers.
#
#   bench/data/run.sh [-workers W] [-n N] [-images M] [-size S] [-batch B] [-rounds R] [-dir DIR]
#
# Defaults: 2 workers, 2000 images loaded per run (the 500 generated files
# repeated), 224x224 crops, batches of 32, 3 alternating rounds. Reported:
# the best wall-clock images/s of each side, and the median CPU time per
# image (all threads and worker processes), whose ratio is the more stable
# number on a machine shared with other work. The images are generated once into DIR
# (default: $TMPDIR/clipgo-bench-data) by gen_images.py. Needs Go and a
# Python with torch, torchvision, PIL and numpy: $PYTHON, else
# /usr/bin/python3 (Debian's python3-torchvision), else python3.
set -euo pipefail

workers=2 n=2000 images=500 size=224 batch=32 rounds=3
dir="${TMPDIR:-/tmp}/clipgo-bench-data"
while [ $# -gt 0 ]; do
	case "$1" in
	-workers) workers="$2"; shift 2 ;;
	-n) n="$2"; shift 2 ;;
	-images) images="$2"; shift 2 ;;
	-size) size="$2"; shift 2 ;;
	-batch) batch="$2"; shift 2 ;;
	-rounds) rounds="$2"; shift 2 ;;
	-dir) dir="$2"; shift 2 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

python="$("$repo/scripts/find-python.sh" torch torchvision PIL numpy)" || exit 1

root="$dir/images-$images"
if [ ! -f "$root/.complete" ]; then
	rm -rf "$root"
	"$python" "$here/gen_images.py" "$root" --images "$images"
	touch "$root/.complete"
fi

gobin="$(mktemp -d)/benchdata"
trap 'rm -rf "$(dirname "$gobin")"' EXIT
# Pure Go: build without the workspace (which points at the libtorch setup).
(cd "$repo" && GOWORK=off go build -o "$gobin" ./bench/data)

args=(-workers "$workers" -n "$n" -size "$size" -batch "$batch")
rate() { awk '/^images\/s /{print $2}'; }
cpu() { awk '/^cpu ms\/image /{print $3}'; }
median() { sort -g | awk '{v[NR]=$1} END{print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }
best_go=0 best_py=0 cpu_go="" cpu_py=""
for r in $(seq 1 "$rounds"); do
	out="$("$gobin" -root "$root" "${args[@]}")"
	echo "$out" | sed "s/^/[round $r] /"
	g="$(echo "$out" | rate)"
	cpu_go="$cpu_go$(echo "$out" | cpu)"$'\n'
	out="$("$python" "$here/torch_loader.py" --root "$root" --workers "$workers" --n "$n" --size "$size" --batch "$batch")"
	echo "$out" | sed "s/^/[round $r] /"
	p="$(echo "$out" | rate)"
	cpu_py="$cpu_py$(echo "$out" | cpu)"$'\n'
	best_go="$(awk -v a="$best_go" -v b="$g" 'BEGIN{print (b>a)?b:a}')"
	best_py="$(awk -v a="$best_py" -v b="$p" 'BEGIN{print (b>a)?b:a}')"
done
med_go="$(printf '%s' "$cpu_go" | median)"
med_py="$(printf '%s' "$cpu_py" | median)"

echo
echo "images: $images photo-like JPEGs (~500x375) in $root; $n loaded per run, ${size}px train transform, batch $batch, $workers workers, $rounds rounds"
echo "                              images/s (best)   CPU ms/image (median)"
printf 'go (datasets.Loader)          %8.1f          %8.2f\n' "$best_go" "$med_go"
printf 'pytorch (PIL + DataLoader)    %8.1f          %8.2f\n' "$best_py" "$med_py"
awk -v g="$best_go" -v p="$best_py" -v cg="$med_go" -v cp="$med_py" \
	'BEGIN{printf "ratio go/pytorch              %8.2fx         %8.2fx   (target >= 1.5x)\n", g/p, cp/cg}'
