"""Nothing is ever unpickled: loading a checkpoint (to sample, or to resume training) resolves no Python
global through pickle, and a pickle disguised as a checkpoint is refused without running its payload.

Python raises the audit event `pickle.find_class` whenever an unpickler looks up a global (a class or
function: the only way a pickle runs code), so an audit hook sees any unpickling that could matter,
wherever it happens (torch.load, numpy, a library's own unpickler)."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from ddpm.checkpoints import load_checkpoint, load_model
from ddpm.errors import CheckpointError
from ddpm.runs import RunDir
from ddpm.training import TrainConfig, train

_LOOKUPS: list[tuple[Any, ...]] | None = None  # recording while a test sets it to a list


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "pickle.find_class" and _LOOKUPS is not None:
        _LOOKUPS.append(args)


sys.addaudithook(_audit)  # hooks cannot be removed; this one records only inside `unpickled()`


class unpickled:  # noqa: N801 (reads as a phrase: `with unpickled() as lookups`)
    """Collect every global any unpickler resolves inside the block."""

    def __enter__(self) -> list[tuple[Any, ...]]:
        global _LOOKUPS
        _LOOKUPS = []
        return _LOOKUPS

    def __exit__(self, *_: object) -> None:
        global _LOOKUPS
        _LOOKUPS = None


def test_the_audit_hook_sees_an_unpickling() -> None:
    with unpickled() as lookups:
        pickle.loads(pickle.dumps(Path("x")))
    assert lookups and lookups[0][1] in ("PosixPath", "WindowsPath")


class _Payload:
    """Unpickling this writes a marker file: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "the payload ran"))


def test_loading_and_resuming_unpickle_nothing(tmp_path: Path) -> None:
    config = TrainConfig(
        arch="baseline", dataset="digits", width=0.125, image_size=16, batch_size=8, max_steps=1
    )
    train(config, tmp_path, run_id="np", device="cpu")
    run = RunDir.of(tmp_path, "np")
    with unpickled() as lookups:
        load_model(run.latest_path)
        load_checkpoint(run.latest_path, training_state=True)
        resumed = train(
            TrainConfig(**{**config.to_dict(), "max_steps": 2}), tmp_path, run_id="np", device="cpu"
        )
    assert resumed.step == 2
    assert lookups == []


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_pickle_disguised_as_a_checkpoint_is_refused_unrun(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "step-00000001.safetensors"
    if how == "torch.save":
        torch.save({"model": _Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(marker)))
    with unpickled() as lookups:
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load_model(path)
        with pytest.raises(CheckpointError):
            load_checkpoint(path, training_state=True)
    assert lookups == [] and not marker.exists()
