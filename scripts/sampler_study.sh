#!/usr/bin/env bash
# Samplers against FID on ONE checkpoint (docs/performance.md, "Samplers"): the same seed and N (so the
# same starting noise) for DDPM-1000, DDIM 10/20/50/100, DPM-Solver++(2M) 10/15/20/30 and Heun 10/18
# steps (19/35 network calls); FID with its 95% bootstrap interval and KID, against the checkpoint's own
# data set (digits: all 1,797), with each evaluation's sampling, feature and total time.
#   DATA_DIR=/work/artifacts/samplers RUN=samplers-digits scripts/sampler_study.sh
#   DATA_DIR=... CHECKPOINT=.../step-00004000.safetensors N=64 SAMPLERS=ddim:10,heun:3 scripts/sampler_study.sh
# DATASET=folder:<name> scores against another reference than the checkpoint's own data set.
# RUN picks its newest kept checkpoint ONCE, at the start; the table names it. Rerunnable: a sampler
# already stored for this checkpoint, N, seed and metric options is skipped (ddpm.fid.sampler_study).
# Shared, oversubscribed CPU: everything runs under `nice -n $NICE` with one BLAS/OpenMP thread per
# process; JOBS=K runs K study processes, each every K-th sampler of the list (default 1).
set -euo pipefail
DDPM=${DDPM:-.venv/bin/ddpm}
PYTHON=${PYTHON:-.venv/bin/python}
N=${N:-512}
SEED=${SEED:-0}
SAMPLERS=${SAMPLERS:-}  # default: ddpm.fid.sampler_study's DEFAULT_SAMPLERS (criterion first)
BOOTSTRAP=${BOOTSTRAP:-100}
NICE=${NICE:-10}
THREADS=${THREADS:-1}
JOBS=${JOBS:-1}
export DATA_DIR="${DATA_DIR:?set DATA_DIR}"
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
LOG="$DATA_DIR/sampler_study.log"
run() { nice -n "$NICE" "$@"; }

if [ -z "${CHECKPOINT:-}" ]; then
  CHECKPOINT=$("$PYTHON" - "${RUN:?set RUN or CHECKPOINT}" <<'PY'
import sys
from ddpm.runs import RunDir
from ddpm.settings import data_dir
kept = RunDir.of(data_dir(), sys.argv[1]).kept_checkpoints()
if not kept:
    sys.exit(f"run {sys.argv[1]!r} has no kept checkpoint yet")
print(kept[-1][1])
PY
)
fi
echo "start $(date -u +%FT%TZ), load: $(cut -d' ' -f1-3 /proc/loadavg), checkpoint $CHECKPOINT, N=$N seed $SEED" \
  | tee -a "$LOG"

start=$(date +%s)  # the Inception weights (built offline if needed) and the reference, cached afterwards
run "$DDPM" fid-weights --no-download >/dev/null 2>>"$LOG"
read -r own size < <("$PYTHON" -c 'import sys; from pathlib import Path; from ddpm.checkpoints import read_meta
c = read_meta(Path(sys.argv[1]))["train_config"]; print(c["dataset"], c.get("image_size", 32))' "$CHECKPOINT")
DATASET=${DATASET:-$own}  # the reference: the checkpoint's own data set unless DATASET names another
run "$DDPM" fid-reference --dataset "$DATASET" --image-size "$size" >/dev/null 2>>"$LOG"
echo "weights + $DATASET reference ready in $(($(date +%s) - start)) s" | tee -a "$LOG"

args=(--checkpoint "$CHECKPOINT" --n "$N" --seed "$SEED" --bootstrap "$BOOTSTRAP" --dataset "$DATASET")
[ -z "$SAMPLERS" ] || args+=(--samplers "$SAMPLERS")
pids=()
for part in $(seq 1 "$JOBS"); do
  run "$PYTHON" -m ddpm.fid.sampler_study run "${args[@]}" --part "$part/$JOBS" 2>>"$LOG" | tee -a "$LOG" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
"$PYTHON" -m ddpm.fid.sampler_study table "${args[@]}" | tee -a "$LOG"
echo "end $(date -u +%FT%TZ), load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$LOG"
exit $status
