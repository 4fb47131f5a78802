"""Create a job record, then publish its message: the record exists before any worker can see the
message. The API (service/submit.py) and the workers (a study queuing its next stage, jobs/studies.py)
both queue jobs through `submit()`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddpm.storage import relative_to_volume
from jobs.publish import queue_for
from jobs.records import ACTIVE_STATES
from jobs.store import JobStore

log = logging.getLogger("jobs")

# publish(kind, job id, queue); jobs/publish.py's JobQueue.enqueue, workers/app.py's publish_job
Publish = Callable[[str, str, str | None], None]


class PublishFailed(Exception):
    """The broker did not take the job's message; the job's record says so (it is failed)."""


def submit(
    store: JobStore,
    publish: Publish,
    queue: str,
    kind: str,
    params: dict[str, Any],
    *,
    data_dir: Path,
    run_id: str | None = None,
    lock: str | None = None,
    join_states: tuple[str, ...] = ACTIVE_STATES,
    replace: str | None = None,
    before_publish: Callable[[str], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[str, bool]:
    """(job id, created). With a lock, an owner of it in `join_states` is answered instead of queuing
    another job; `replace` names an owner the caller knows to be stale.

    `before_publish(job_id)` runs once the job (and its lock) exist but before any worker can see it.
    `extra` are more fields of the new record (an FID job's `reference_job` and its message).
    """
    # `queue` is the deployment's (DDPM_QUEUE); the job goes to its kind's queue under it (trainings apart
    # from interactive jobs). That queue is recorded so a worker that re-queues the job (its first worker
    # died) publishes it where it was first sent.
    queue = queue_for(kind, queue)
    fields = {"queue": queue, **({"run_id": run_id} if run_id else {}), **(extra or {})}
    job_id, created = store.create(
        kind, params, lock=lock, join_states=join_states, replace=replace, extra=fields
    )
    if created:
        if before_publish is not None:
            try:
                before_publish(job_id)
            except Exception as err:
                why = relative_to_volume(f"{type(err).__name__}: {err}", data_dir)
                store.fail(job_id, f"could not prepare the job: {why}")
                raise
        try:
            publish(kind, job_id, queue)
        except Exception as err:
            # The record says why the job never ran; the lock it holds is free for the next request.
            log.warning("could not publish job %s: %s", job_id, err)
            store.fail(job_id, f"could not publish the job to the queue: {type(err).__name__}: {err}")
            raise PublishFailed(str(err)) from err
    return job_id, created
