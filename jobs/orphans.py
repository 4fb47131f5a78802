"""Queued jobs whose broker message is gone: found by the workers' sweep and published again.

A job is queued in its record and has a message in its queue (a Redis list kombu reads with BRPOP).
The two can part: a worker takes the message and dies (or its Redis refuses the start, as when its disk
is full) before the job starts, a publish fails after a re-queue, a broker loses its lists. Such a job
would stay queued forever, and a sampling job would hold its cache lock, so that every identical
request joined it. Every `orphan_after_s / 4` one worker (whichever claims the slot) looks for jobs
queued for longer than `orphan_after_s` whose message is in none of their queue's lists, and publishes
each again; a job whose message went missing `max_attempts` times fails, saying so (jobs/scripts.py
REPUBLISH). A message that was only in flight (taken by a worker about to start the job) makes a
duplicate, which the start check drops like any redelivery.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import redis

from jobs.publish import queue_lists
from jobs.records import FAILED, QUEUED
from jobs.store import JobStore

log = logging.getLogger("jobs")

PAGE = 500  # job records read per pipeline round trip

# publish(kind, job id, queue the job was sent to or None for the default)
Publish = Callable[[str, str, str | None], None]


@dataclass
class OrphanReport:
    republished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # lost too often: failed with the reason


def queued_too_long(store: JobStore, queued_before: float) -> Iterator[tuple[str, str, str | None]]:
    """(id, kind, queue) of every job queued since before `queued_before`."""
    fields = ("state", "updated", "kind", "queue")
    ids = store.client.zrange(store.index_key, 0, -1)
    for start in range(0, len(ids), PAGE):
        page = ids[start : start + PAGE]
        pipe = store.client.pipeline(transaction=False)
        for job_id in page:
            pipe.hmget(store.job_key(job_id), fields)
        for job_id, (state, updated, kind, queue) in zip(page, pipe.execute(), strict=True):
            if state == QUEUED and float(updated or 0) <= queued_before:
                yield job_id, kind or "", queue


def waiting_messages(client: redis.Redis, queue: str) -> set[str]:
    """The task ids (our job ids) of the messages waiting in a queue's lists."""
    ids = set()
    for name in queue_lists(queue):
        for raw in client.lrange(name, 0, -1):
            try:
                message = json.loads(raw)
                ids.add(str(message["headers"]["id"]))
            except (ValueError, KeyError, TypeError):
                continue  # not a Celery message of ours
    return ids


def sweep_orphans(
    store: JobStore, publish: Publish, default_queue: str, after_s: float, max_times: int
) -> OrphanReport:
    """Publish again every job queued for more than `after_s` whose message is in none of its queue's
    lists (or fail it once its message was lost `max_times` times)."""
    report = OrphanReport()
    cutoff = time.time() - after_s
    waiting: dict[str, set[str]] = {}
    for job_id, kind, queue in list(queued_too_long(store, cutoff)):
        queue = queue or default_queue
        if queue not in waiting:
            waiting[queue] = waiting_messages(store.client, queue)
        if job_id in waiting[queue]:
            continue  # waiting its turn (a queue nobody consumes, or a long one): not lost
        outcome = store.republish(job_id, cutoff, max_times)
        if outcome == "republished":
            try:
                publish(kind, job_id, queue)
            except Exception as err:  # still queued; the next sweep, after_s from now, tries again
                log.warning("job %s: its lost message could not be published again (%s)", job_id, err)
                continue
            report.republished.append(job_id)
            log.warning("job %s was queued with no message in queue %s: published again", job_id, queue)
        elif outcome == FAILED:
            report.failed.append(job_id)
            log.warning("job %s failed: its message was lost from queue %s too often", job_id, queue)
    return report


def sweep_orphans_now_and_then(
    store: JobStore, publish: Publish, default_queue: str, after_s: float, max_times: int
) -> OrphanReport | None:
    """sweep_orphans() by one worker at most every after_s / 4 (the first to claim the slot)."""
    slot = max(1, round(after_s / 4))
    if not store.client.set(f"{store.prefix}:orphans-swept", str(time.time()), nx=True, ex=slot):
        return None
    return sweep_orphans(store, publish, default_queue, after_s, max_times)
