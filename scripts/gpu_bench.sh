#!/usr/bin/env bash
# The GPU benchmark of docs/performance.md, in steps that each fit a 10-minute call (a GPU is lent rarely
# and briefly), the most important figures first.
#
#   scripts/gpu_bench.sh --list                 # the steps and their time estimates
#   scripts/gpu_bench.sh                        # every step, in order (about 40 minutes on an H200)
#   scripts/gpu_bench.sh device equality        # only these steps (one call each fits 10 minutes)
#   DEVICE=cpu QUICK=1 scripts/gpu_bench.sh     # the same steps at toy sizes on CPU (checks the script)
#
# Estimates are for an H200 and are not measured yet: the work of each step (docs/performance.md counts
# it per variant) at a few hundred TFLOP/s, plus building each network and the CPU-side flop count.
# Each step stops after STEP_TIMEOUT seconds (default 570). Needs only torch, numpy, pillow and
# safetensors (python -m ddpm.bench.cli), so it runs on a GPU image's own python. Output: $OUT (default
# ./bench-gpu), one .txt and one .json per step; the exit status is 1 if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-bench-gpu}
if [[ -n "${QUICK:-}" ]]; then  # toy sizes: checks the script, not the machine
  SIZE=(--width 0.125 --image-size 16 --pairs 1) ARCHS=pure_unet,convnext BIG=8
  ARCHS_A=pure_unet ARCHS_B=convnext FEW=pure_unet,convnext COMPILE_A=pure_unet COMPILE_B=convnext
  RATIO=(--ratio-width 0.125 --ratio-batch 2)
else
  SIZE=(--pairs 5) ARCHS=all BIG=128
  ARCHS_A=baseline,pure_unet,res_link,rdn,deep,convnext,anti_aliasing,four_double_conv
  ARCHS_B=biggan,biggan_no_attention,biggan_res_link,biggan_res_link_aa,refinenet,ddpm_original
  FEW=baseline,convnext,biggan COMPILE_A=baseline COMPILE_B=biggan
  RATIO=(--ratio-width 1.0 --ratio-batch 80)
fi
LISTING=
[[ "${1:-}" == "--list" ]] && { LISTING=1; shift; }
SELECTED=("$@")
failed=0
[[ -z "$LISTING" ]] && mkdir -p "$OUT"

wanted() {  # wanted NAME: no steps named on the command line, or NAME is one of them
  [[ ${#SELECTED[@]} -eq 0 ]] || [[ " ${SELECTED[*]} " == *" $1 "* ]]
}

step() {  # step NAME MINUTES WHAT -- BENCH-ARGS...: run one bench, keep its table and rows, go on if it fails
  local name=$1 minutes=$2 what=$3; shift 4
  wanted "$name" || return 0
  if [[ -n "$LISTING" ]]; then printf '%-16s ~%2s min  %s\n' "$name" "$minutes" "$what"; return 0; fi
  echo "== $name (about $minutes min on an H200): $what"
  echo "   python -m ddpm.bench.cli --device $DEVICE ${SIZE[*]} $*"
  local started=$SECONDS
  timeout "${STEP_TIMEOUT:-570}" "$PYTHON" -m ddpm.bench.cli --device "$DEVICE" "${SIZE[@]}" "$@" \
    --json "$OUT/$name.json" 2>&1 | tee "$OUT/$name.txt" || failed=1
  echo "== $name took $((SECONDS - started)) s"
}

# 1. The device: torch, its CUDA, the driver, the GPU. Nothing else is worth running if this fails.
if wanted device; then
  if [[ -n "$LISTING" ]]; then
    printf '%-16s ~%2s min  %s\n' device 1 "torch, CUDA, driver and GPU; stops the script if the device cannot be used"
  else
    echo "== device: $DEVICE"
    { "$PYTHON" -m ddpm.device "$DEVICE" \
        && "$PYTHON" -c "import torch; print('threads', torch.get_num_threads(), 'cudnn', torch.backends.cudnn.version())" \
        && { command -v nvidia-smi >/dev/null && nvidia-smi || true; }; } 2>&1 | tee "$OUT/device.txt"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "the device cannot be used; stopping" >&2; exit 2; }
  fi
fi

# 2. Correctness first: every variant's fast path against eager with TF32 off (relative error under
#    1e-4, sampling eps and training gradients), and each image the same bits in a batch of 8 as in one
#    of 80 and wherever it sits (the promise request batching rests on; docs/architecture.md).
step equality 3 "fast path = eager at IEEE fp32; images independent of their batch" -- \
  --archs "$ARCHS" --batches "1,$BIG" --pairs 1 --check-batch-invariance
# 3. The baseline row: the engine's CUDA path (TF32, fixed batch of 128, NCHW) against eager.
step baseline 2 "baseline, the engine's path vs eager, sampling and training at batch 1/80/$BIG" -- \
  --archs baseline --batches "1,80,$BIG"
# 4. What the opt-in options gain, on three variants: bf16 autocast (sampling and training), CUDA graphs.
step bf16 2 "bf16 autocast on the engine's path, sampling and training" -- \
  --archs "$FEW" --batches "80,$BIG" --bf16 --fast-only
step graphs 2 "CUDA graphs for sampling calls (launch overhead at small batches)" -- \
  --archs "$FEW" --batches "1,8,80" --modes sample --cuda-graphs --fast-only
# 5. channels-last or not on CUDA (GroupNorm computes in NCHW there): decides DDPM_CUDA_CHANNELS_LAST.
step layout-nchw 2 "NCHW, sampling and training" -- \
  --archs "$FEW" --batches "$BIG" --channels-last off --fast-only
step layout-nhwc 2 "channels-last, sampling and training" -- \
  --archs "$FEW" --batches "$BIG" --channels-last on --fast-only
# 6. Every variant on the engine's path, with hours for 100 CIFAR-10 epochs and a 4096-image set.
step all-a 5 "every variant, first half: engine path vs eager, estimates" -- \
  --archs "$ARCHS_A" --batches "1,80,$BIG" --estimates
step all-b 5 "every variant, second half" -- \
  --archs "$ARCHS_B" --batches "1,80,$BIG" --estimates
# 7. torch.compile: what it gains, what it costs (first call s = compile time), that it compiles each
#    network once (fixed shapes), and that compiled images are still independent of their batch. One
#    compilation (sampling) or two (training: forward and backward) per step, to stay under the limit.
step compile-a 5 "torch.compile, $COMPILE_A, sampling" -- \
  --archs "$COMPILE_A" --batches "$BIG" --modes sample --compile --fast-only --check-batch-invariance
step compile-b 5 "torch.compile, $COMPILE_B, sampling" -- \
  --archs "$COMPILE_B" --batches "$BIG" --modes sample --compile --fast-only --check-batch-invariance
step compile-train 5 "torch.compile, $COMPILE_A, training" -- \
  --archs "$COMPILE_A" --batches "$BIG" --modes train --compile --fast-only
# 8. DDIM-50 against DDPM-1000, end to end, at the report's size and grid.
step ratio 2 "DDIM-50 vs DDPM-1000 wall time, full width, batch 80" -- \
  --archs baseline --batches 80 --modes sample --fast-only --sampler-ratio "${RATIO[@]}"

[[ -n "$LISTING" ]] || echo "tables and rows in $OUT"
exit $failed
