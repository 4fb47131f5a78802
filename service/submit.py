"""Create a job record, then publish it (jobs/submit.py), answering a broker that refuses it with a 503."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobs import submit as jobs_submit
from jobs.publish import JobQueue
from jobs.records import ACTIVE_STATES
from jobs.store import JobStore
from service.errors import Unavailable, redact


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
    extra: dict[str, Any] | None = None,
) -> tuple[str, bool]:
    """(job id, created). With a lock, an active owner of it is joined instead of queuing another job.

    `before_publish(job_id)` runs once the job (and its lock) exist but before any worker can see it.
    """
    try:
        return jobs_submit.submit(
            store,
            queue.enqueue,
            queue.settings.queue,
            kind,
            params,
            data_dir=queue.settings.data_dir,
            run_id=run_id,
            lock=lock,
            join_states=join_states,
            replace=replace,
            before_publish=before_publish,
            extra=extra,
        )
    except jobs_submit.PublishFailed as err:
        raise Unavailable(
            f"the job queue (broker at {redact(queue.settings.redis_url)}) did not accept the job: {err}"
        ) from err
