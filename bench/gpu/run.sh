#!/usr/bin/env bash
# GPU encoder benchmark: Go (package clip through libtorch) against PyTorch
# eager on the same GPU, the same archives and the same batch.
#
#   bench/gpu/run.sh -dir DIR [-batch 256] [-iters 20] [-deadline SECONDS]
#                    [-archs "ViT-B/32 ViT-B/16 ViT-L/14 RN50"] [-workers 16] [-device cuda]
#
# (-device cpu only tries the script out, e.g. on small archives.)
#
# DIR holds the random archives in the official format (make_model.py) and
# DIR/images/class_00/*.jpg (bench/data/gen_images.py); scripts/gpu-check.sh
# makes both. Go must be set up against the PyTorch's libtorch (LIBTORCH=its
# torch/ folder make setup), and $PYTHON (else find-python.sh) is that
# PyTorch.
#
# For each architecture, fp16 then fp32:
#   model alone:  encspeed (Go) and torch_speed.py model (PyTorch eager):
#                 random input already on the GPU, 3 warm-up batches, -iters
#                 timed batches; the features of 8 fixed images are compared.
# Then, as the ceiling a user could pick instead of eager: channels-last
# (RN50) and torch.compile (ViT-B/16 fp16), PyTorch only; and end
# to end from the JPEGs (fp16): `clip encode-image -workers 16` against a
# DataLoader with 16 workers and CLIP's transform. Anything that would start
# after -deadline seconds is skipped (and says so). Ratios: Go / PyTorch,
# higher is faster for Go.
set -uo pipefail
dir="" batch=256 iters=20 deadline=100000 archs="ViT-B/32 ViT-B/16 ViT-L/14 RN50" device=cuda workers=16 e2e_only=""
while [ $# -gt 0 ]; do
	case "$1" in
	-dir) dir="$2"; shift 2 ;;
	-batch) batch="$2"; shift 2 ;;
	-iters) iters="$2"; shift 2 ;;
	-deadline) deadline="$2"; shift 2 ;;
	-archs) archs="$2"; shift 2 ;;
	-device) device="$2"; shift 2 ;;
	-workers) workers="$2"; shift 2 ;;
	-e2e-only) e2e_only=1; shift ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$dir" ] || { echo "run.sh: -dir is required" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="$("$repo/scripts/find-python.sh" torch numpy PIL)" || exit 1
t0=$(date +%s)
late() { [ $(( $(date +%s) - t0 )) -ge "$deadline" ] && { echo "run.sh: skipped (past the ${deadline}s deadline): $*"; return 0; }; return 1; }

(cd "$repo" && go build -o "$dir/encspeed" ./bench/gpu/encspeed && go build -o "$dir/clip" ./cmd/clip) || exit 1

rate() { sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p' | tail -n 1; }
rows=()
precs="fp16 fp32"
[ "$device" = cpu ] && precs=fp32 # the Go side's fp16 is CUDA only
for arch in $archs; do
	[ -z "$e2e_only" ] || break
	file="$dir/$(echo "$arch" | tr '/' '-').pt"
	for prec in $precs; do
		late "$arch $prec" && continue
		n=$iters
		[ "$prec" = fp32 ] && n=$(( (iters + 1) / 2 ))
		x8="$dir/x8-$(basename "$file" .pt).npy"
		tl=$("$py" "$here/torch_speed.py" model --device "$device" --model "$file" --arch "$arch" --precision "$prec" --batch "$batch" \
			--iters "$n" --in "$x8" --out "$dir/ref8.npy" 2>&1 | tee -a /dev/stderr | grep '^torch:')
		gl=$("$dir/encspeed" -device "$device" -model "$file" -precision "$prec" -batch "$batch" -iters "$n" -in "$x8" -ref "$dir/ref8.npy" 2>&1 \
			| tee -a /dev/stderr | grep '^go:')
		rows+=("model alone|$arch|$prec|$(echo "$gl" | rate)|$(echo "$tl" | rate)|$(echo "$gl" | sed -n 's/.*features vs PyTorch: //p')")
	done
done

for spec in "RN50 fp16 --channels-last" "RN50 fp32 --channels-last" "ViT-B/16 fp16 --compile"; do
	read -r arch prec flag <<<"$spec"
	[ -z "$e2e_only" ] || break
	case " $precs " in *" $prec "*) ;; *) continue ;; esac
	case " $archs " in *" $arch "*) ;; *) continue ;; esac
	late "$arch $prec $flag" && continue
	"$py" "$here/torch_speed.py" model --device "$device" --model "$dir/$(echo "$arch" | tr '/' '-').pt" --arch "$arch" --precision "$prec" \
		--batch "$batch" --iters "$iters" $flag 2>&1 | grep '^torch:'
done

images=("$dir"/images/class_00/*.jpg)
eprec=fp16
[ "$device" = cpu ] && eprec=fp32
for arch in $archs; do
	case "$arch" in ViT-*) ;; *) continue ;; esac
	late "end to end $arch" && continue
	file="$dir/$(echo "$arch" | tr '/' '-').pt"
	tl=$("$py" "$here/torch_speed.py" e2e --device "$device" --model "$file" --arch "$arch" --precision "$eprec" --batch "$batch" --workers "$workers" \
		--out "$dir/e2e-torch.npy" "${images[@]}" 2>&1 | tee -a /dev/stderr | grep '^torch:')
	gl=$("$dir/clip" encode-image -model "$file" -device "$device" -precision "$eprec" -batch "$batch" -workers "$workers" -timing \
		-out "$dir/e2e-go.npy" "${images[@]}" 2>&1 | grep -E '^encode: [0-9]+ images' | tee -a /dev/stderr)
	agree=$("$py" -c '
import sys, numpy as np
g, p = np.load(sys.argv[1]), np.load(sys.argv[2])
print("max |diff| / max |ref| = %.2e" % (np.abs(g - p).max() / np.abs(p).max()))' "$dir/e2e-go.npy" "$dir/e2e-torch.npy" 2>&1)
	rows+=("end to end (${#images[@]} JPEGs)|$arch|$eprec|$(echo "$gl" | sed -n 's/.*(\([0-9.]*\) images\/s.*/\1/p')|$(echo "$tl" | rate)|$agree")
done

echo
echo "GPU encoder throughput, batch $batch: images/s"
printf '%-26s %-9s %-5s %10s %10s %7s  %s\n' what arch prec go pytorch ratio "features"
for r in "${rows[@]}"; do
	IFS='|' read -r what arch prec g p d <<<"$r"
	awk -v w="$what" -v a="$arch" -v pr="$prec" -v g="$g" -v p="$p" -v d="$d" 'BEGIN{
		printf "%-26s %-9s %-5s %10.1f %10.1f %6.3fx  %s\n", w, a, pr, g, p, (p > 0) ? g / p : 0, d }'
done
