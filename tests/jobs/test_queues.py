"""Trainings and interactive jobs go to separate queues; a worker consumes either or both."""

from __future__ import annotations

from jobs.publish import consumed_queues, queue_for
from jobs.records import KINDS


def test_only_the_long_kinds_share_the_training_queue() -> None:
    routed = {kind: queue_for(kind, "gpu") for kind in KINDS}
    assert {kind for kind, queue in routed.items() if queue == "gpu"} == {"train", "classifier"}
    assert all(
        queue == "gpu.interactive" for kind, queue in routed.items() if kind not in ("train", "classifier")
    )


def test_a_worker_consumes_both_queues_unless_told_otherwise() -> None:
    assert consumed_queues("gpu", "all") == ["gpu.interactive", "gpu"]
    assert consumed_queues("gpu", "train") == ["gpu"]
    assert consumed_queues("gpu", "interactive") == ["gpu.interactive"]
