"""Request batching: sampling jobs that can share network calls are announced on a Redis list.

Two grids can be sampled in the same batches when they come from the same weights with the same
sampler settings; seed, n and nrow may differ, because every image draws its noise from (seed, i) alone
(ddpm/sampling.py `generate_many`), so each grid stays byte-identical to sampling it alone. The API
pushes each new sampling job's id onto `<prefix>:batchable:<batch key>` before publishing it; a worker
that starts one of them pops the others and claims each through `JobStore.start`, as its own message
would (workers/batching.py). The list is only a hint: every job still has its own message, which runs
it if no batch claimed it first, and a stale id (cancelled, finished, running elsewhere) is refused
by `start`.

No torch here: the API uses this module too.
"""

from __future__ import annotations

import hashlib
import json

import redis

from jobs.specs import KEY_LENGTH, SampleSpec

# A queued job is normally claimed (or run by its own message) within seconds; the list outlives that
# by far, and expires once nobody adds to it.
LIST_TTL_S = 3600


def batch_key(spec: SampleSpec) -> str:
    """What must match for two sampling jobs to share batches: the weights and the sampler settings."""
    ref = spec.checkpoint
    shared = {
        "checkpoint": {"run_id": ref.run_id, "step": ref.step, "weights": ref.weights},
        **spec.sampler.cache_key(),
    }
    canonical = json.dumps(shared, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_LENGTH]


class BatchableJobs:
    """The lists of queued sampling jobs by batch key (FIFO: the oldest job is claimed first)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def list_key(self, key: str) -> str:
        return f"{self.prefix}:batchable:{key}"

    def offer(self, key: str, job_id: str) -> None:
        """Announce a queued job (the API, before publishing its message)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(self.list_key(key), job_id)
        pipe.expire(self.list_key(key), LIST_TTL_S)
        pipe.execute()

    def take(self, key: str) -> str | None:
        """The oldest job announced under this key, removed from the list."""
        return self.client.lpop(self.list_key(key))

    def put_back(self, key: str, job_id: str) -> None:
        """Return a job that did not fit to the front of the list, where the next batch finds it first."""
        self.client.lpush(self.list_key(key), job_id)

    def withdraw(self, key: str, job_id: str) -> None:
        """A job its own message started is no longer anyone's to claim."""
        self.client.lrem(self.list_key(key), 0, job_id)
