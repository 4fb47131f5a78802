"""Which checkpoint a request means, found from the run folders without loading torch; what the
request got wrong, as HTTP errors."""

from __future__ import annotations

from pathlib import Path

from ddpm.errors import InvalidOption
from ddpm.runs import RunDir, newest_checkpoint
from jobs.specs import CheckpointRef
from service.errors import Conflict, NotFound, invalid_field


def existing_run(data_dir: Path, run_id: str) -> RunDir:
    try:
        run = RunDir.of(data_dir, run_id)
    except InvalidOption:
        run = None
    if run is None or not run.exists():
        raise NotFound(f"no run {run_id!r}; GET /runs lists them")
    return run


def how_to_train(arch: str) -> str:
    return (
        f'train one first: POST /train {{"arch": "{arch}"}} (the report\'s CIFAR-10 run), or for a quick '
        f'offline one {{"arch": "{arch}", "dataset": "digits", "width": 0.25, "max_steps": 500}}'
    )


def resolve_checkpoint(
    data_dir: Path,
    arch: str | None,
    run_id: str | None = None,
    step: int | None = None,
    source: str = "query",
) -> CheckpointRef:
    """The checkpoint a request names: a run's step, a run's newest, or the newest of an arch.

    Raises NotFound (unknown run or step), Conflict (nothing trained yet), a 422 validation error
    located in `source` ("query" or "body") when arch and run disagree or a step has no run.
    """
    if run_id is None:
        if step is not None:
            raise invalid_field(
                (source, "checkpoint"),
                "checkpoint (a step number) needs run as well: a step is per run",
                step,
            )
        if arch is None:
            raise invalid_field(
                (source, "arch"), "give arch (newest checkpoint of that variant) or run", None
            )
        found = newest_checkpoint(data_dir, arch)
        if found is None:
            raise Conflict(f"arch {arch!r} has no finished checkpoint yet; {how_to_train(arch)}")
        run_id, step, _ = found
        return CheckpointRef.of_run(RunDir.of(data_dir, run_id), step)

    run = existing_run(data_dir, run_id)
    record = run.read()
    if arch is not None and record.get("arch") != arch:
        raise invalid_field(
            (source, "arch"), f"run {run_id!r} trains {record.get('arch')!r}, not {arch!r}", arch
        )
    kept = dict(run.kept_checkpoints())
    if not kept:
        raise Conflict(
            f"run {run_id!r} has no kept checkpoint yet (status {record.get('status')!r}); wait for its "
            f"first checkpoint, or {how_to_train(record.get('arch', 'baseline'))}"
        )
    if step is None:
        step = max(kept)
    elif step not in kept:
        raise NotFound(f"run {run_id!r} has no checkpoint at step {step}; kept steps: {sorted(kept)}")
    return CheckpointRef.of_run(run, step)
