#!/usr/bin/env bash
# The FID cost of fewer sampling steps, on CPU: ONE small baseline trained on scikit-learn's digits (16x16),
# then FID at N samples (same seed, so the same starting noise) for DDIM 10/50/100 (eta 0) and DDPM 1000,
# each against the digits reference (all 1,797 digits). Optionally (FLOOR=1) a real-vs-real floor: N real
# digits drawn at random (seeded) against that same reference (they are part of it: not held out).
# N << 2048 makes every FID here biased upward: compare the settings with each other, at this N only.
#   DATA_DIR=/tmp/ddimstudy scripts/ddim_fid_study.sh
# Rerunnable: a finished training run and a stored FID (same run, sampler, steps, N, seed) are reused.
# Shared, oversubscribed CPU: everything runs under `nice -n $NICE` with one BLAS/OpenMP thread
# (THREADS=1: two preempted threads spin against each other; training ran several times slower with 2).
set -euo pipefail
DDPM=${DDPM:-.venv/bin/ddpm}
PYTHON=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-800}          # training steps (about 10-15 minutes on 2 shared cores)
N=${N:-256}
SEED=${SEED:-0}
SETTINGS=${SETTINGS:-"ddim:10 ddim:50 ddim:100 ddpm:1000"}
FLOOR=${FLOOR:-1}
NICE=${NICE:-10}
THREADS=${THREADS:-1}
RUN=${RUN:-ddim-study-s$STEPS}
export DATA_DIR="${DATA_DIR:?set DATA_DIR}"
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
OUT="$DATA_DIR/ddim_fid_study.tsv"
LOG="$DATA_DIR/ddim_fid_study.log"
run() { nice -n "$NICE" "$@"; }
now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }
echo "start $(date -u +%FT%TZ), load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"

status=$("$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["status"], r["step"])' \
  "$DATA_DIR/runs/$RUN/run.json" 2>/dev/null || true)
if [ "$status" != "succeeded $STEPS" ]; then
  [ -z "$status" ] || { echo "run $RUN exists but is '$status', not 'completed $STEPS': remove it" >&2; exit 1; }
  t=$(now)
  run "$DDPM" train --arch baseline --dataset digits --image-size 16 --width 0.25 --batch-size 64 --lr 1e-3 \
    --max-steps "$STEPS" --seed 0 --run-id "$RUN" --no-tensorboard >/dev/null 2>>"$LOG"
  printf "trained %s in %.0f s\n" "$RUN" "$(elapsed "$t")" | tee -a "$LOG"
fi
"$PYTHON" - "$DATA_DIR/runs/$RUN/loss.csv" <<'PY' | tee -a "$LOG"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
loss = [float(r["loss"]) for r in rows]
mean = lambda xs: sum(xs) / len(xs)
print(f"loss: first 20 {mean(loss[:20]):.4f}, steps {len(rows) // 2 - 25}-{len(rows) // 2 + 25} "
      f"{mean(loss[len(rows) // 2 - 25:len(rows) // 2 + 25]):.4f}, last 50 {mean(loss[-50:]):.4f}; "
      f"{len(rows)} steps in {float(rows[-1]['seconds']):.0f} s")
PY
t=$(now)  # the digits reference (1,797 images through Inception), cached after the first time
run "$DDPM" fid-weights --no-download >/dev/null 2>>"$LOG"
run "$DDPM" fid-reference --dataset digits --image-size 16 >/dev/null 2>>"$LOG"
printf "weights + digits reference ready in %.0f s\n" "$(elapsed "$t")" | tee -a "$LOG"

stored() {  # "fid<TAB>sampling_s<TAB>features_s<TAB>frechet_s<TAB>total_s" of a stored result, or nothing
  "$PYTHON" - "$DATA_DIR" "$RUN" "$1" "$2" "$N" "$SEED" <<'PY'
import sys
from pathlib import Path
from ddpm.fid.results import list_results
data_dir, run, sampler, steps, n, seed = sys.argv[1:]
for r in list_results(Path(data_dir)):  # newest first
    if (r.get("run_id"), r.get("sampler"), r.get("seed")) != (run, sampler, int(seed)):
        continue
    if sampler == "ddim" and int(r.get("steps") or 0) != int(steps):
        continue
    if r.get("sampler") == "ddim" and float(r.get("eta") or 0) != 0:
        continue
    fid = {int(s["n"]): s["fid"] for s in r.get("scores", [])}.get(int(n))
    if fid is not None:
        t = r.get("timings", {})
        print("\t".join([f"{fid:.2f}"] + [f"{t.get(k, float('nan')):.0f}" for k in ("sampling", "features", "frechet", "total")]))
        break
PY
}
printf 'setting\tnet_calls\tn\tseed\tfid\tsampling_s\tfeatures_s\tfrechet_s\ttotal_s\twall_s\tload_1min_after\n' > "$OUT"
for setting in $SETTINGS; do
  sampler=${setting%%:*} steps=${setting##*:}
  row=$(stored "$sampler" "$steps")
  wall=reused
  if [ -z "$row" ]; then
    t=$(now)
    if [ "$sampler" = ddim ]; then
      run "$DDPM" fid --run "$RUN" --dataset digits --sampler ddim --steps "$steps" --eta 0 --n "$N" --seed "$SEED" \
        >>"$LOG" 2>/dev/null
    else
      run "$DDPM" fid --run "$RUN" --dataset digits --sampler ddpm --n "$N" --seed "$SEED" >>"$LOG" 2>/dev/null
    fi
    wall=$(printf '%.0f' "$(elapsed "$t")")
    row=$(stored "$sampler" "$steps")
  fi
  printf '%s %s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sampler" "$steps" "$steps" "$N" "$SEED" "$row" "$wall" \
    "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$LOG" >> "$OUT"
done

FLOOR_FILE="$DATA_DIR/ddim_fid_study.floor-n$N-seed$SEED.tsv"  # "fid<TAB>wall_s<TAB>load", kept for reruns
if [ "$FLOOR" = 1 ] && [ ! -s "$FLOOR_FILE" ]; then  # N real digits vs the reference: the best any model gets here
  t=$(now)
  floor=$(run "$PYTHON" - "$DATA_DIR" "$N" "$SEED" <<'PY'
import sys
from pathlib import Path
import torch
from ddpm.data import load_digits
from ddpm.fid.features import feature_statistics, frechet_distance, inception_features, load_inception
from ddpm.fid.reference import load_npz, reference_path
data_dir, n, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
images = load_digits(16).images
pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
mu, sigma = feature_statistics(inception_features(images[pick], load_inception()))
ref_mu, ref_sigma, _ = load_npz(reference_path(data_dir, "digits", 16))
print(f"{frechet_distance(mu, sigma, ref_mu, ref_sigma)[0]:.2f}")
PY
)
  printf '%s\t%.0f\t%s\n' "$floor" "$(elapsed "$t")" "$(cut -d' ' -f1 /proc/loadavg)" > "$FLOOR_FILE"
fi
if [ "$FLOOR" = 1 ]; then
  IFS=$'\t' read -r floor wall load < "$FLOOR_FILE"
  printf 'real digits (floor)\t0\t%s\t%s\t%s\t-\t-\t-\t-\t%s\t%s\n' "$N" "$SEED" "$floor" "$wall" "$load" \
    | tee -a "$LOG" >> "$OUT"
fi
echo "end $(date -u +%FT%TZ), load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
column -t -s $'\t' "$OUT"
