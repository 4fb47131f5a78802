"""Create a job record, then publish it: the record exists before any worker can see the message."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ddpm.storage import relative_to_volume
from jobs.publish import JobQueue, queue_for
from jobs.records import ACTIVE_STATES
from jobs.store import JobStore
from service.errors import Unavailable, redact

log = logging.getLogger("service")


def submit(
    store: JobStore,
    queue: JobQueue,
    kind: str,
    params: dict[str, Any],
    *,
    run_id: str | None = None,
    lock: str | None = None,
    join_states: tuple[str, ...] = ACTIVE_STATES,
    replace: str | None = None,
    before_publish: Callable[[str], None] | None = None,
) -> tuple[str, bool]:
    """(job id, created). With a lock, an active owner of it is joined instead of queuing another job.

    `before_publish(job_id)` runs once the job (and its lock) exist but before any worker can see it.
    """
    # The queue is recorded so a worker that re-queues the job (its first worker died) publishes it
    # where this API sent it.
    extra = {"queue": queue_for(kind, queue.settings.queue), **({"run_id": run_id} if run_id else {})}
    job_id, created = store.create(
        kind, params, lock=lock, join_states=join_states, replace=replace, extra=extra
    )
    if created:
        if before_publish is not None:
            try:
                before_publish(job_id)
            except Exception as err:
                why = relative_to_volume(f"{type(err).__name__}: {err}", queue.settings.data_dir)
                store.fail(job_id, f"could not prepare the job: {why}")
                raise
        try:
            queue.enqueue(kind, job_id)
        except Exception as err:
            # The record says why the job never ran; the lock it holds is free for the next request.
            log.warning("could not publish job %s: %s", job_id, err)
            store.fail(job_id, f"could not publish the job to the queue: {type(err).__name__}: {err}")
            raise Unavailable(
                f"the job queue (broker at {redact(queue.settings.redis_url)}) did not accept the job: {err}"
            ) from err
    return job_id, created
