#!/usr/bin/env bash
# Image encoder benchmark: images/s of Go's `clip encode-image` against an
# equivalent PyTorch script (torch_encode.py), on the same TorchScript
# archives, the same images, the same libtorch and the same thread count,
# for full-size ViT-B/32 and RN50 with random weights.
#
#   bench/encoder/run.sh [-n 64] [-batch 16] [-threads 2] [-rounds 2] [-archs "ViT-B/32 RN50"]
#                        [-device cpu|cuda] [-precision fp32|fp16] [-dir DIR] [-eager]
#
# Steps: make_model.py writes the random archives in the format of OpenAI's
# releases (ViT-B-32.pt, RN50.pt: 350 and 260 MB), bench/data/gen_images.py
# writes n photo-like JPEGs of about 500x375, and `go build` builds
# cmd/clip. Then, for each architecture and round, the two sides run one
# after the other on all n images with batches of -batch:
#
#   go:      clip encode-image -device D -precision P -batch B -threads T -timing ...
#   pytorch: torch_encode.py --device D --precision P --batch B --threads T
#            (torch.jit.load, PIL + CLIP's transform, torch.no_grad, encode_image;
#            with -eager the archive's weights in eager.py's nn.Module instead,
#            what clip.load(jit=False) runs: PyTorch eager)
#
# Both run with OMP_NUM_THREADS=T and OPENBLAS_NUM_THREADS=T, and both
# time decoding + preprocessing + encoding after the model is loaded.
# Reported per side: the best images/s over the rounds; the images/s of the
# fastest batch after the first (the first holds TorchScript's profiling
# run and the allocators' warm-up), the figure least disturbed by other
# load on a shared machine; the median CPU time per image (all threads,
# decoding included); the peak RSS and the range of RSS after each batch
# (flat = no leak). On the CPU, Go encodes as many batches at once as it
# has libtorch threads, one thread each (its -timing totals say so): the
# time between its batches is then not a batch's time, and its best-batch
# figure is shown as "-". The features of the two sides are compared (both
# decode with libjpeg and resize as Pillow does, so they agree to float
# rounding; a build with -tags nolibjpeg decodes with Go's image/jpeg,
# whose IDCT differs from libjpeg's in the last bit).
#
# Files go to DIR (default: a fresh temporary folder, removed at the end;
# with -dir they are kept and reused). Needs Go with the prepared gotch
# (make setup) and a Python with torch, PIL and numpy: $PYTHON, else
# /usr/bin/python3 (Debian's python3-torch is libtorch 1.13, the version
# the Go side links against), else python3. On a GPU (-device cuda) the
# PyTorch side is that Python's torch, and the Go side should be set up
# against the same libtorch (LIBTORCH=<its torch/ folder> make setup).
# For libtorch 2.x on both sides: make setup-torch2 python-deps-torch2, then
#   GOWORK=$PWD/.gotch/torch-2.11.0/go.work \
#   PYTHON=$PWD/.libtorch/venv-torch-2.11.0/bin/python bench/encoder/run.sh -eager ...
# (archives written by torch 2.x cannot be read by torch 1.13's jit.load:
# use another -dir for each PyTorch version).
set -euo pipefail

n=64 batch=16 threads=2 rounds=2 archs="ViT-B/32 RN50" device=cpu precision=fp32 dir="" eager=""
while [ $# -gt 0 ]; do
	case "$1" in
	-n) n="$2"; shift 2 ;;
	-batch) batch="$2"; shift 2 ;;
	-threads) threads="$2"; shift 2 ;;
	-rounds) rounds="$2"; shift 2 ;;
	-archs) archs="$2"; shift 2 ;;
	-device) device="$2"; shift 2 ;;
	-precision) precision="$2"; shift 2 ;;
	-dir) dir="$2"; shift 2 ;;
	-eager) eager="--eager"; shift ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

python="$("$repo/scripts/find-python.sh" torch PIL numpy)" || exit 1

if [ -z "$dir" ]; then
	dir="$(mktemp -d "${TMPDIR:-/tmp}/clipgo-bench-encoder.XXXXXX")"
	trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"

echo "== setup in $dir"
# shellcheck disable=SC2086
"$python" "$here/make_model.py" "$dir" $archs
imgdir="$dir/images-$n"
if [ ! -f "$imgdir/.complete" ]; then
	rm -rf "$imgdir"
	"$python" "$repo/bench/data/gen_images.py" "$imgdir" --images "$n" --classes 1 >/dev/null
	touch "$imgdir/.complete"
