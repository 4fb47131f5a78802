"""Atomic writes on a full volume: NoSpace, and nothing left behind (no temp file, no empty folder)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ddpm.storage import (
    NoSpace,
    atomic_write,
    atomic_write_json,
    out_of_space,
    relative_to_volume,
    written_path,
)


def _full(temp: Path) -> None:
    temp.write_bytes(b"half")
    raise OSError(errno.ENOSPC, "No space left on device", str(temp))


def test_a_full_volume_raises_no_space_and_leaves_no_folder_behind(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "new-run" / "run.json"
    with pytest.raises(NoSpace) as raised:
        atomic_write(path, _full)
    assert raised.value.path == path and out_of_space(raised.value)
    assert not (tmp_path / "runs").exists()  # the folders made for it are gone, temp file and all
    # An existing folder is kept, and so is a file already in it.
    atomic_write_json(tmp_path / "runs" / "old-run" / "run.json", {"ok": True})
    with pytest.raises(NoSpace):
        atomic_write(tmp_path / "runs" / "old-run" / "run.json", _full)
    assert [p.name for p in (tmp_path / "runs" / "old-run").iterdir()] == ["run.json"]


def test_other_failures_keep_their_type_and_clean_up_too(tmp_path: Path) -> None:
    def broken(temp: Path) -> None:
        raise ValueError("not serialisable")

    with pytest.raises(ValueError, match="not serialisable"):
        atomic_write(tmp_path / "a" / "b" / "x.json", broken)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "err",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        # safetensors' Rust writer does not raise OSError; it says so in its message.
        RuntimeError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        ),
    ],
)
def test_out_of_space_is_recognised_however_it_is_raised(err: Exception) -> None:
    assert out_of_space(err)
    try:
        try:
            raise err
        except Exception as inner:
            raise RuntimeError("while saving the checkpoint") from inner
    except RuntimeError as outer:
        assert out_of_space(outer)  # through the chain of causes


def test_other_errors_are_not_out_of_space() -> None:
    assert not out_of_space(OSError(errno.EACCES, "Permission denied"))
    assert not out_of_space(ValueError("space is a word"))
    assert written_path(OSError(errno.ENOSPC, "full", "/data/runs/x/run.json")) == Path(
        "/data/runs/x/run.json"
    )


def test_paths_are_named_relative_to_the_volume() -> None:
    data = Path("/srv/ddpm/data")
    text = "checkpoint /srv/ddpm/data/runs/x/checkpoints/step-00000001.safetensors is corrupt (in /srv/ddpm/data)"
    assert (
        relative_to_volume(text, data)
        == "checkpoint runs/x/checkpoints/step-00000001.safetensors is corrupt (in .)"
    )
    assert relative_to_volume("/srv/ddpm/database/x", data) == "/srv/ddpm/database/x"
