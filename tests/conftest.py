"""Shared fixtures: tiny models and checkpoints that tests can build in a second."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

TINY_WIDTH = 0.125  # every channel count / 8 (minimum 8): baseline becomes (8, 16, 32, 32)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DATA_DIR with downloads off, so nothing here ever reaches for the network."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("DATA_DIR", str(root))
    monkeypatch.setenv("DDPM_DOWNLOAD", "0")
    return root


def make_image_folder(folder: Path, count: int, size: int = 32, seed: int = 0) -> Path:
    """`count` random RGB PNGs of varying sizes (the loader crops and resizes them)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        shape = (size + 4 * (i % 3), size + 2 * (i % 2), 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"img{i:03d}.png")
    return folder


# The running stack for the API, job-plane and worker tests: Redis, real Celery workers, API clients.
pytest_plugins = ("tests.stack",)


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pytorch-fid's weights converted once per session from the TorchScript (no download) into a
    temporary TORCH_HOME, for the workers the service tests start (they get it in their environment);
    this process's TORCH_HOME is left as it was. tests/ddpm/fid has its own, kept set for the session."""
    from ddpm.fid.weights import ensure_weights

    home = tmp_path_factory.mktemp("torch_home")
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    try:
        assert ensure_weights(download=False).path.is_file()
    finally:
        if previous is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = previous
    yield home
