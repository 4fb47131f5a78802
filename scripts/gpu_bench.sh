#!/usr/bin/env bash
# The GPU benchmark of docs/performance.md, in one go (a GPU is lent rarely and briefly).
#
#   scripts/gpu_bench.sh                 # on a CUDA machine: the tables below, ~5-8 minutes on an H200
#   DEVICE=cpu QUICK=1 scripts/gpu_bench.sh   # the same steps at toy sizes on CPU (tests/ddpm/test_bench.py)
#
# Needs only torch, numpy, pillow and safetensors (python -m ddpm.bench.cli, not the service's
# dependencies), so it runs on a GPU image's own python. Output: $OUT (default ./bench-gpu), one .txt
# and one .json per step.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-bench-gpu}
mkdir -p "$OUT"
if [[ -n "${QUICK:-}" ]]; then  # toy sizes: checks the script, not the machine
  SIZE=(--width 0.125 --image-size 16 --pairs 1) ARCHS=pure_unet,convnext BIG=8
  COMPILED=pure_unet COMPILE_BATCHES=4 RATIO=(--ratio-width 0.125 --ratio-batch 2)
else
  SIZE=(--pairs 5) ARCHS=all BIG=128
  COMPILED=baseline,biggan COMPILE_BATCHES=80,128 RATIO=(--ratio-width 1.0 --ratio-batch 80)
fi
failed=0
step() {  # step NAME ARGS...: run one bench, keep its table and rows, remember a failure, go on
  local name=$1; shift
  echo "== $name: $*"
  timeout "${STEP_TIMEOUT:-900}" "$PYTHON" -m ddpm.bench.cli --device "$DEVICE" "${SIZE[@]}" "$@" \
    --json "$OUT/$name.json" 2>&1 | tee "$OUT/$name.txt" || failed=1
}

"$PYTHON" - <<'EOF' | tee "$OUT/machine.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "threads", torch.get_num_threads())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory // 2**20, "MiB")
EOF

# 1. fp32 fast path (channels-last + CUDA graphs on a GPU) against eager: equal within 1e-4, and each
#    image the same bits in a batch of 8 as in a batch of 80.
step fp32 --archs "$ARCHS" --batches 1,8,80 --modes sample --cuda-graphs --check-batch-invariance
# 2. The production GPU path: bf16 autocast, channels-last, CUDA graphs for sampling; training and
#    sampling at batch 1, 80 and the report's 128; hours for 100 CIFAR-10 epochs and a 4096-sample set.
step bf16 --archs "$ARCHS" --batches "1,80,$BIG" --bf16 --cuda-graphs --estimates
# 3. torch.compile on two variants: what it gains and what it costs (first call s = compile time).
step compile --archs "$COMPILED" --batches "$COMPILE_BATCHES" --bf16 --compile --fast-only
# 4. DDIM-50 against DDPM-1000, end to end, at the report's size and grid.
step ratio --archs baseline --batches 80 --modes sample --bf16 --cuda-graphs --fast-only --sampler-ratio "${RATIO[@]}"

echo "tables and rows in $OUT"
exit $failed
