"""One `fid_reference` job per reference-statistics key, shared by every FID job that needs it.

A data set's reference statistics (all its training images through Inception: minutes for digits, an hour
for CIFAR-10 on a CPU) are computed once per (data set, image size, feature extractor) per volume and cached
there (ddpm/fid/reference_cache.py). Who needs them missing finds the job that computes them through the
lock `fid-reference:<key>` (the job store's CREATE script: an active owner is joined, never a second job
queued), so two FID requests at once queue one reference job. The FID job records that job's id
(`reference_job`) and waits on it (workers/reference_jobs.py); the lock is released when the job ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddpm.fid.reference_cache import is_cached, reference_key, reference_size
from jobs.records import ACTIVE_STATES, FID_REFERENCE
from jobs.store import JobStore
from jobs.submit import Publish, submit

LOCK_PREFIX = "fid-reference:"
DEFAULT_BATCH = 50  # Inception's batch: pytorch-fid's default; the numbers do not depend on it


@dataclass(frozen=True)
class ReferenceRequest:
    """Which reference statistics: a data set at an image size (the key adds the extractor)."""

    dataset: str
    image_size: int

    @property
    def key(self) -> str:
        return reference_key(self.dataset, self.image_size)  # InvalidOption names a bad value

    @property
    def lock(self) -> str:
        return LOCK_PREFIX + self.key

    def cached(self, data_dir: Path) -> bool:
        return is_cached(data_dir, self.dataset, self.image_size)

    def describe(self) -> str:
        size = reference_size(self.dataset, self.image_size)
        return f"{self.dataset} at {size}x{size}"

    def to_params(self, refresh: bool = False, batch_size: int = DEFAULT_BATCH) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "image_size": self.image_size,
            "key": self.key,
            "refresh": refresh,
            "batch_size": batch_size,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ReferenceRequest:
        return cls(params["dataset"], params["image_size"])


def reference_job(
    store: JobStore,
    publish: Publish,
    queue: str,
    data_dir: Path,
    request: ReferenceRequest,
    *,
    refresh: bool = False,
    batch_size: int = DEFAULT_BATCH,
) -> tuple[str | None, bool]:
    """(id of the job computing `request`'s statistics, whether this call queued it); (None, False)
    when they are cached already and no refresh is asked for. An active job for the same key is joined.

    Raises jobs.submit.PublishFailed when the broker refuses the message (the job is then failed).
    """
    if not refresh and request.cached(data_dir):
        return None, False
    return submit(
        store,
        publish,
        queue,
        FID_REFERENCE,
        request.to_params(refresh, batch_size),
        data_dir=data_dir,
        lock=request.lock,
        join_states=ACTIVE_STATES,
    )


def waiting_message(job_id: str) -> str:
    """What an FID job says while its reference statistics are being computed (GET /jobs/<id> links it)."""
    return f"waiting for reference statistics job {job_id}"
