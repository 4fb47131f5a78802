"""Counters behind GET /metrics that outlive job records: finished jobs' run times, and work done.

The API may run as several processes and the workers on other hosts, so nothing here lives in process
memory; everything is in Redis, and every scrape reads it back.

  <p>:metrics:duration   "<kind>|<state>|<le>" cumulative bucket counts (+Inf: all), "<kind>|<state>|sum"
  <p>:metrics:counted    sorted set: the finished jobs already in the histogram (score: finish time)
  <p>:metrics:work       "<kind>|<unit>" running totals added by the workers (train|images, ...)
  <p>:metrics:fid-phases "<phase>|images_per_s", "<phase>|fraction": the last finished FID job's
                         throughput per phase (ddpm/fid/throughput.py), replaced by each one

A job enters the run-time histogram at the first scrape that sees it finished, whoever finished it (its
worker, a cancel, the sweep that gave up on it): one Lua script per job adds it to `counted` and to the
buckets together, so concurrent scrapes count it once. Both hashes only grow (Prometheus counters and
histograms), unlike the job records, which expire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis

# Job run times span seconds (a cached sample grid) to days (the report's 100-epoch runs on a CPU).
DURATION_BUCKETS_S: tuple[float, ...] = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400)
INF = "+Inf"

# Units of work: images a training step consumed, images a sampler finished, network calls x images.
IMAGES, IMAGE_STEPS = "images", "image_steps"


def duration_key(prefix: str) -> str:
    return f"{prefix}:metrics:duration"


def work_key(prefix: str) -> str:
    return f"{prefix}:metrics:work"


def fid_phases_key(prefix: str) -> str:
    return f"{prefix}:metrics:fid-phases"


FID_PHASE_MEASURES = ("images_per_s", "fraction")


def record_fid_phases(client: redis.Redis, prefix: str, phases: Mapping[str, Mapping[str, object]]) -> None:
    """Replace the last FID job's per-phase figures (a phase without a figure is left out)."""
    values = {
        f"{phase}|{measure}": float(figures[measure])  # type: ignore[arg-type]
        for phase, figures in phases.items()
        for measure in FID_PHASE_MEASURES
        if isinstance(figures.get(measure), int | float)
    }
    pipe = client.pipeline(transaction=True)
    pipe.delete(fid_phases_key(prefix))
    if values:
        pipe.hset(fid_phases_key(prefix), mapping=values)
    pipe.execute()


def _le(bound: float) -> str:
    return INF if math.isinf(bound) else f"{bound:g}"


# KEYS: counted set, duration hash. ARGV: job id, finished time, kind|state, seconds, bucket bounds...
_COUNT_FINISHED = """
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) == 0 then return 0 end
local seconds = tonumber(ARGV[4])
for i = 5, #ARGV do
  if ARGV[i] == '+Inf' or seconds <= tonumber(ARGV[i]) then
    redis.call('HINCRBY', KEYS[2], ARGV[3] .. '|' .. ARGV[i], 1)
  end
end
redis.call('HINCRBYFLOAT', KEYS[2], ARGV[3] .. '|sum', ARGV[4])
return 1
"""


def counted_key(prefix: str) -> str:
    return f"{prefix}:metrics:counted"


def count_finished(
    client: redis.Redis, prefix: str, job_id: str, kind: str, state: str, seconds: float, finished: float
) -> bool:
    """Put a finished job's run time in the histogram unless it is there already; True if it was added."""
    bounds = [_le(b) for b in (*DURATION_BUCKETS_S, math.inf)]
    script = client.register_script(_COUNT_FINISHED)  # EVALSHA, loading the script the first time
    added = script(
        keys=[counted_key(prefix), duration_key(prefix)],
        args=[job_id, finished, f"{kind}|{state}", max(seconds, 0.0), *bounds],
    )
    return bool(added)


def forget_counted_before(client: redis.Redis, prefix: str, before: float) -> None:
    """Drop `counted` entries of jobs whose records have expired by now (they cannot be seen again)."""
    client.zremrangebyscore(counted_key(prefix), "-inf", before)


def add_work(client: redis.Redis, prefix: str, kind: str, amounts: Mapping[str, float]) -> None:
    pipe = client.pipeline(transaction=False)
    for unit, amount in amounts.items():
        if amount:
            pipe.hincrbyfloat(work_key(prefix), f"{kind}|{unit}", amount)
    pipe.execute()


@dataclass
class Histogram:
    buckets: list[tuple[str, float]]  # (le, cumulative count), ending with +Inf
    total: float  # sum of the observations


@dataclass
class Recorded:
    durations: dict[tuple[str, str], Histogram] = field(default_factory=dict)  # (kind, state) ->
    work: dict[tuple[str, str], float] = field(default_factory=dict)  # (kind, unit) -> total
    fid_phases: dict[tuple[str, str], float] = field(default_factory=dict)  # (phase, measure) -> last


def read_recorded(client: redis.Redis, prefix: str) -> Recorded:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(duration_key(prefix))
    pipe.hgetall(work_key(prefix))
    pipe.hgetall(fid_phases_key(prefix))
    durations_raw, work_raw, phases_raw = pipe.execute()
    recorded = Recorded()
    series: dict[tuple[str, str], dict[str, float]] = {}
    for name, value in durations_raw.items():
        kind, state, part = name.rsplit("|", 2)
        series.setdefault((kind, state), {})[part] = float(value)
    for labels, parts in sorted(series.items()):
        bounds = [_le(b) for b in (*DURATION_BUCKETS_S, math.inf)]
        recorded.durations[labels] = Histogram(
            buckets=[(le, parts.get(le, 0.0)) for le in bounds], total=parts.get("sum", 0.0)
        )
    for name, value in work_raw.items():
        kind, unit = name.split("|", 1)
        recorded.work[(kind, unit)] = float(value)
    for name, value in phases_raw.items():
        phase, measure = name.split("|", 1)
        recorded.fid_phases[(phase, measure)] = float(value)
    return recorded
