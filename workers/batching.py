"""Sampling jobs, batched: a worker that starts one takes in other queued jobs that can share its batches.

The job the worker's message started (the leader) waits `DDPM_BATCH_WINDOW_S`, then pops the jobs the
API announced under the same batch key (jobs/batching.py: same weights, sampler, steps, eta) and
claims each with `JobStore.start` under a token of its own, exactly as the job's own message would:
a job that was cancelled, finished or is running elsewhere is refused and skipped. It takes only what
fits in the room its own last network batch leaves (`DDPM_SAMPLE_BATCH_SIZE`), so joining costs the
leader no extra network pass; a job that does not fit goes back on the list for the next batch.

Each claimed job keeps its own lease (renewed by its own JobLease thread), progress, cancel flag and
outcome, and its grid is written to its own cache path; the engine gives every request the images it
would get alone. Its own message, delivered later, finds it running or finished and is dropped by
`run_job`. If this process dies, every claimed job's lease lapses and the sweep re-queues it with a new
message (workers/app.py), like any job whose worker was lost.

Batching happens only where the engine's sampling path promises that an image's bits do not depend
on its batch (`shares_batches_exactly`: always on CPU eager and on CUDA, not for a compiled CPU path).
Under DDPM_COMPILE=auto each job's path is decided from its own request alone (ddpm/compile_policy.py),
as it would be if it ran alone: a job whose grid is big enough to compile runs alone, compiled, and
only jobs that run eager are batched together, so a grid never depends on what arrived with it.

Ending: the engine failing fails every job of the batch with the same error; a claimed job cancelled
mid-batch ends `cancelled` at once (the batch goes on for the others; its images are dropped); the
batch stops only when every job in it is cancelled. The leader's outcome is returned to `run_job`,
which holds its lease and records it.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from ddpm.compile_policy import CompileDecision
from ddpm.errors import Cancelled, DdpmError
from jobs.batching import BatchableJobs, batch_key
from jobs.records import ACTIVE_STATES, SAMPLE, SUCCEEDED
from jobs.specs import SampleSpec
from jobs.store import JobStore
from workers.app import publish_job, settings
from workers.outcomes import CANCELLED_OUTCOME, Outcome, outcome_of, record_outcome
from workers.progress import JobLease, JobReporter
from workers.study_hooks import advance_study_of
from workers.throughput import SAMPLE_PHASE, SamplingMeter, Throughput

log = logging.getLogger("workers")


@dataclass
class Member:
    """One job of a batch. The leader's lease and outcome are run_job's; a claimed job's are ours."""

    job: dict[str, Any]
    spec: SampleSpec
    report: JobReporter
    lease: JobLease | None = None  # None for the leader
    ended: Outcome | None = None  # set when it ended before the batch did (cancelled)
    cancelled: bool = False

    @property
    def id(self) -> str:
        return str(self.job["id"])

    @property
    def token(self) -> str:
        return self.report.token

    def cached(self) -> bool:
        return self.spec.png_path(settings.data_dir).is_file()

    def stop_lease(self) -> None:
        if self.lease is not None:
            self.lease.__exit__(None, None, None)
            self.lease = None


@dataclass
class Batch:
    members: list[Member]
    sampled: list[Member] = field(default_factory=list)  # those whose grid is not cached
    compile: CompileDecision | None = None  # the leader's own; every member's when batched (eager)
    picked_up: float = field(default_factory=time.monotonic)  # when the leader's handler started
    # How quickly it got going (issue 19: a second job on a checkpoint the worker holds pays no load):
    # pick-up to the first network call, the load, and whether the worker's cache held the network.
    timings: dict[str, float | bool] = field(default_factory=dict)

    @property
    def leader(self) -> Member:
        return self.members[0]

    @property
    def images(self) -> int:
        return sum(m.spec.n for m in self.sampled)

    def record(self) -> dict[str, Any]:
        """What each job's result says about the batch it ran in."""
        return {"leader": self.leader.id, "jobs": len(self.members), "images": self.images}


def run_sampling(job: dict[str, Any], report: JobReporter) -> Outcome:
    """The sampling handler of run_job: this job and whichever queued jobs can join it."""
    store = report.store
    leader = Member(job, SampleSpec.from_params(job["params"]), report)
    key = batch_key(leader.spec)
    batchable = BatchableJobs(store.client, store.prefix)
    batch = Batch([leader])
    try:
        try:
            batchable.withdraw(key, leader.id)
            if not leader.cached():
                batch.compile = compile_decision(leader.spec)
                if batch.compile is None or not batch.compile.compiled:  # a compiled job runs alone
                    gather(store, batchable, key, batch)
        except redis.RedisError as err:  # the list is only a hint: sample what was claimed so far
            log.warning("job %s: batching cut short (%s)", leader.id, err)
        return _run(store, batch)
    finally:
        for member in batch.members:
            member.stop_lease()  # outcomes are recorded; any job left unrecorded is re-queued by the sweep


