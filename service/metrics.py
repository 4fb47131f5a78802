"""GET /metrics in Prometheus' text format, computed from Redis at each scrape.

Nothing is counted in the API process: it may run as several processes, each scraped at random by a
load balancer, and would disagree. Job counts and rates come from the job records, queue depth from
the broker's list, workers from their heartbeats, run times and work totals from jobs/telemetry.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from jobs import telemetry
from jobs.publish import consumed_queues, queue_lists
from jobs.records import CLASSIFIER, KINDS, RUNNING, STATES, TERMINAL_STATES, TRAIN
from jobs.registry import WorkerRegistry
from jobs.settings import Settings
from jobs.store import JobStore

JOB_FIELDS = (
    "kind",
    "state",
    "started",
    "finished",
    "worker",
    "images_per_s",
    "image_steps_per_s",
    "rate_phase",
)
TRAIN_PHASE, SAMPLE_PHASE = "train", "sample"  # rate_phase values (workers.throughput, not imported here)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass
class JobCensus:
    """What the job records say now."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, state) -> jobs
    finished: list[tuple[str, str, str, float, float]] = field(default_factory=list)  # id, kind, state, s, at
    rates: list[dict[str, Any]] = field(default_factory=list)  # running jobs' throughput fields


def job_census(store: JobStore) -> JobCensus:
    census = JobCensus(counts={(kind, state): 0 for kind in KINDS for state in STATES})
    ids = store.client.zrange(store.index_key, 0, -1)
    pipe = store.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(store.job_key(job_id), JOB_FIELDS)
    for job_id, values in zip(ids, pipe.execute() if ids else [], strict=True):
        job = dict(zip(JOB_FIELDS, values, strict=True))
        kind, state = job["kind"], job["state"]
        if kind is None or state is None:  # expired since the index was read
            continue
        census.counts[(kind, state)] = census.counts.get((kind, state), 0) + 1
        started, finished = _float(job["started"]), _float(job["finished"])
        if state in TERMINAL_STATES and started is not None and finished is not None:
            census.finished.append((job_id, kind, state, finished - started, finished))
        if state == RUNNING:
            census.rates.append(job)
    return census


def count_new_finished(store: JobStore, census: JobCensus, ttl_s: int) -> None:
    """Add jobs finished since the last scrape (by anyone) to the run-time histogram, once each."""
    if not census.finished:
        return
    key = telemetry.counted_key(store.prefix)
    seen = store.client.zmscore(key, [job_id for job_id, *_ in census.finished])
    for (job_id, kind, state, seconds, finished), score in zip(census.finished, seen, strict=True):
        if score is None:
            telemetry.count_finished(store.client, store.prefix, job_id, kind, state, seconds, finished)
    # A job is never seen again once its record has expired: its entry can go.
    telemetry.forget_counted_before(store.client, store.prefix, time.time() - ttl_s - 86400)


def queue_depth(store: JobStore, queue: str) -> int:
    pipe = store.client.pipeline(transaction=False)
    for name in queue_lists(queue):
        pipe.llen(name)
    return sum(pipe.execute())


def _families(store: JobStore, settings: Settings) -> Iterator[Metric]:
    census = job_census(store)
    count_new_finished(store, census, settings.job_ttl_s)
    recorded = telemetry.read_recorded(store.client, store.prefix)

    jobs = GaugeMetricFamily(
        "ddpm_jobs",
        "Job records by kind and state (finished ones expire after DDPM_JOB_TTL_S)",
        labels=["kind", "state"],
    )
    for (kind, state), count in sorted(census.counts.items()):
        jobs.add_metric([kind, state], count)
    yield jobs

    durations = HistogramMetricFamily(
        "ddpm_job_duration_seconds",
        "Run time of finished jobs, from first start to finish, by kind and how they ended",
        labels=["kind", "state"],
    )
    for (kind, state), histogram in sorted(recorded.durations.items()):
        durations.add_metric([kind, state], histogram.buckets, histogram.total)
    yield durations

    depth = GaugeMetricFamily(
        "ddpm_queue_messages",
        "Messages waiting in the broker queue (not yet taken by a worker)",
        labels=["queue"],
    )
    for queue in consumed_queues(settings.queue, "all"):  # trainings' and interactive jobs' queues
        depth.add_metric([queue], queue_depth(store, queue))
    yield depth

    workers = GaugeMetricFamily(
        "ddpm_workers", "Workers whose heartbeat is live, by the queue they consume", labels=["queue"]
    )
    by_queue: dict[str, int] = {settings.queue: 0}
    for worker in WorkerRegistry(store.client, store.prefix).alive():
        queue = str(worker.get("queue"))
        by_queue[queue] = by_queue.get(queue, 0) + 1
    for queue, count in sorted(by_queue.items()):
        workers.add_metric([queue], count)
    yield workers

    yield from _throughput(census.rates)
    yield from _work(recorded.work)
    yield from _fid_phases(recorded.fid_phases)


