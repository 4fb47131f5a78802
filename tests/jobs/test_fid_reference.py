"""One reference-statistics job per key, on a real Redis: requests at once join one job, a cached key
queues none, and an ended job frees the key for the next request."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from ddpm.errors import InvalidOption
from ddpm.fid.reference_cache import cached_references, reference_features_path, reference_path
from jobs.fid_reference import ReferenceRequest, reference_job
from jobs.records import FID_REFERENCE
from jobs.settings import Settings
from jobs.store import JobStore

REQUEST = ReferenceRequest("digits", 16)


@pytest.fixture
def store(settings: Settings, request: pytest.FixtureRequest) -> JobStore:
    prefix = f"{settings.key_prefix}:unit-{request.node.name[:40]}"
    return JobStore.from_url(settings.redis_url, prefix, ttl_s=600)


class Published:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, job_id: str, queue: str | None) -> None:
        with self.lock:
            self.messages.append((kind, job_id, queue))


def test_requests_at_once_queue_one_job(store: JobStore, tmp_path: Path) -> None:
    published = Published()
    answers: list[tuple[str | None, bool]] = []
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        answers.append(reference_job(store, published, "q", tmp_path, REQUEST))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = {job_id for job_id, _ in answers}
    assert len(ids) == 1 and sum(created for _, created in answers) == 1
    (job_id,) = ids
    assert published.messages == [(FID_REFERENCE, job_id, "q.interactive")]  # the evaluation queue
    job = store.get(job_id)
    assert job["kind"] == FID_REFERENCE and job["params"]["key"] == REQUEST.key
    assert job["params"]["image_size"] == 16 and job["lock"] == REQUEST.lock


def test_an_ended_job_frees_the_key_and_a_cached_key_queues_nothing(store: JobStore, tmp_path: Path) -> None:
    published = Published()
    first, created = reference_job(store, published, "q", tmp_path, REQUEST)
    assert created and first is not None
    assert store.cancel(first) == "cancelled"  # a cancelled job is not joined: the next request queues anew
    second, created = reference_job(store, published, "q", tmp_path, REQUEST)
    assert created and second != first

    # Cached: nothing is queued, unless a refresh is asked for (which joins the active job, if any).
    path = reference_path(tmp_path, REQUEST.dataset, REQUEST.image_size)
    path.parent.mkdir(parents=True)
    with path.open("wb") as handle:
        np.savez(handle, mu=np.zeros(3), sigma=np.eye(3), n=np.int64(1797), identity=np.str_("digits"))
    assert reference_job(store, published, "q", tmp_path, REQUEST) == (None, False)
    assert reference_job(store, published, "q", tmp_path, REQUEST, refresh=True) == (second, False)
    assert len(published.messages) == 2

    (listed,) = cached_references(tmp_path)
    assert (listed.key, listed.n, listed.identity, listed.features) == (REQUEST.key, 1797, "digits", False)
    reference_features_path(tmp_path, REQUEST.dataset, REQUEST.image_size).write_bytes(b"")
    assert [entry.features for entry in cached_references(tmp_path)] == [True]  # not listed as statistics


def test_keys_name_what_changes_the_numbers() -> None:
    assert ReferenceRequest("digits", 16).key != ReferenceRequest("digits", 32).key
    assert ReferenceRequest("cifar10", 64).key == ReferenceRequest("cifar10", 32).key  # CIFAR-10 is 32 px
    assert ReferenceRequest("folder:a", 32).key != ReferenceRequest("folder:b", 32).key
    with pytest.raises(InvalidOption, match="unknown dataset 'mnist'"):
        _ = ReferenceRequest("mnist", 32).key
    with pytest.raises(InvalidOption, match=r"image size must be an integer in \[1, 1024\]"):
        _ = ReferenceRequest("digits", 0).key
