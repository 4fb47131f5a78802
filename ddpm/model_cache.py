"""Networks a long-lived process keeps between jobs: the last checkpoints' networks and FID's Inception.

A worker that samples the same checkpoint twice, or scores FID twice, pays the load (reading the
file, building the network, folding Inception's batch norms) once. The cache is bounded by the bytes
of the networks' parameters and buffers (`DDPM_MODEL_CACHE_MB`, set by the worker at start; 0, the
default in other processes, keeps nothing), least recently used out first. A checkpoint's entry is
keyed by its path, size and modification time, so a rewritten file is loaded again; networks are in
eval mode and sampling never changes their weights, so a kept network is as good as a fresh one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import torch

Loaded = tuple[torch.nn.Module, dict[str, Any]]


def network_bytes(model: torch.nn.Module) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class ModelCache:
    def __init__(self, budget_bytes: int = 0) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[Hashable, tuple[Loaded, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.loads = 0

    def get(self, key: Hashable, load: Callable[[], Loaded]) -> Loaded:
        """The kept network for `key`, or `load()`'s, kept if the budget allows."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                (model, meta), _ = self._entries[key]
                return model, dict(meta)
        model, meta = load()
        self.loads += 1
        size = network_bytes(model)
        with self._lock:
            if size <= self.budget_bytes:
                self._entries[key] = ((model, meta), size)
                while sum(s for _, s in self._entries.values()) > self.budget_bytes:
                    self._entries.popitem(last=False)
        return model, dict(meta)

    def held_bytes(self) -> int:
        with self._lock:
            return sum(size for _, size in self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = ModelCache()


def process_cache() -> ModelCache:
    return _cache


def set_budget_mb(megabytes: int) -> None:
    """This process's budget (the worker calls it at start); entries over a smaller budget go."""
    _cache.budget_bytes = megabytes * 2**20
    if _cache.held_bytes() > _cache.budget_bytes:
        _cache.clear()


def file_key(path: Path, *extra: Hashable) -> tuple[Hashable, ...]:
    """A key that changes when the file is replaced or rewritten."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return (str(resolved), stat.st_size, stat.st_mtime_ns, *extra)
