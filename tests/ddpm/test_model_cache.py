"""Networks kept between jobs: loaded once, bounded by their bytes, reloaded when the file changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

import ddpm.sampling
from ddpm.checkpoints import Checkpoint, save_checkpoint
from ddpm.model_cache import ModelCache, file_key, network_bytes, process_cache, set_budget_mb
from ddpm.sampling import sample_checkpoint
from models import build_model
from tests.conftest import TINY_WIDTH


def _net(width: int) -> torch.nn.Module:
    return torch.nn.Linear(width, width)


def test_kept_networks_are_bounded_by_their_bytes_least_recently_used_out_first() -> None:
    size = network_bytes(_net(16))  # 16 x 16 weights + 16 biases, float32
    assert size == (16 * 16 + 16) * 4
    cache = ModelCache(budget_bytes=2 * size)
    loads: list[str] = []

    def loader(name: str):
        return lambda: (loads.append(name) or _net(16), {"name": name})

    a, meta = cache.get("a", loader("a"))
    assert cache.get("a", loader("a"))[0] is a and meta == {"name": "a"} and loads == ["a"]
    cache.get("b", loader("b"))
    cache.get("a", loader("a"))  # a is now the most recently used
    cache.get("c", loader("c"))  # over budget: b goes, not a
    assert cache.get("a", loader("a"))[0] is a and loads == ["a", "b", "c"]
    cache.get("b", loader("b"))
    assert loads == ["a", "b", "c", "b"] and cache.held_bytes() <= 2 * size
    # A network larger than the whole budget is used but not kept; a budget of 0 keeps nothing.
    big = ModelCache(budget_bytes=size - 1)
    assert big.get("a", loader("a"))[0] is not big.get("a", loader("a"))[0]


@pytest.fixture
def kept_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("pure_unet", width=TINY_WIDTH)
    meta = {"arch": "pure_unet", "model_config": model.config.to_dict(), "train_config": {"image_size": 16}}
    meta.update(step=1, epoch=1, run_id="kept")
    path = tmp_path / "step-00000001.safetensors"
    save_checkpoint(path, Checkpoint(meta=meta, model=model.state_dict()))
    return path


def test_a_second_sampling_of_the_same_checkpoint_loads_nothing(
    kept_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[Path] = []
    real = ddpm.sampling.load_model
    monkeypatch.setattr(
        ddpm.sampling, "load_model", lambda path, *a, **k: loads.append(path) or real(path, *a, **k)
    )
    set_budget_mb(64)
    try:
        args = dict(n=2, seed=0, sampler="ddim", steps=2, device="cpu")
        first, _ = sample_checkpoint(kept_checkpoint, **args)
        second, meta = sample_checkpoint(kept_checkpoint, **args)
        assert len(loads) == 1 and torch.equal(first, second) and meta["arch"] == "pure_unet"
        # The file replaced (a new size or modification time): loaded again.
        copy = kept_checkpoint.with_name("copy.safetensors")
        shutil.copy(kept_checkpoint, copy)
        os.replace(copy, kept_checkpoint)
        stat = kept_checkpoint.stat()
        os.utime(kept_checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        sample_checkpoint(kept_checkpoint, **args)
        assert len(loads) == 2
        assert file_key(kept_checkpoint)[2] == stat.st_mtime_ns + 10**9
    finally:
        set_budget_mb(0)
    assert process_cache().held_bytes() == 0
