"""Request batching only where the engine promises an image the same bits in any batch."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from workers.batching import Batch, Member, gather, shares_batches_exactly


class _NoJobs:
    def take(self, key: str) -> Any:
        raise AssertionError("a batch was gathered where images would depend on it")


def test_jobs_share_batches_only_where_images_do_not_depend_on_their_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert shares_batches_exactly("cpu")  # NCHW padded to 16s (tests/ddpm/test_fastpath.py)
    monkeypatch.setenv("DDPM_COMPILE", "1")  # a compiled CPU path: not promised
    assert not shares_batches_exactly("cpu")
    leader = Member(job={"id": "leader"}, spec=SimpleNamespace(n=10), report=None)  # type: ignore[arg-type]
    batch = Batch([leader])
    gather(None, _NoJobs(), "key", batch)  # type: ignore[arg-type]
    assert batch.members == [leader]
