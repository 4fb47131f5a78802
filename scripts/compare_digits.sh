#!/usr/bin/env bash
# A short, same-budget CPU comparison of variants on scikit-learn's digits (16x16, tiny widths):
# each arch trains STEPS steps from the same seed, then FID at N samples (DDIM-50) against the digits.
# CPU-scale numbers do NOT predict CIFAR-10 rankings; this checks that every variant trains and samples.
#   DATA_DIR=/tmp/cmp scripts/compare_digits.sh [arch ...]
set -euo pipefail
DDPM=${DDPM:-.venv/bin/ddpm}
PYTHON=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-300}
N=${N:-512}
WIDTH=${WIDTH:-0.25}
ARCHS=("$@")
[ ${#ARCHS[@]} -gt 0 ] || ARCHS=(baseline biggan res_link refinenet biggan_res_link)
OUT="${DATA_DIR:?set DATA_DIR}/compare_digits.tsv"
printf 'arch\tparams_at_width\tsteps\tfinal_loss_mean_last50\ttrain_s\tfid_n%s\tfid_s\n' "$N" > "$OUT"
stored_fid() {  # the stored FID at N of run $1, or nothing when the run has none yet
  "$PYTHON" - "$DATA_DIR" "$1" "$N" <<'PY'
import sys
from pathlib import Path
from ddpm.fid.results import list_results
found = [r for r in list_results(Path(sys.argv[1])) if r.get("run_id") == sys.argv[2]]
print({int(s["n"]): s["fid"] for r in found for s in r.get("scores", [])}.get(int(sys.argv[3]), ""))
PY
}
for arch in "${ARCHS[@]}"; do
  run="cmp-${arch//+/.}-s${STEPS}"
  if [ ! -f "$DATA_DIR/runs/$run/run.json" ]; then  # rerunning the script reuses finished runs
    "$DDPM" train --arch "$arch" --dataset digits --image-size 16 --width "$WIDTH" --batch-size 64 --lr 1e-3 \
      --max-steps "$STEPS" --seed 0 --run-id "$run" 2>/dev/null | head -1
  fi
  trained=$(date +%s.%N)
  fid=$(stored_fid "$run")
  if [ -z "$fid" ]; then
    "$DDPM" fid --run "$run" --n "$N" --sampler ddim --steps 50 --seed 0 >/dev/null 2>&1
    fid=$(stored_fid "$run")
  fi
  done_at=$(date +%s.%N)
  stats=$("$PYTHON" - "$DATA_DIR/runs/$run" "$arch" "$WIDTH" <<'PY'
import csv, sys
import models
rows = list(csv.DictReader(open(sys.argv[1] + "/loss.csv")))
losses = [float(r["loss"]) for r in rows][-50:]
params = sum(p.numel() for p in models.build_model(sys.argv[2], width=float(sys.argv[3])).parameters())
train_s = float(rows[-1]["seconds"])
print(f"{params}\t{len(rows)}\t{sum(losses) / len(losses):.4f}\t{train_s:.0f}")
PY
)
  printf '%s\t%s\t%.2f\t%.0f\n' "$arch" "$stats" "$fid" "$(echo "$done_at - $trained" | bc)" >> "$OUT"
done
column -t -s $'\t' "$OUT"
