"""Container health probe for a worker: `python -m workers.health` exits 0 while this host's worker
heartbeat is in Redis (written every 10 s by workers/app.py, expiring after 30 s)."""

from __future__ import annotations

import socket
import sys

from jobs.registry import WorkerRegistry
from jobs.settings import get_settings
from jobs.store import JobStore


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
    if not alive:
        print(f"unhealthy: no worker heartbeat from host {host}", file=sys.stderr)
        return 1
    print(f"ok: {', '.join(w['hostname'] for w in alive)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
