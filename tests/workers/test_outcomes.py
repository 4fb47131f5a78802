"""How a job ends: what an error records (a full volume, paths relative to the volume), the free-space
check before a job starts, and the outcome write waiting out a Redis outage."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import redis

from ddpm.errors import CheckpointError
from ddpm.storage import NoSpace
from workers.outcomes import low_space_outcome, outcome_of, record_outcome


def test_a_full_volume_fails_the_job_saying_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    err = NoSpace(data / "runs" / "r1" / "checkpoints" / "latest.safetensors", "No space left on device")
    outcome = outcome_of(err, "job1", data)
    assert outcome["state"] == "failed"
    assert outcome["error"].startswith(
        "no space left on the data volume (writing runs/r1/checkpoints/latest.safetensors; "
    )
    assert "MiB free); free space on it, then ask again" in outcome["error"]
    assert str(tmp_path) not in outcome["error"]
    # A plain OSError from a writer that is not ours (loss.csv appends, TensorBoard events) too.
    plain = OSError(errno.ENOSPC, "No space left on device", str(data / "runs" / "r1" / "loss.csv"))
    assert "writing runs/r1/loss.csv" in outcome_of(plain, "job1", data)["error"]
    # Out of the data volume: said, without naming the server's path.
    elsewhere = outcome_of(OSError(errno.ENOSPC, "No space left on device", "/tmp/x"), "job1", data)
    assert "outside the data volume" in elsewhere["error"] and "/tmp/x" not in elsewhere["error"]


def test_error_messages_name_paths_relative_to_the_volume(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r1" / "checkpoints" / "step-00000002.safetensors"
    outcome = outcome_of(CheckpointError(f"checkpoint {path} is corrupt or truncated"), "job1", tmp_path)
    assert (
        outcome["error"] == "checkpoint runs/r1/checkpoints/step-00000002.safetensors is corrupt or truncated"
    )
    crash = outcome_of(RuntimeError(f"cannot open {tmp_path}/datasets/x"), "job1", tmp_path)
    assert "internal error in the worker (RuntimeError: cannot open datasets/x)" in crash["error"]


def test_a_job_does_not_start_on_a_nearly_full_volume(tmp_path: Path) -> None:
    assert low_space_outcome(tmp_path, min_free_mb=0) is None
    outcome = low_space_outcome(tmp_path, min_free_mb=10**9)
    assert outcome is not None and outcome["state"] == "failed"
    assert "no space left on the data volume" in outcome["error"] and "DDPM_MIN_FREE_MB" in outcome["error"]


class FlakyStore:
    """finish() fails like a Redis that is down, `outage` times, then lands."""

    def __init__(self, outage: int) -> None:
        self.outage, self.calls = outage, 0

    def finish(self, job_id: str, **outcome: Any) -> bool:
        self.calls += 1
        if self.calls <= self.outage:
            raise redis.ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")
        return True


def test_the_outcome_write_waits_out_a_short_redis_outage(monkeypatch: Any) -> None:
    monkeypatch.setattr("workers.outcomes.RETRY_EVERY_S", 0.01)
    store = FlakyStore(outage=3)
    assert record_outcome(store, "job1", "token", {"state": "succeeded"}, wait_s=5) is True  # type: ignore[arg-type]
    assert store.calls == 4
    # Longer than the wait (a lease): it gives up, and the lease sweep re-queues the job.
    store = FlakyStore(outage=10**6)
    assert record_outcome(store, "job1", "token", {"state": "succeeded"}, wait_s=0.05) is False  # type: ignore[arg-type]