def _throughput(running: Iterable[dict[str, Any]]) -> Iterator[Metric]:
    training = GaugeMetricFamily(
        "ddpm_training_images_per_second",
        "Training throughput of running jobs (steps/s x batch size, over the last seconds)",
        labels=["worker"],
    )
    sampled = GaugeMetricFamily(
        "ddpm_sampling_images_per_second",
        "Images sampled per second by running sampling and FID jobs (over the last seconds)",
        labels=["worker", "kind"],
    )
    image_steps = GaugeMetricFamily(
        "ddpm_sampling_image_steps_per_second",
        "Network evaluations x images per second of running sampling and FID jobs",
        labels=["worker", "kind"],
    )
    for job in running:
        worker = job.get("worker") or "?"
        images, steps = _float(job.get("images_per_s")), _float(job.get("image_steps_per_s"))
        if job.get("rate_phase") == TRAIN_PHASE and job["kind"] == TRAIN and images is not None:
            training.add_metric([worker], images)
        elif job.get("rate_phase") == SAMPLE_PHASE:
            if images is not None:
                sampled.add_metric([worker, job["kind"]], images)
            if steps is not None:
                image_steps.add_metric([worker, job["kind"]], steps)
    yield from (training, sampled, image_steps)


def _work(totals: dict[tuple[str, str], float]) -> Iterator[Metric]:
    trained = CounterMetricFamily("ddpm_trained_images", "Images consumed by training steps, all jobs")
    trained.add_metric([], totals.get((TRAIN, telemetry.IMAGES), 0.0))
    yield trained
    sampled = CounterMetricFamily("ddpm_sampled_images", "Images sampled, by job kind", labels=["kind"])
    image_steps = CounterMetricFamily(
        "ddpm_sampled_image_steps",
        "Network evaluations x images while sampling, by job kind",
        labels=["kind"],
    )
    for kind in KINDS:
        if kind not in (TRAIN, CLASSIFIER):  # the kinds that sample (a classifier's training does not)
            sampled.add_metric([kind], totals.get((kind, telemetry.IMAGES), 0.0))
            image_steps.add_metric([kind], totals.get((kind, telemetry.IMAGE_STEPS), 0.0))
    yield from (sampled, image_steps)


def _fid_phases(figures: dict[tuple[str, str], float]) -> Iterator[Metric]:
    rates = GaugeMetricFamily(
        "ddpm_fid_phase_images_per_second",
        "Images per second of each phase of the last finished FID job (reference, sampling, features, "
        "statistics, distance)",
        labels=["phase"],
    )
    fractions = GaugeMetricFamily(
        "ddpm_fid_phase_rate_fraction",
        "Each phase's FLOP/s over the worker's matmul rate measured in the same job (docs/performance.md)",
        labels=["phase"],
    )
    for (phase, measure), value in sorted(figures.items()):
        (rates if measure == "images_per_s" else fractions).add_metric([phase], value)
    yield from (rates, fractions)


class _Snapshot:
    """A collector over families computed once (prometheus_client serialises collectors)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def exposition(store: JobStore, settings: Settings) -> bytes:
    """The text Prometheus scrapes. With Redis unreachable, only `ddpm_redis_up 0` (the scrape itself
    still succeeds, so the alert says what is wrong rather than that the API is down)."""
    up = GaugeMetricFamily("ddpm_redis_up", "1 when Redis (broker and job records) answered this scrape")
    try:
        families = list(_families(store, settings))
        up.add_metric([], 1)
    except redis.RedisError:
        families = []
        up.add_metric([], 0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot([up, *families]))
    return generate_latest(registry)
