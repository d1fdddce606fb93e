#!/usr/bin/env bash
# One epoch of 16-shot ImageNet-sized work on a GPU (1,000 classes x 16 shots
# = 16,000 images, batch 32: 500 steps), Go against official-style PyTorch
# loops, for CoOp, CLIP-Adapter and Tip-Adapter-F, with RN50 (random weights
# in the official format) in fp16, plus a sweep GPU-hours estimate. Not run in
# the session that wrote it (no GPU there): a prepared script.
#
#   bench/gpu/epoch.sh -dir DIR [-device cuda] [-steps 20] [-iters 20] [-prec fp16]
#                      [-sweep-epochs "coop=50 clip-adapter=200 tip-adapter-f=20"] [-seeds 3]
#
# DIR receives the random RN50 archive (bench/encoder/make_model.py) and the
# logs. Go must be set up against $PYTHON's libtorch (see bench/gpu/run.sh).
#
# What is measured (each a timed loop after warm-up, CUDA-synchronised):
#   image encoder alone, batch 256: Go (bench/gpu/encspeed) and PyTorch eager
#     (bench/gpu/torch_speed.py model), images/s and PyTorch's peak memory;
#   CoOp's text step, 1,000 classes (16 context vectors, class token at the
#     end, batch 32): Go (bench/coop) with the text savings, with
#     max_text_batch 250 (chunks with recomputation), and without the savings;
#     PyTorch (bench/coop/torch_coop.py) with the step's 32 images encoded
#     every step, as CoOp's trainer does, and without them;
#   peak GPU memory of each command: the largest memory.used nvidia-smi
#     reports while it runs (sampled every 100 ms), less the idle baseline.
# What is derived (an epoch = 500 steps of 32 images):
#   PyTorch CoOp      = 500 x (PyTorch CoOp step with images)
#   PyTorch CLIP-Adapter, Tip-Adapter-F = 16,000 images / PyTorch image rate
#                       (both official loops encode every step's images; the
#                       adapters' own work is a few small matrix products)
#   Go CoOp           = 16,000 / Go image rate (features encoded once: the
#                       first epoch; later epochs reuse them) + 500 x Go step
#   Go CLIP-Adapter, Tip-Adapter-F = 16,000 / Go image rate (first epoch),
#                       then feature-level steps on cached features (a few
#                       seconds per epoch, counted as 0)
#   sweep GPU-hours   = Σ over methods of epochs x epoch time x seeds, at 16
#                       shots (fewer shots scale an epoch down in proportion);
#                       the Go figure counts one first epoch per run plus
#                       cached epochs.
set -uo pipefail
dir="" device=cuda steps=20 iters=20 prec=fp16 seeds=3
sweep_epochs="coop=50 clip-adapter=200 tip-adapter-f=20"
while [ $# -gt 0 ]; do
	case "$1" in
	-dir) dir="$2"; shift 2 ;;
	-device) device="$2"; shift 2 ;;
	-steps) steps="$2"; shift 2 ;;
	-iters) iters="$2"; shift 2 ;;
	-prec) prec="$2"; shift 2 ;;
	-sweep-epochs) sweep_epochs="$2"; shift 2 ;;
	-seeds) seeds="$2"; shift 2 ;;
	*) echo "epoch.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$dir" ] || { echo "epoch.sh: -dir is required" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="$("$repo/scripts/find-python.sh" torch numpy)" || exit 1
mkdir -p "$dir"
(cd "$repo" && go build -o "$dir/encspeed" ./bench/gpu/encspeed && go build -o "$dir/coopbench" ./bench/coop) || exit 1
"$py" "$repo/bench/encoder/make_model.py" "$dir" RN50 >&2 || exit 1
half=""; [ "$prec" = fp16 ] && half="--half"

# peak CMD...: runs CMD (its output to stdout) and appends "peak_MiB N" with
# the largest GPU memory in use while it ran, less the idle baseline.
peak() {
	local base f pid
	base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -1)
	f=$(mktemp)
	( while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -1; sleep 0.1; done ) >"$f" &
	pid=$!
	"$@"
	kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
	sort -n "$f" | tail -1 | awk -v b="${base:-0}" '{print "peak_MiB", $1 - b}'
	rm -f "$f"
}
num() { awk -v k="$1" '$1 == k {print $2}' | tail -1; }

