"""Workers' heartbeats: <prefix>:worker:<hostname> holds what a live worker says about itself (host,
queue, device, ...) and expires when it stops beating, so /readyz and /metrics can list live workers."""

from __future__ import annotations

import json
import time
from typing import Any

import redis


class WorkerRegistry:
    def __init__(self, client: redis.Redis, prefix: str = "ddpm") -> None:
        self.client = client
        self.prefix = prefix

    def key(self, hostname: str) -> str:
        return f"{self.prefix}:worker:{hostname}"

    def beat(self, hostname: str, info: dict[str, Any], ttl_s: int) -> None:
        self.client.set(self.key(hostname), json.dumps({**info, "seen": time.time()}), ex=ttl_s)

    def forget(self, hostname: str) -> None:
        self.client.delete(self.key(hostname))

    def alive(self) -> list[dict[str, Any]]:
        keys = sorted(self.client.scan_iter(match=self.key("*"), count=100))
        values = self.client.mget(keys) if keys else []
        return [json.loads(v) for v in values if v]
