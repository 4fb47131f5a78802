"""Reference statistics as their own job (`fid_reference`), and an FID job's wait on that job.

An FID job whose data set's statistics are not cached waits on the one job computing them
(jobs/fid_reference.py). Workers run one job at a time (concurrency 1), so an FID job that merely
slept while its reference job sat queued behind it would wait forever on a one-worker box: instead it
takes the queued reference job over and runs it in its own process, under the reference job's own
record, lease and progress (the job store's START script lets exactly one worker start a job; the
reference job's message, when it arrives later, finds it finished and is dropped). A reference job
running elsewhere is watched until it ends. One that failed or was cancelled fails the FID jobs
waiting on it, saying which job and why; none of them waits forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddpm.fid.errors import FidUnavailable
from ddpm.storage import relative_to_volume
from jobs.fid_reference import ReferenceRequest, reference_job, waiting_message
from jobs.records import CANCELLED, FAILED, QUEUED, SUCCEEDED
from workers.app import publish_job, settings
from workers.outcomes import Outcome
from workers.progress import JobReporter

log = logging.getLogger("workers")

WAIT_POLL_S = 1.0  # how often a waiting FID job looks at its reference job (a Redis read)
# Bounds of the share of an FID job's bar its wait on the reference statistics takes (reference_share).
MIN_REFERENCE_SHARE, MAX_REFERENCE_SHARE = 0.05, 0.95

# Run a queued job (by id) in this process, as its own job; the second argument wraps its reporter.
RunHere = Callable[[str, Callable[[JobReporter], Any]], None]


def run_fid_reference(job: dict[str, Any], report: JobReporter) -> Outcome:
    """Compute (or find cached) one data set's reference statistics and feature set, with progress."""
    from ddpm.device import resolve_device
    from ddpm.fid.features import load_inception
    from ddpm.fid.reference import dataset_reference
    from ddpm.fid.weights import ensure_weights

    params = job["params"]
    request = ReferenceRequest.from_params(params)
    device = resolve_device(settings.device)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        report.raise_if_cancelled()
        elapsed = time.perf_counter() - started
        report(
            force=done == total,
            progress=done / max(total, 1),
            step=done,
            total=total,
            eta_s=elapsed / done * (total - done) if done else None,
            message=f"reference statistics {done}/{total} images",
            rate_phase="reference",
        )

    if params.get("refresh") or not request.cached(settings.data_dir):
        ensure_weights()  # FidUnavailable says how to get them when they cannot be built offline
    stats = dataset_reference(
        request.dataset,
        settings.data_dir,
        request.image_size,
        lambda: load_inception(device),
        device,
        params.get("batch_size", 50),
        refresh=bool(params.get("refresh")),
        progress=progress,
    )
    seconds = time.perf_counter() - started
    what = "computed" if stats.computed else "already cached"
    return {
        "state": SUCCEEDED,
        "message": f"reference statistics of {request.describe()} {what} ({stats.n} images)",
        "progress": 1.0,
        "result": {
            "key": request.key,
            "dataset": request.dataset,
            "image_size": request.image_size,
            "n": stats.n,
            "identity": stats.identity,
            "computed": stats.computed,
            "path": relative_to_volume(str(stats.path), settings.data_dir),
            "seconds": seconds,
            "images_per_s": (stats.n / seconds) if stats.computed and stats.n and seconds > 0 else None,
            "links": {"references": "/fid/reference"},
        },
    }


def reference_share(dataset: str, data_dir: Path, n_samples: int) -> float:
    """The share of an FID job's bar for its wait on the reference statistics: the reference's images
    through Inception against the job's own (1,797 digits against N = 1024: 0.64; CIFAR-10's 50,000
    against 4096: 0.92). Sampling is not counted (its cost needs the network); the evaluator's plan
    divides the rest of the bar by cost once the wait is over."""
    from ddpm.fid.work_plan import dataset_images

    reference = dataset_images(dataset, data_dir)
    share = reference / max(reference + n_samples, 1)
    return min(max(share, MIN_REFERENCE_SHARE), MAX_REFERENCE_SHARE)


class MirroredReporter:
    """The reporter of a reference job run inside the FID job that waits on it: every report goes to
    the reference job's record and, scaled into its share, to the FID job's, so the waiting job's bar
    and message move with the reference statistics instead of standing still."""

    def __init__(self, inner: JobReporter, waiting: JobReporter, share: float, reference_id: str) -> None:
        self.inner, self.waiting, self.share, self.reference_id = inner, waiting, share, reference_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, force: bool = False, **fields: Any) -> None:
        self.inner(force=force, **fields)
        mirrored: dict[str, Any] = {}
        if fields.get("progress") is not None:
            mirrored["progress"] = self.share * float(fields["progress"])
        if fields.get("message"):
            mirrored["message"] = (
                f"{waiting_message(self.reference_id)} (running it here): {fields['message']}"
            )
        if mirrored:
            self.waiting(force=force, **mirrored)


def await_reference(
    job: dict[str, Any],
    report: JobReporter,
    request: ReferenceRequest,
    run_here: RunHere,
    share: float,
) -> dict[str, Any]:
    """Return once `request`'s statistics are cached, with the reference job waited on and for how long
    (empty when none was needed); raise FidUnavailable when that job failed or was cancelled, Cancelled
    when this FID job was. Jobs queued before reference jobs existed (or a study's, which does not ask
    first) get theirs here."""
    data_dir = settings.data_dir
    reference_id = job.get("reference_job")
    if request.cached(data_dir) and not reference_id:
        return {}
    if not reference_id:
        reference_id, _ = reference_job(report.store, publish_job, settings.queue, data_dir, request)
        if reference_id is None:
            return {}  # cached between the two looks
    started = time.monotonic()
    message = waiting_message(reference_id)
    report(force=True, reference_job=reference_id, message=message, rate_phase="reference")
    while True:
        report.raise_if_cancelled()
        reference = report.store.get(reference_id)
        state = None if reference is None else reference["state"]
        if state == SUCCEEDED or (state is None and request.cached(data_dir)):
            return {"reference_job": reference_id, "reference_wait_s": time.monotonic() - started}
        if state in (FAILED, CANCELLED):
            why = reference.get("error") or reference.get("message") if reference else None
            raise FidUnavailable(
                f"reference statistics job {reference_id} {state}"
                f"{f': {why}' if why and state == FAILED else ''}; this FID job needs its statistics of "
                f"{request.describe()}: ask again (POST /fid, or POST /fid/reference first)"
            )
        if state is None:
            raise FidUnavailable(
                f"reference statistics job {reference_id} is gone (its record expired) and the statistics "
                f"of {request.describe()} are not cached: ask again"
            )
        if state == QUEUED:
            log.info("job %s: running its reference statistics job %s here", job["id"], reference_id)
            report(force=True, message=f"{message} (running it here)")
            run_here(reference_id, lambda inner: MirroredReporter(inner, report, share, reference_id))
            continue  # it ended here, or another worker started it first: look again
        report(
            progress=share * float(reference.get("progress") or 0.0),
            message=f"{message}: {reference.get('message', state)}",
        )
        time.sleep(WAIT_POLL_S)
