"""Publishing a job's message by task name. The API and the workers (re-queueing a job whose worker was
lost, restoring records) both publish through `publish()`; neither imports the other's code.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from jobs.records import CLASSIFIER, TASK_NAMES, TRAIN
from jobs.settings import Settings

# kombu's Redis transport keeps a queue's messages in one list per priority step: the bare name for
# priority 0 (what we publish), "<queue>\x06\x16<p>" for the others.
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (3, 6, 9)


# Trainings run for hours; a grid or an FID request must not wait behind one. So they go to two queues,
# `<DDPM_QUEUE>` for the long kinds and `<DDPM_QUEUE>.interactive` for the rest (sampling, FID,
# analyses), and `ddpm serve` and the compose file run one consumer of each on the same device. A worker
# consumes both by default (DDPM_CONSUME=all), so a deployment with one worker still runs every kind.
LONG_KINDS = frozenset({TRAIN, CLASSIFIER})
INTERACTIVE_SUFFIX = ".interactive"


def queue_for(kind: str, base: str) -> str:
    """The queue a job of `kind` is published to, under the deployment's queue name `base`."""
    return base if kind in LONG_KINDS else base + INTERACTIVE_SUFFIX


def consumed_queues(base: str, consume: str) -> list[str]:
    """What a worker with DDPM_CONSUME=`consume` (all, train, interactive) reads (kombu takes turns
    between the queues of a worker that reads both)."""
    queues = {"train": [base], "interactive": [base + INTERACTIVE_SUFFIX]}
    return queues.get(consume, [base + INTERACTIVE_SUFFIX, base])


def queue_lists(queue: str) -> list[str]:
    """The Redis lists that hold a queue's waiting messages (GET /metrics counts them; the workers'
    sweep looks in them for the message of a queued job)."""
    return [queue] + [f"{queue}{KOMBU_PRIORITY_SEP}{p}" for p in KOMBU_PRIORITY_STEPS]


def broker_options(settings: Settings) -> dict[str, Any]:
    """Shared by the API and the workers: both sides of the Redis transport must agree on these."""
    return {
        # Redis redelivers a message that is not acked within this long. Tasks ack late (after the
        # job), so a job longer than this is delivered again while it runs; the job's lease drops that
        # copy (workers/tasks.py), and the default (7 days) keeps it from happening at all.
        "visibility_timeout": settings.visibility_timeout_s,
        # How often a worker scans for messages past the visibility timeout (kombu: interval x throttle
        # seconds, 100 s by default); a short timeout (tests) is scanned as often as it can expire.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 2)),
        "unacked_restore_throttle": 1 if settings.visibility_timeout_s < 600 else 10,
        "socket_connect_timeout": settings.redis_timeout_s,
    }


def publish(celery: Celery, kind: str, job_id: str, queue: str) -> None:
    """Send a job's message; the Celery task id is the job id, so worker logs name the job."""
    celery.send_task(TASK_NAMES[kind], args=[job_id], queue=queue, task_id=job_id, ignore_result=True)


class JobQueue:
    """A bare Celery client for processes that publish but run no tasks (the API, `ddpm jobs rebuild`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.celery = Celery("ddpm-api", broker=settings.redis_url, set_as_current=False)
        self.celery.conf.update(
            broker_transport_options=broker_options(settings),
            broker_connection_timeout=settings.redis_timeout_s,
            broker_connection_retry=False,
            task_publish_retry_policy={
                "max_retries": 2,
                "interval_start": 0,
                "interval_step": 0.5,
                "interval_max": 1,
            },
        )

    def enqueue(self, kind: str, job_id: str, queue: str | None = None) -> None:
        """Publish the job to `queue`, default its kind's queue under this process's DDPM_QUEUE."""
        publish(self.celery, kind, job_id, queue or queue_for(kind, self.settings.queue))