def gather(store: JobStore, batchable: BatchableJobs, key: str, batch: Batch) -> None:
    """Claim queued jobs announced under `key` into the batch, after the gather window, while they
    fit. Each is added as soon as it is claimed, so a Redis error part-way loses none of them."""
    leader = batch.leader
    room = _room(leader.spec.n, settings.sample_batch_size)
    if settings.batch_window_s <= 0 or room <= 0 or not shares_batches_exactly(settings.device):
        return
    time.sleep(settings.batch_window_s)  # let requests made at about the same time arrive
    worker = str(leader.job.get("worker") or "?")
    while room > 0 and (job_id := batchable.take(key)) is not None:
        job = store.get(job_id)
        if job is None or job["kind"] != SAMPLE or job["state"] not in ACTIVE_STATES:
            continue  # expired, cancelled or finished: nothing to do
        try:
            spec = SampleSpec.from_params(job["params"])
        except (KeyError, TypeError, ValueError) as err:  # not ours to fail: its own message will
            log.warning("job %s: not batched, its parameters do not read (%s)", job_id, err)
            continue
        if spec.n > room:
            batchable.put_back(key, job_id)  # too big for this batch; first in line for the next
            break
        decision = compile_decision(spec)
        if decision is not None and decision.compiled:
            continue  # it compiles when alone, so it runs alone: its own message starts it
        token = uuid.uuid4().hex
        started = store.start(job_id, worker, token, settings.lease_s, settings.max_attempts)
        if started not in ("running", "resumed"):
            continue  # cancelled, finished or owned by a live worker since we looked
        lease = JobLease(store, job_id, token, settings.lease_s, settings.job_heartbeat_s).__enter__()
        reporter = JobReporter(store, job_id, settings.progress_interval_s, token)
        batch.members.append(Member(store.get(job_id) or job, spec, reporter, lease))
        room -= spec.n
        log.info("job %s joins the batch of job %s (%s)", job_id, leader.id, started)


def shares_batches_exactly(device: str) -> bool:
    """Whether the engine's sampling path on `device` gives an image the same bits in any batch
    (docs/architecture.md, Determinism). Where it does not (e.g. DDPM_COMPILE=1 on a CPU worker), jobs
    are not batched together: a grid must not depend on which other requests arrived with it."""
    from ddpm.device import resolve_device
    from ddpm.fastpath import batch_invariant, sampling_path

    resolved = resolve_device(device)
    return batch_invariant(sampling_path(resolved), resolved)


def compile_decision(spec: SampleSpec) -> CompileDecision | None:
    """Whether this grid, sampled alone, runs its network compiled (ddpm/compile_policy.py); None when
    its checkpoint does not read: then sampling fails, every job of the batch with the same error."""
    from ddpm.checkpoints import read_meta
    from ddpm.device import resolve_device
    from ddpm.sampling import sampling_decision

    try:
        meta = read_meta(spec.checkpoint.path(settings.data_dir))
    except DdpmError:
        return None
    return sampling_decision(meta, spec.n, spec.sampler, resolve_device(settings.device))


def _room(n: int, batch_size: int) -> int:
    """Images that fit in the leader's last network batch beside its own."""
    return math.ceil(n / batch_size) * batch_size - n


def _run(store: JobStore, batch: Batch) -> Outcome:
    batch.sampled = [m for m in batch.members if not m.cached()]  # an identical job may have finished
    claimed = batch.members[1:]
    try:
        images = _sample(store, batch) if batch.sampled else {}
    except Exception as err:  # anything else (the process stopping) leaves them to the lease sweep
        outcome = outcome_of(err, batch.leader.id, settings.data_dir)
        for member in claimed:
            if member.ended is None:
                _end(store, member, outcome)
        raise
    for member in claimed:
        if member.ended is None:
            try:
                outcome = _write(member, images.get(member.id), batch)
            except Exception as err:  # e.g. the volume is full: this job fails, the others go on
                outcome = outcome_of(err, member.id, settings.data_dir)
            _end(store, member, outcome)
    leader = batch.leader
    return CANCELLED_OUTCOME if leader.cancelled else _write(leader, images.get(leader.id), batch)