fi
images=("$imgdir"/class_00/*.jpg)
(cd "$repo" && go build -o "$dir/clip" ./cmd/clip)
export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"
torch_version="$("$python" -c 'import torch; print(torch.__version__)')"
libtorch="$("$dir/clip" version)"
echo "python torch $torch_version; go side: ${libtorch:-libtorch (unknown)}; $device $precision; $threads threads; ${#images[@]} images; batch $batch"

# summarize LOG: "rate bestbatch cpu peak rssmin rssmax" from the -timing
# lines: images/s of the whole run, images/s of the fastest batch after the
# first, CPU ms per image, peak RSS and the range of RSS after each batch.
summarize() {
	awk '
		/^encode: batch / {
			nb++
			if (nb > 1 && $7 > 0 && $4 / $7 > bb) bb = $4 / $7
		}
		/batches at once/ { bb = 0 }
		/^encode: [0-9]+ images in / {
			rate = substr($7, 2)
			cpu = $0; sub(/.*CPU /, "", cpu); sub(/ ms.*/, "", cpu)
			peak = $0; sub(/.*peak RSS /, "", peak); sub(/ MiB.*/, "", peak)
			rng = $0; sub(/.*after each batch /, "", rng); sub(/ MiB.*/, "", rng)
			split(rng, r, "-")
		}
		END { printf "%s %.3f %s %s %s %s\n", rate, bb, cpu, peak, r[1], r[2] }' "$1"
}

best() { awk -v a="$1" -v b="$2" 'BEGIN{print (b+0 > a+0) ? b : a}'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END{print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }

results=()
for arch in $archs; do
	file="$(echo "$arch" | tr '/' '-').pt"
	model="$dir/$file"
	go_rate=0 go_bb=0 go_cpu="" go_mem="" py_rate=0 py_bb=0 py_cpu="" py_mem=""
	for r in $(seq 1 "$rounds"); do
		echo "== $arch round $r: go"
		"$dir/clip" encode-image -model "$model" -device "$device" -precision "$precision" -batch "$batch" -threads "$threads" -timing \
			-out "$dir/go.npy" "${images[@]}" 2>&1 | grep '^encode: ' | tee "$dir/go.log"
		read -r rate bb cpu peak lo hi < <(summarize "$dir/go.log")
		go_rate="$(best "$go_rate" "$rate")" go_bb="$(best "$go_bb" "$bb")" go_cpu="$go_cpu $cpu"
		go_mem="$go_mem peak $peak, after each batch $lo-$hi;"

		echo "== $arch round $r: pytorch"
		"$python" "$here/torch_encode.py" --model "$model" --batch "$batch" --threads "$threads" \
			--device "$device" --precision "$precision" $eager --out "$dir/py.npy" "${images[@]}" 2>&1 | grep -E '^(encode|load): ' | tee "$dir/py.log"
		read -r rate bb cpu peak lo hi < <(summarize "$dir/py.log")
		py_rate="$(best "$py_rate" "$rate")" py_bb="$(best "$py_bb" "$bb")" py_cpu="$py_cpu $cpu"
		py_mem="$py_mem peak $peak, after each batch $lo-$hi;"
	done
	go_cpu="$(echo "$go_cpu" | median)" py_cpu="$(echo "$py_cpu" | median)"
	diff="$("$python" -c '
import sys, numpy as np
g, p = np.load(sys.argv[1]), np.load(sys.argv[2])
cos = (g * p).sum(1) / np.linalg.norm(g, axis=1) / np.linalg.norm(p, axis=1)
print("max |go - pytorch| / max |pytorch| %.2e, min cosine %.6f" % (np.abs(g - p).max() / np.abs(p).max(), cos.min()))
' "$dir/go.npy" "$dir/py.npy")"
	results+=("$arch|$go_rate|$py_rate|$go_bb|$py_bb|$go_cpu|$py_cpu|$go_mem|$py_mem|$diff")
done

echo
echo "${#images[@]} JPEGs ~500x375, $device $precision, batch $batch, $threads threads, $rounds rounds; timed: decode + preprocess + encode (model load excluded)"
echo "             images/s (best run)        images/s (best batch)      CPU ms/image (median)"
printf '%-10s %8s %8s %7s %8s %8s %7s %8s %8s %7s\n' arch go pytorch ratio go pytorch ratio go pytorch ratio
for row in "${results[@]}"; do
	IFS='|' read -r arch g p gb pb gc pc gm pm d <<<"$row"
	awk -v a="$arch" -v g="$g" -v p="$p" -v gb="$gb" -v pb="$pb" -v gc="$gc" -v pc="$pc" 'BEGIN{
		bbg = (gb > 0) ? sprintf("%8.2f", gb) : sprintf("%8s", "-")
		bbr = (gb > 0 && pb > 0) ? sprintf("%6.2fx", gb / pb) : sprintf("%7s", "-")
		printf "%-10s %8.2f %8.2f %6.2fx %s %8.2f %s %8.1f %8.1f %6.2fx\n", a, g, p, (p > 0) ? g / p : 0,
			bbg, pb, bbr, gc, pc, (gc > 0) ? pc / gc : 0 }'
done
echo
echo "resident memory (MiB) per round, and agreement of the features:"
for row in "${results[@]}"; do
	IFS='|' read -r arch g p gb pb gc pc gm pm d <<<"$row"
	echo "$arch go:     $gm"
	echo "$arch pytorch:$pm"
	echo "$arch features: $d"
done
echo "(ratios: go faster when > 1; best batch = fastest batch after the first; target: go >= pytorch, flat RSS after each batch)"
