"""Container health probe for a worker: `python -m workers.health` exits 0 while this host's worker
heartbeat is in Redis (written every 10 s by workers/app.py, expiring after 30 s) and, for a worker
configured for a GPU (DDPM_DEVICE=cuda[:N]), while it runs on CUDA and this container still sees a GPU.

A worker asked for CUDA that cannot get it exits at start-up (workers/app.py), so it never beats; the
GPU checks here catch what can go wrong after that: a worker that reports a CPU device although CUDA
was asked for, and a GPU the container no longer sees (its /dev/nvidiaN device file is gone)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from typing import Any

from ddpm.device import GPU_DEVICE_NODES, gpu_device_nodes, wants_cuda
from jobs.registry import WorkerRegistry
from jobs.settings import get_settings
from jobs.store import JobStore


def assess(
    alive: Sequence[dict[str, Any]], host: str, configured: str, gpu_nodes: Sequence[str]
) -> tuple[bool, str]:
    """(healthy, what to print) for this host's live heartbeats and the device it was configured for."""
    if not alive:
        return False, f"unhealthy: no worker heartbeat from host {host}"
    names = ", ".join(w["hostname"] for w in alive)
    for worker in alive:
        requested = worker.get("device_requested") or configured
        device = str(worker.get("device", ""))
        if wants_cuda(requested) and not wants_cuda(device):
            return False, (
                f"unhealthy: worker {worker['hostname']} was configured for {requested} but runs on {device}"
            )
    if wants_cuda(configured) and not gpu_nodes:
        return False, (
            f"unhealthy: configured for {configured} (DDPM_DEVICE) but this container sees no GPU "
            f"(no {GPU_DEVICE_NODES})"
        )
    devices = ", ".join(sorted({str(w.get("device", "?")) for w in alive}))
    return True, f"ok: {names} on {devices}"


def main() -> int:
    settings = get_settings()
    store = JobStore.from_url(settings.redis_url, settings.key_prefix, settings.job_ttl_s, timeout_s=3)
    registry = WorkerRegistry(store.client, store.prefix)
    host = socket.gethostname()
    try:
        alive = [w for w in registry.alive() if w.get("host") == host]
    except Exception as err:
        print(f"unhealthy: cannot read heartbeats from Redis: {err}", file=sys.stderr)
        return 1
    healthy, message = assess(alive, host, settings.device, gpu_device_nodes())
    print(message, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