def _sample(store: JobStore, batch: Batch) -> dict[str, Any]:
    """{job id: its images (uint8)}, sampled in shared batches."""
    from ddpm.sampling import sample_checkpoint_many

    ref = batch.leader.spec.checkpoint
    spec = batch.leader.spec
    ready: list[float] = []  # when sampling began: the network loaded, its first call next
    images, meta = sample_checkpoint_many(
        ref.path(settings.data_dir),
        [(m.spec.seed, m.spec.n) for m in batch.sampled],
        spec.sampler,
        device=settings.device,
        batch_size=settings.sample_batch_size,
        progress=_progress(store, batch),
        compile=batch.compile,
        on_ready=lambda: ready.append(time.monotonic()),
    )
    batch.timings = {
        "pickup_to_first_call_s": round(ready[0] - batch.picked_up, 4),
        "load_s": round(meta["load_s"], 4),
        "model_cached": meta["model_cached"],
    }
    if meta.get("weights") != ref.weights:
        log.warning(
            "job %s: sampled %s weights, cache key says %s", batch.leader.id, meta.get("weights"), ref.weights
        )
    return {m.id: grid for m, grid in zip(batch.sampled, images, strict=True)}


def _progress(store: JobStore, batch: Batch) -> Callable[[int, int], None]:
    """progress(done, total) for the engine: each job's cancel flag and progress at every network call;
    the batch's throughput on the leader's record only (GET /metrics sums the records by worker)."""
    started = time.monotonic()
    meter = SamplingMeter(
        Throughput.of(store, SAMPLE, SAMPLE_PHASE), batch.images, settings.sample_batch_size
    )
    together = (
        f" in a batch of {len(batch.members)} jobs, {batch.images} images" if len(batch.members) > 1 else ""
    )

    def progress(done: int, total: int) -> None:
        _take_cancels(store, batch)
        if all(m.cancelled for m in batch.members):
            raise Cancelled(f"every job in the batch of job {batch.leader.id} was cancelled")
        elapsed = time.monotonic() - started
        fields = {
            "progress": done / total,
            "step": done,
            "total": total,
            "eta_s": elapsed / done * (total - done) if done else None,
            "message": f"sampling{together}, network calls: {done}/{total}",
        }
        rates = meter.update(done, total)
        for member in batch.members:
            if member.ended is None:
                extra = rates if member is batch.leader else {}
                if member.cancelled:  # only the leader gets here: run_job records it when the batch ends
                    extra = {**extra, "message": "cancel requested; it ends with its batch"}
                member.report(force=done == total, **{**fields, **extra})

    return progress


def _take_cancels(store: JobStore, batch: Batch) -> None:
    """Read every job's cancel flag in one round trip; end the claimed ones that were cancelled."""
    live = [m for m in batch.members if not m.cancelled]
    pipe = store.client.pipeline(transaction=False)
    for member in live:
        pipe.hget(store.job_key(member.id), "cancel_requested")
    try:
        flags = pipe.execute()
    except redis.RedisError:
        return  # cannot tell now; asked again at the next network call
    for member, flag in zip(live, flags, strict=True):
        if flag == "1":
            member.cancelled = True
            if member is not batch.leader:
                _end(store, member, CANCELLED_OUTCOME)
                log.info("job %s cancelled; its batch goes on", member.id)


def _write(member: Member, images: Any, batch: Batch) -> Outcome:
    """Write the member's grid (unless cached) and say how it ended, as a lone job's would."""
    spec, ref = member.spec, member.spec.checkpoint
    png = spec.png_path(settings.data_dir)
    if images is not None:
        from ddpm.sampling import write_grid
        from ddpm.storage import atomic_write_json

        # The description first, the grid last: the grid's presence is what marks the entry complete.
        atomic_write_json(
            spec.meta_path(settings.data_dir), {**spec.identity(), "arch": ref.arch, "job_id": member.id}
        )
        write_grid(png, images, spec.nrow)
    together = f" in a batch of {len(batch.members)} jobs" if len(batch.members) > 1 else ""
    return {
        "state": SUCCEEDED,
        "message": f"sampled {spec.n} images{together}" if images is not None else "served from the cache",
        "progress": 1.0,
        "result": {
            "key": spec.key,
            "file": str(png.relative_to(settings.data_dir)),
            "bytes": png.stat().st_size,
            "checkpoint": ref.to_dict(),
            "batch": batch.record(),
            **({"timings": batch.timings} if images is not None else {}),
            # Whether the network ran compiled, and why (ddpm/compile_policy.py).
            **({"compile": batch.compile.to_dict()} if batch.compile is not None else {}),
            "links": {"image": spec.url()},
        },
    }


def _end(store: JobStore, member: Member, outcome: Outcome) -> None:
    """Record a claimed job's outcome under its token (its lease stopped first, so the renewal thread
    does not take the finished record for a lost lease)."""
    member.stop_lease()
    member.ended = outcome
    record_outcome(store, member.id, member.token, outcome, settings.lease_s)
    advance_study_of(store, publish_job, settings.data_dir, member.job)