echo "== image encoder, RN50 $prec, batch 256" >&2
go_img=$(peak "$dir/encspeed" -device "$device" -model "$dir/RN50.pt" -precision "$prec" -batch 256 -iters "$iters" 2>&1 | tee -a "$dir/log" \
	| sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p' | tail -1)
py_img=$("$py" "$here/torch_speed.py" model --device "$device" --model "$dir/RN50.pt" --arch RN50 --precision "$prec" --batch 256 --iters "$iters" 2>&1 \
	| tee -a "$dir/log" | grep '^torch:' | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p' | tail -1)

echo "== CoOp text step, 1000 classes" >&2
"$dir/coopbench" -classes 1000 -tokens "$dir/tokens-1000.npy" || exit 1
go_on=$(peak "$dir/coopbench" -device "$device" -precision "$prec" -classes 1000 -steps "$steps" 2>&1 | tee -a "$dir/log")
go_chunk=$(peak "$dir/coopbench" -device "$device" -precision "$prec" -classes 1000 -steps "$steps" -max-text-batch 250 2>&1 | tee -a "$dir/log")
go_off=$(peak "$dir/coopbench" -device "$device" -precision "$prec" -classes 1000 -steps "$steps" -savings=false 2>&1 | tee -a "$dir/log")
py_img_step=$(peak "$py" "$repo/bench/coop/torch_coop.py" "$dir/tokens-1000.npy" --device "$device" $half --images --steps "$steps" 2>&1 | tee -a "$dir/log")
py_txt_step=$(peak "$py" "$repo/bench/coop/torch_coop.py" "$dir/tokens-1000.npy" --device "$device" $half --steps "$steps" 2>&1 | tee -a "$dir/log")

r() { echo "$1" | num "$2"; }
awk -v gi="$go_img" -v pi="$py_img" \
	-v gon="$(r "$go_on" steps/s)" -v gonm="$(r "$go_on" peak_MiB)" \
	-v gch="$(r "$go_chunk" steps/s)" -v gchm="$(r "$go_chunk" peak_MiB)" \
	-v gof="$(r "$go_off" steps/s)" -v gofm="$(r "$go_off" peak_MiB)" \
	-v pis="$(r "$py_img_step" steps/s)" -v pism="$(r "$py_img_step" peak_MiB)" \
	-v pts="$(r "$py_txt_step" steps/s)" -v ptsm="$(r "$py_txt_step" peak_MiB)" \
	-v sweep="$sweep_epochs" -v seeds="$seeds" -v prec="$prec" 'BEGIN{
	n = 16000; steps = 500
	printf "\nRN50 %s, 16-shot ImageNet-sized epoch (16,000 images, 500 steps of 32)\n", prec
	printf "%-50s %12s %12s\n", "measured", "rate", "peak MiB"
	printf "%-50s %9.1f i/s %12s\n", "image encoder, Go", gi, "-"
	printf "%-50s %9.1f i/s %12s\n", "image encoder, PyTorch eager", pi, "-"
	printf "%-50s %9.3f /s %12d\n", "CoOp text step, Go (savings)", gon, gonm
	printf "%-50s %9.3f /s %12d\n", "CoOp text step, Go (savings, max_text_batch 250)", gch, gchm
	printf "%-50s %9.3f /s %12d\n", "CoOp text step, Go (no savings, 77 positions)", gof, gofm
	printf "%-50s %9.3f /s %12d\n", "CoOp step, PyTorch (32 images + text)", pis, pism
	printf "%-50s %9.3f /s %12d\n", "CoOp text step, PyTorch (77 positions)", pts, ptsm
	enc_go = n / gi; enc_py = n / pi
	e["coop", "go"] = enc_go + steps / gon;     c["coop", "go"] = steps / gon
	e["coop", "py"] = steps / pis;              c["coop", "py"] = e["coop", "py"]
	e["clip-adapter", "go"] = enc_go;           c["clip-adapter", "go"] = 0
	e["clip-adapter", "py"] = enc_py;           c["clip-adapter", "py"] = enc_py
	e["tip-adapter-f", "go"] = enc_go;          c["tip-adapter-f", "go"] = 0
	e["tip-adapter-f", "py"] = enc_py;          c["tip-adapter-f", "py"] = enc_py
	printf "\n%-16s %14s %14s %14s %12s %12s\n", "method", "Go 1st epoch", "Go later", "PyTorch epoch", "ratio 1st", "images/s Go"
	split(sweep, parts, " ")
	gh = 0; ph = 0
	for (i in parts) {
		split(parts[i], kv, "="); m = kv[1]; ep = kv[2]
		printf "%-16s %12.1f s %12.1f s %12.1f s %11.1fx %12.0f\n", m, e[m, "go"], c[m, "go"], e[m, "py"], e[m, "py"] / e[m, "go"], n / e[m, "go"]
		gh += (e[m, "go"] + (ep - 1) * c[m, "go"]) * seeds / 3600
		ph += ep * e[m, "py"] * seeds / 3600
	}
	printf "\nsweep estimate, ImageNet 16 shots, %d seeds, epochs %s: Go %.1f GPU-hours, PyTorch %.1f GPU-hours (%.1fx)\n", seeds, sweep, gh, ph, ph / gh
	printf "(Go CLIP-Adapter/Tip-Adapter-F later epochs run on cached features and are counted as 0 here; fewer shots scale each epoch down)\n"
}'
