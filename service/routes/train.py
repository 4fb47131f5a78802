from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from ddpm.limits import RESUMABLE_CHANGES
from ddpm.presets import DEFAULT_PRESET, TRAIN_PRESETS
from ddpm.runs import FAILED, QUEUED, RunDir, new_run_id, run_record
from jobs.records import TRAIN
from service.checkpoints import existing_run
from service.deps import QueueDep, SettingsDep, StoreDep
from service.errors import Conflict, Unavailable, invalid_field, low_space
from service.schemas import Accepted, TrainRequest, job_links
from service.submit import submit

router = APIRouter(tags=["train"])


@router.get("/train/presets", summary="the named training recipes POST /train's preset takes")
def training_presets() -> dict[str, Any]:
    return {"default": DEFAULT_PRESET, "presets": TRAIN_PRESETS}


@router.post(
    "/train",
    status_code=202,
    summary="queue a training run",
    responses={507: {"description": "the data volume has too little free space for a new run"}},
)
def create_training(
    body: TrainRequest, response: Response, settings: SettingsDep, store: StoreDep, queue: QueueDep
) -> Accepted:
    if refused := low_space(settings.data_dir, settings.min_free_mb):
        raise refused
    if body.resume:
        assert body.run_id is not None  # the model's validator guarantees it
        run = existing_run(settings.data_dir, body.run_id)
        config = _resumed_config(body, run.read())
    else:
        assert body.arch is not None
        run = RunDir.of(settings.data_dir, body.run_id or new_run_id(body.arch))
        if run.exists():
            raise Conflict(
                f"run {run.run_id!r} already exists; send resume: true to continue it, or another run_id"
            )
        config = body.engine_config()

    # One active job per run: the lock names the run, so a second request for it gets a 409.
    # The queued run record is written while the run's lock is held and before a worker can see the
    # job, so it never overwrites the record the worker's trainer writes.
    try:
        job_id, created = submit(
            store,
            queue,
            TRAIN,
            {"run_id": run.run_id, "config": config},
            run_id=run.run_id,
            lock=f"run:{run.run_id}",
            before_publish=None if body.resume else lambda _: _write_queued_run(run, config),
        )
    except Unavailable:
        if not body.resume:
            run.settle(FAILED, "the job queue did not accept the training job")
        raise
    if not created:
        raise Conflict(f"run {run.run_id!r} already has an active training job", job_id=job_id)
    response.headers["Location"] = f"/jobs/{job_id}"
    return Accepted(
        job_id=job_id,
        state="queued",
        kind=TRAIN,
        run_id=run.run_id,
        message="queued; follow it at links.job or links.events",
        links={**job_links(job_id, run.run_id), "job": f"/jobs/{job_id}"},
    )


def _resumed_config(body: TrainRequest, record: dict[str, Any]) -> dict[str, Any]:
    """The run's stored config with only the fields a resume may change taken from the request."""
    # An option the run predates had its default then (the engine reads old checkpoints the same way).
    defaults = {name: field.default for name, field in TrainRequest.model_fields.items()}
    stored = dict(record.get("train_config") or {})
    asked = body.model_dump(include=body.model_fields_set - {"run_id", "resume"})
    if "arch" in asked and asked["arch"] != stored.get("arch"):
        raise invalid_field(
            ("body", "arch"),
            f"run {body.run_id!r} trains {stored.get('arch')!r}, not {asked['arch']!r}",
            asked["arch"],
        )
    fixed = sorted(
        k
        for k in asked
        if k not in RESUMABLE_CHANGES and k != "arch" and asked[k] != stored.get(k, defaults.get(k))
    )
    if fixed:
        raise invalid_field(
            ("body", fixed[0]),
            f"cannot change {fixed} when resuming run {body.run_id!r}; only {list(RESUMABLE_CHANGES)} may change",
            asked[fixed[0]],
        )
    return {**stored, **{k: v for k, v in asked.items() if k in RESUMABLE_CHANGES}}


def _write_queued_run(run: RunDir, config: dict[str, Any]) -> None:
    """A run.json in the engine's layout, so GET /runs and `ddpm runs` show the run before it starts."""
    run.write(run_record(run.run_id, config["arch"], config, QUEUED))
