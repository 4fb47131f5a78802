"""The Celery app: `celery -A workers.app worker` (or `ddpm worker`), one per GPU.

GPU jobs are long and heavy, so: one process per worker (concurrency 1), prefetch 1 (a busy worker
does not hoard queued jobs another GPU could start), late acks (a message whose worker dies is not
lost with it). Which worker runs a job is decided by the job's lease in our own Redis record
(jobs/store.py), not by the broker: a redelivered copy of a running job is dropped, and a job whose
worker died is re-queued by the sweep below. What users see never comes from Celery's result backend.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
from typing import Any

from celery import Celery, signals
from kombu import Queue

from ddpm.compile_policy import COMPILE_ENV, compile_cache_dir
from ddpm.device import DeviceReport, cpu_report, probe_in_subprocess
from ddpm.errors import InvalidOption
from jobs.mirror import JobMirror, prune_now_and_then, restore_if_lost
from jobs.orphans import sweep_orphans_now_and_then
from jobs.publish import broker_options, consumed_queues, publish
from jobs.registry import WorkerRegistry
from jobs.settings import get_settings
from jobs.store import JobStore
from workers.outcomes import settle_run
from workers.study_hooks import sweep_studies_now_and_then

log = logging.getLogger("workers")

settings = get_settings()

app = Celery("ddpm", broker=settings.redis_url, backend=settings.redis_url, include=["workers.tasks"])
app.conf.update(
    task_default_queue=settings.queue,
    # Trainings and interactive jobs have their own queues (jobs/publish.py); DDPM_CONSUME picks which
    # this worker reads (both by default).
    task_queues=[Queue(name) for name in consumed_queues(settings.queue, settings.consume)],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_concurrency=1,
    task_ignore_result=True,  # results live in our job records
    task_track_started=False,
    broker_transport_options=broker_options(settings),
    broker_connection_retry_on_startup=True,
    # A Redis that cannot save (its disk is full) refuses writes with MISCONF, BRPOP included: retry
    # the consumer's connection as for a lost one, instead of the worker exiting on that error, and
    # never give up (it recovers by itself once Redis can write again).
    broker_channel_error_retry=True,
    broker_connection_max_retries=None,
    # A Redis blip must not kill an hours-long training: the job keeps running, and its record (not
    # the unacked message) decides whether a redelivery runs it again (only if its heartbeat stopped).
    worker_cancel_long_running_tasks_on_connection_loss=False,
    # A pool process killed mid-job (OOM, SIGKILL) acks its message; the sweep re-queues the job with
    # its attempt counted, so a job that keeps killing workers ends instead of looping.
    task_reject_on_worker_lost=False,
    worker_hijack_root_logger=False,
    task_serializer="json",
    accept_content=["json"],
)

HEARTBEAT_TTL_FACTOR = 3  # a worker key outlives two missed beats
# Exit status of a worker that cannot have the device it was configured for (sysexits' EX_CONFIG).
DEVICE_UNAVAILABLE_EXIT = 78

# The device this worker's jobs run on, resolved once at start-up (_check_device).
device_report: DeviceReport | None = None


@signals.worker_init.connect
def _check_device(**_: Any) -> None:
    """Resolve DDPM_DEVICE before the pool starts: a worker asked for CUDA that cannot get it exits
    (DEVICE_UNAVAILABLE_EXIT) saying what driver it found and what it needs, instead of running every
    job on the CPU; `auto` logs what it chose and why. The check runs in a child process because a
    process that has initialised CUDA cannot pass it on to the pool processes it forks. Every job of
    this worker then runs on the resolved device (settings.device), the device its heartbeat shows."""
    global device_report
    requested = settings.device
    try:
        report = cpu_report() if requested == "cpu" else probe_in_subprocess(requested)
    except InvalidOption as err:  # DeviceUnavailable, or a DDPM_DEVICE that is not a device at all
        # Celery has not set up logging yet at worker_init: stderr is where this is seen (docker logs).
        print(f"worker not started: DDPM_DEVICE={requested}: {err}", file=sys.stderr, flush=True)
        raise SystemExit(DEVICE_UNAVAILABLE_EXIT) from err
    device_report = report
    settings.device = report.device
    print(f"DDPM_DEVICE={requested}: {_describe(report)}", file=sys.stderr, flush=True)


@signals.worker_process_init.connect
def _set_threads(**_: Any) -> None:
    """Each pool process sets its thread counts itself: a forked child keeps its parent's OpenMP state
    or none, depending on what the parent had loaded, and that is not a setting anyone chose."""
    log.info("pool process %s: %s", os.getpid(), apply_threads(settings.threads))
    # The engine reads DDPM_COMPILE itself; the inductor cache lives on the volume, so a host compiles a
    # network's shape once, whichever process or restart asks again (ddpm/compile_policy.py).
    os.environ[COMPILE_ENV] = settings.compile
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir(settings.data_dir)))
    from ddpm.model_cache import set_budget_mb

    set_budget_mb(settings.model_cache_mb)  # networks kept between jobs


def apply_threads(threads: int | None) -> str:
    """torch's intra-op threads and the BLAS pools (numpy/scipy) to `threads` (None: this process's
    cores); says what was set."""
    import torch
    from threadpoolctl import threadpool_limits

    count = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(count)
    threadpool_limits(count, user_api="blas")  # stays in force: the limiter is not used as a context
    return f"{count} torch and BLAS threads ({'DDPM_THREADS' if threads else 'the cores it may use'})"


def _describe(report: DeviceReport) -> str:
    text = f"jobs run on {report.device} ({report.name}, torch {report.torch})"
    return f"{text}; {report.note}" if report.note else text


def job_store() -> JobStore:
    return JobStore.from_url(
        settings.redis_url,
        settings.key_prefix,
        settings.job_ttl_s,
        settings.redis_timeout_s,
        mirror=JobMirror.of(settings.data_dir),
    )


def publish_job(kind: str, job_id: str, queue: str | None) -> None:
    """Send a job (again) to the queue the API recorded for it."""
    publish(app, kind, job_id, queue or settings.queue)


class Heartbeat:
    """Refreshes <prefix>:worker:<hostname> in Redis so /readyz can list live workers, restores the
    job records from the volume if Redis lost them (jobs/mirror.py), re-queues jobs whose lease
    lapsed (any live worker does; the Lua scripts let only one of them succeed per job), and publishes
    again queued jobs whose message the broker lost (jobs/orphans.py)."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.stop = threading.Event()
        self.info = {
            "hostname": hostname,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "queue": settings.queue,
            "consumes": consumed_queues(settings.queue, settings.consume),
            "device": settings.device,  # resolved at start-up: cpu, cuda:0
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        if device_report is not None:
            self.info.update(
                device_requested=device_report.requested,
                device_name=device_report.name,
                torch=device_report.torch,
                torch_cuda=device_report.torch_cuda,
                driver=device_report.driver,
            )
        self.thread = threading.Thread(target=self._run, name="ddpm-heartbeat", daemon=True)

    def _run(self) -> None:
        store = job_store()
        registry = WorkerRegistry(store.client, store.prefix)
        failing = False  # an outage is logged when it starts and when it ends, not at every beat
        while not self.stop.is_set():
            try:
                ttl = max(1, round(HEARTBEAT_TTL_FACTOR * settings.worker_heartbeat_s))
                registry.beat(self.hostname, self.info, ttl)
                restore_if_lost(store, publish_job, settings.lease_s)
                prune_now_and_then(store)
                reclaim_lost_jobs(store)
                republish_lost_messages(store)
                sweep_studies_now_and_then(store, publish_job, settings.data_dir)
                if failing:
                    log.info("heartbeat written again")
                failing = False
            except Exception as err:  # Redis blips must not kill the worker; the key just expires
                if not failing:
                    log.warning("heartbeat failed (retrying every %ss): %s", settings.worker_heartbeat_s, err)
                failing = True
            self.stop.wait(settings.worker_heartbeat_s)
        with contextlib.suppress(Exception):  # expiry removes the key anyway
            registry.forget(self.hostname)


_heartbeat: Heartbeat | None = None


@signals.worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    global _heartbeat
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    try:
        take_back_own_jobs(job_store(), hostname)
    except Exception as err:  # Redis down: their leases lapse and the sweep re-queues them later
        log.warning("could not check for jobs left by a previous %s: %s", hostname, err)
    _heartbeat = Heartbeat(hostname)
    _heartbeat.thread.start()
    requested = device_report.requested if device_report else settings.device
    described = _describe(device_report) if device_report else f"jobs run on {settings.device}"
    log.info(
        "worker %s ready on queues %s; DDPM_DEVICE=%s: %s",
        hostname,
        ", ".join(consumed_queues(settings.queue, settings.consume)),
        requested,
        described,
    )


@signals.worker_shutdown.connect
def _on_shutdown(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop.set()
        _heartbeat.thread.join(timeout=5)


def reclaim_lost_jobs(store: JobStore) -> list[str]:
    """Re-queue running jobs whose lease lapsed (their worker was killed, or its host was lost).

    The job's own process renews its lease every job_heartbeat_s, so a lapsed lease means that process
    is gone (or fenced itself off). Training resumes from the run's newest loadable checkpoint.
    """
    requeued = []
    for job_id in store.running_ids():
        if _reclaim(store, job_id) == "requeued":
            requeued.append(job_id)
    return requeued


def take_back_own_jobs(store: JobStore, hostname: str) -> list[str]:
    """Re-queue at once the jobs recorded as running on this worker's name: as it starts (before it
    consumes anything), they can only be its previous incarnation's, killed and restarted (by
    `ddpm serve`, compose, systemd), so there is no need to wait for their leases to lapse. Should a
    live worker share the name by mistake, the lease fencing stops its copy (it finds its job gone)."""
    requeued = [job_id for job_id in store.running_ids() if _reclaim(store, job_id, hostname) == "requeued"]
    if requeued:
        log.warning("worker %s restarted: re-queued the jobs it was running before: %s", hostname, requeued)
    return requeued


def republish_lost_messages(store: JobStore) -> list[str]:
    """Publish again the queued jobs whose broker message is gone (jobs/orphans.py); a training that
    had to be failed instead marks its run failed too."""
    report = sweep_orphans_now_and_then(
        store, publish_job, settings.queue, settings.orphan_after_s, settings.max_attempts
    )
    if report is None:
        return []
    for job_id in report.failed:
        settle_run(settings.data_dir, store.get(job_id) or {})
    return report.republished


def _reclaim(store: JobStore, job_id: str, worker: str | None = None) -> str:
    outcome = store.reclaim(job_id, settings.max_attempts, worker)
    if outcome in ("requeued", "failed", "cancelled"):
        job = store.get(job_id) or {}
        if outcome == "requeued":
            # A message for it may still sit unacked with the dead worker; if both arrive, the lease
            # lets one run and the other is dropped.
            publish_job(job.get("kind", "train"), job_id, job.get("queue"))
        else:
            settle_run(settings.data_dir, job)
        log.warning("job %s lost its worker: %s", job_id, outcome)
    return outcome


@signals.task_failure.connect
def _on_task_failure(
    task_id: str | None = None, exception: BaseException | None = None, sender: Any = None, **_: Any
) -> None:
    """The task body records its own errors; this runs (in the parent) when the pool process running
    a job died (WorkerLostError: killed, out of memory, or fenced itself off). The job is re-queued at
    once rather than after its lease lapses, unless another worker owns it by now."""
    if not task_id or _heartbeat is None:
        return
    try:
        _reclaim(job_store(), task_id, worker=_heartbeat.hostname)
    except Exception as err:  # Redis down: the lease lapses and the sweep re-queues the job later
        log.warning("could not re-queue job %s after its process died: %s", task_id, err)
