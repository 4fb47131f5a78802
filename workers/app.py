"""The Celery app: `celery -A workers.app worker` (or `ddpm worker`), one per GPU.

GPU jobs are long and heavy, so: one process per worker (concurrency 1), prefetch 1 (a busy worker
does not hoard queued jobs another GPU could start), late acks (a job whose worker dies is redelivered,
not lost). What users see lives in our own Redis job records (service.jobstore), never in Celery's
result backend.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from typing import Any

from celery import Celery, signals

from service.jobstore import FAILED, RUNNING, JobStore
from service.queue import broker_options
from service.settings import get_settings

log = logging.getLogger("workers")

settings = get_settings()

app = Celery("ddpm", broker=settings.redis_url, backend=settings.redis_url, include=["workers.tasks"])
app.conf.update(
    task_default_queue=settings.queue,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_concurrency=1,
    task_ignore_result=True,  # results live in our job records
    task_track_started=False,
    broker_transport_options=broker_options(settings),
    broker_connection_retry_on_startup=True,
    # A Redis blip must not kill an hours-long training: the job keeps running, and its record (not
    # the unacked message) decides whether a redelivery runs it again (only if its heartbeat stopped).
    worker_cancel_long_running_tasks_on_connection_loss=False,
    worker_hijack_root_logger=False,
    task_serializer="json",
    accept_content=["json"],
)

HEARTBEAT_S = 10
HEARTBEAT_TTL_S = 3 * HEARTBEAT_S


def job_store() -> JobStore:
    return JobStore.from_url(
        settings.redis_url, settings.key_prefix, settings.job_ttl_s, settings.redis_timeout_s
    )


class Heartbeat:
    """Refreshes <prefix>:worker:<hostname> in Redis so /healthz can list live workers."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.stop = threading.Event()
        self.info = {
            "hostname": hostname,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "queue": settings.queue,
            "device": settings.device,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        self.thread = threading.Thread(target=self._run, name="ddpm-heartbeat", daemon=True)

    def _run(self) -> None:
        store = job_store()
        while not self.stop.is_set():
            try:
                store.beat(self.hostname, self.info, HEARTBEAT_TTL_S)
                _fail_abandoned_jobs(store)
            except Exception as err:  # Redis blips must not kill the worker; the key just expires
                log.warning("heartbeat failed: %s", err)
            self.stop.wait(HEARTBEAT_S)
        with contextlib.suppress(Exception):  # expiry removes the key anyway
            store.forget_worker(self.hostname)


_heartbeat: Heartbeat | None = None


@signals.worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    global _heartbeat
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    _heartbeat = Heartbeat(hostname)
    _heartbeat.thread.start()
    log.info("worker %s ready on queue %s (device %s)", hostname, settings.queue, settings.device)


@signals.worker_shutdown.connect
def _on_shutdown(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop.set()
        _heartbeat.thread.join(timeout=5)


def _fail_abandoned_jobs(store: JobStore) -> None:
    """Running jobs whose worker went silent (killed, host lost) are marked failed by any live worker.

    A running job's own process touches its heartbeat every few seconds (workers/progress.py), so
    silence for stale_after_s means that process is gone. The job's message may still be redelivered
    (late acks); the task then finds a finished job and skips it. Training keeps its checkpoints, so
    the user can resume the run.
    """
    for job_id in store.stale_running(settings.stale_after_s):
        job = store.get(job_id) or {}
        hint = " Resume it: POST /train with run_id and resume: true." if job.get("kind") == "train" else ""
        store.finish(
            job_id,
            FAILED,
            message="failed",
            error=f"its worker ({job.get('worker')}) stopped reporting for over {settings.stale_after_s:.0f}s.{hint}",
        )
        log.warning("marked abandoned job %s failed", job_id)


@signals.task_failure.connect
def _on_task_failure(task_id: str | None = None, exception: BaseException | None = None, **_: Any) -> None:
    """The task body records its own errors; this catches what it cannot, e.g. its process being
    killed (WorkerLostError, raised in the parent) while the job was running."""
    if not task_id:
        return
    store = job_store()
    job = store.get(task_id)
    if job and job["state"] == RUNNING:
        store.finish(task_id, FAILED, message="failed", error=f"the worker process died: {exception!r}")
