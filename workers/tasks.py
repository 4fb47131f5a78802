"""The job kinds (the classifier study's two run workers/classifier_jobs.py). Each task takes only a job
id: its parameters are in the job record.

The engine (and so torch) is imported inside the task bodies, in the pool process that runs them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from celery import Task

from jobs import telemetry
from jobs.fid_reference import ReferenceRequest
from jobs.records import (
    ANALYSIS,
    CANCELLED,
    CLASSIFIER,
    FID,
    FID_REFERENCE,
    SAMPLE,
    SUCCEEDED,
    TASK_NAMES,
    TRAIN,
)
from jobs.specs import CheckpointRef, checkpoint_samples_link, sampler_from_params
from jobs.store import JobStore
from workers.app import app, job_store, publish_job, settings
from workers.batching import run_sampling
from workers.classifier_jobs import run_analysis, run_classifier_training
from workers.fid_progress import FidProgress
from workers.outcomes import Outcome, low_space_outcome, outcome_of, record_outcome, settle_run
from workers.progress import JobLease, JobReporter
from workers.reference_jobs import await_reference, reference_share, run_fid_reference
from workers.study_hooks import advance_study_of
from workers.throughput import SAMPLE_PHASE, TRAIN_PHASE, SamplingMeter, Throughput

log = logging.getLogger("workers")

Handler = Callable[[dict[str, Any], JobReporter], Outcome]

_stores: dict[int, JobStore] = {}


def _store() -> JobStore:
    """One Redis client per process (a prefork child must not share its parent's sockets)."""
    pid = os.getpid()
    if pid not in _stores:
        _stores[pid] = job_store()
    return _stores[pid]


def run_job(task: Task, job_id: str, handler: Handler) -> None:
    """Take the job's lease unless it was cancelled, finished or is owned by a live worker, run it,
    record how it ended. A redelivered copy of a running job is dropped here ('busy')."""
    run_job_as(task.request.hostname or socket.gethostname(), job_id, handler)


def run_job_as(
    worker: str, job_id: str, handler: Handler, wrap: Callable[[JobReporter], Any] | None = None
) -> None:
    """run_job's body, for `worker`: also how an FID job runs the queued reference job it waits on
    (`wrap` then mirrors the reference job's reports onto the waiting job's record)."""
    store = _store()
    token = uuid.uuid4().hex
    started = store.start(job_id, worker, token, settings.lease_s, settings.max_attempts)
    if started not in ("running", "resumed"):
        log.info("job %s not run: it is %s", job_id, started)
        if started == "exhausted":  # failed just now: started too often already
            settle_run(settings.data_dir, store.get(job_id) or {})
            advance_study_of(store, publish_job, settings.data_dir, store.get(job_id) or {})
        return
    job = store.get(job_id)
    assert job is not None
    log.info("job %s (%s) %s on %s, attempt %s", job_id, job["kind"], started, worker, job.get("attempts"))
    reporter = JobReporter(store, job_id, settings.progress_interval_s, token)
    if wrap is not None:
        reporter = wrap(reporter)
    with JobLease(store, job_id, token, settings.lease_s, settings.job_heartbeat_s):
        try:
            # Refused before it writes anything when the volume is nearly full (DDPM_MIN_FREE_MB).
            outcome = low_space_outcome(settings.data_dir, settings.min_free_mb) or handler(job, reporter)
        except Exception as err:
            outcome = outcome_of(err, job_id, settings.data_dir)
    settle_run(settings.data_dir, job, outcome)
    record_outcome(store, job_id, token, outcome, settings.lease_s)
    advance_study_of(store, publish_job, settings.data_dir, job)  # a study's next stage, if it has one


@app.task(name=TASK_NAMES[TRAIN], bind=True)
def train_task(self: Task, job_id: str) -> None:
    run_job(self, job_id, run_training)


@app.task(name=TASK_NAMES[SAMPLE], bind=True)
def sample_task(self: Task, job_id: str) -> None:
    run_job(self, job_id, run_sampling)


@app.task(name=TASK_NAMES[FID], bind=True)
def fid_task(self: Task, job_id: str) -> None:
    run_job(self, job_id, run_fid)


@app.task(name=TASK_NAMES[FID_REFERENCE], bind=True)
def fid_reference_task(self: Task, job_id: str) -> None:
    run_job(self, job_id, run_fid_reference)


@app.task(name=TASK_NAMES[ANALYSIS], bind=True)
def analysis_task(self: Task, job_id: str) -> None:
    run_job(self, job_id, run_analysis)


@app.task(name=TASK_NAMES[CLASSIFIER], bind=True)
def classifier_task(self: Task, job_id: str) -> None:
    run_job(self, job_id, run_classifier_training)


def run_training(job: dict[str, Any], report: JobReporter) -> Outcome:
    from ddpm.tensorboard_log import TensorBoardLog, TensorBoardOptions
    from ddpm.training import TrainConfig, TrainHooks, TrainProgress, train

    run_id = job["params"]["run_id"]
    config = TrainConfig.from_dict(job["params"]["config"])
    throughput = Throughput.of(report.store, TRAIN, TRAIN_PHASE)

    def on_progress(p: TrainProgress) -> None:
        report(
            force=p.step == p.total_steps,
            progress=p.fraction,
            step=p.step,
            total=p.total_steps,
            loss=p.loss,
            eta_s=p.eta,
            message=f"training: epoch {p.epoch}, step {p.step}/{p.total_steps}",
            **throughput.add(images=config.batch_size),  # a step's batch (the epoch's last may be short)
        )

    def on_checkpoint(entry: dict[str, Any]) -> None:
        report(force=True, message=f"kept a checkpoint at step {entry['step']}")

    hooks = TrainHooks(
        on_progress=[on_progress], on_checkpoint=[on_checkpoint], should_stop=report.cancel_requested
    )
    tensorboard = TensorBoardLog(
        settings.data_dir,
        TensorBoardOptions(
            enabled=settings.tensorboard,
            samples=settings.tensorboard_samples,
            sample_steps=settings.tensorboard_sample_steps,
        ),
        device=settings.device,
    )
    try:
        result = train(
            config,
            settings.data_dir,
            run_id=run_id,
            device=settings.device,
            hooks=tensorboard.attach(hooks),
            resume=True,
        )
    finally:
        throughput.flush()
        tensorboard.close()
    checkpoints = [
        {**c, "links": {"samples": checkpoint_samples_link(run_id, c["step"])}} for c in result.checkpoints
    ]
    done = result.status == SUCCEEDED
    last = f"; its last checkpoint is step {checkpoints[-1]['step']}" if checkpoints else ""
    return {
        "state": SUCCEEDED if done else CANCELLED,
        "message": f"{'finished' if done else 'cancelled'} at step {result.step}/{result.total_steps}{last}",
        "progress": result.step / result.total_steps,
        "step": result.step,
        "total": result.total_steps,
        "loss": result.final_loss,
        "result": {
            "run_id": run_id,
            "status": result.status,
            "step": result.step,
            "total_steps": result.total_steps,
            "final_loss": result.final_loss,
            "checkpoints": checkpoints,
            "links": {
                "run": f"/runs/{run_id}",
                **({"samples": checkpoints[-1]["links"]["samples"]} if checkpoints else {}),
            },
        },
    }


def run_fid(job: dict[str, Any], report: JobReporter) -> Outcome:
    from ddpm.checkpoints import read_meta
    from ddpm.fid import evaluate_checkpoint
    from ddpm.fid.options import MetricOptions
    from ddpm.fid.results import save_result

    params = job["params"]
    ref = CheckpointRef.from_dict(params["checkpoint"])
    sampler = sampler_from_params(params)

    # The data set's statistics come from their own job (shared with other FID jobs); this one waits.
    image_size = int(read_meta(ref.path(settings.data_dir)).get("train_config", {}).get("image_size", 32))
    worker = job.get("worker") or socket.gethostname()
    n_max = max(params["n_samples"]) if isinstance(params["n_samples"], list) else params["n_samples"]
    share = reference_share(params["dataset"], settings.data_dir, n_max)
    waited = await_reference(
        job,
        report,
        ReferenceRequest(params["dataset"], image_size),
        lambda reference_id, wrap: run_job_as(worker, reference_id, run_fid_reference, wrap),
        share,
    )

    sampling = SamplingMeter(Throughput.of(report.store, FID, SAMPLE_PHASE), n_max, params["batch_size"])
    # Every phase's share in proportion to its expected cost (workers/fid_progress.py).
    tracker = FidProgress(params["dataset"], start=share if waited else 0.0)
    report(force=True, **tracker.starting())

    def progress(phase: str, done: int, total: int) -> None:
        report.raise_if_cancelled()
        report(
            force=done == total,
            **tracker.update(phase, done, total),
            # Throughput is the sampler's; other phases say which they are, so /metrics skips them.
            **(sampling.update(done, total) if phase == "sampling" else {"rate_phase": phase}),
        )

    outcome = evaluate_checkpoint(
        ref.path(settings.data_dir),
        params["n_samples"],
        params["seed"],
        sampler=sampler,
        dataset=params["dataset"],
        data_dir=settings.data_dir,
        device=settings.device,
        batch_size=params["batch_size"],
        progress=progress,
        metrics=MetricOptions.from_params(params),
        on_plan=tracker.set_plan,
        efficiency=_last_fid_efficiency(report.store),
    )
    fid = {str(n): float(value) for n, value in sorted(outcome.fid.items())}
    # The evaluator's own record (every metric per N, reference file) plus what the service knows of the job.
    record = {
        **outcome.to_record(),
        "arch": ref.arch,
        "run_id": ref.run_id,
        "step": ref.step,
        "epoch": ref.epoch,
        "weights": ref.weights,
        "n_samples": params["n_samples"],
        **sampler.to_params(),
        "seed": params["seed"],
        "dataset": params["dataset"],
        "created": time.time(),
        "job_id": job["id"],
    }
    result_id = save_result(settings.data_dir, record)
    phases = outcome.throughput.get("phases", {})
    try:  # /metrics' per-phase gauges; the stored result already has the figures
        telemetry.record_fid_phases(report.store.client, report.store.prefix, phases)
    except redis.RedisError as err:
        log.warning("FID phase figures not written to /metrics (%s)", err)
    summary = ", ".join(f"N={n}: {value:.2f}" for n, value in fid.items())
    return {
        "state": SUCCEEDED,
        "message": f"FID {summary}",
        "progress": 1.0,
        "result": {
            "result_id": result_id,
            "fid": fid,
            "warnings": record["warnings"],
            "unavailable": record["unavailable"],
            "throughput": outcome.throughput,
            **waited,  # the reference statistics job it waited on, and for how long
            "links": {
                "table": "/fid",
                "result": f"/fid/results/{result_id}",
                **({"reference_job": f"/jobs/{waited['reference_job']}"} if waited else {}),
            },
        },
    }


def _last_fid_efficiency(store: JobStore) -> dict[str, float]:
    """The last finished FID job's sampling and Inception fractions of the matmul rate (its measured
    cost ratio, which weighs this job's phases), or {} when there is none yet or Redis does not answer."""
    try:
        recorded = telemetry.read_recorded(store.client, store.prefix).fid_phases
    except redis.RedisError:
        return {}
    return {
        phase: value
        for (phase, measure), value in recorded.items()
        if measure == "fraction" and phase in ("sampling", "features") and value > 0
    }
