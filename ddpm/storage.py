"""Atomic file writes: temp file in the same folder, fsync, rename, fsync the folder.

A reader sees the old file or the new one, never a partial one, even if the writer is killed. A write
that runs out of space raises NoSpace and leaves nothing behind: no temp file, no folder it created.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddpm.errors import DdpmError

MIB = 1024 * 1024
OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How libraries that do not raise OSError say it (safetensors' Rust writer: "IoError(Os { code: 28,
# kind: StorageFull, message: \"No space left on device\" })").
OUT_OF_SPACE_WORDS = re.compile(r"No space left on device|Disk quota exceeded|StorageFull|QuotaExceeded")


class NoSpace(DdpmError, OSError):
    """A write failed because its volume (or the writer's quota) is full. An OSError (ENOSPC) as well,
    so whatever already treats a failed write as an OSError (the job mirror's copy) still does."""

    def __init__(self, path: Path | None, detail: str = "") -> None:
        self.path = path
        where = f" while writing {path}" if path is not None else ""
        message = f"no space left on the volume{where}{f' ({detail})' if detail else ''}"
        super().__init__(errno.ENOSPC, message, None if path is None else str(path))

    def __str__(self) -> str:
        return str(self.strerror)


def out_of_space(err: BaseException) -> bool:
    """Whether `err`, or an error it was raised from, is a full volume or an exceeded quota."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NoSpace):
            return True
        if isinstance(current, OSError) and current.errno in OUT_OF_SPACE_ERRNOS:
            return True
        if OUT_OF_SPACE_WORDS.search(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


def written_path(err: BaseException) -> Path | None:
    """The file a failed write was writing, when the error says."""
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, NoSpace) and current.path is not None:
            return current.path
        if isinstance(current, OSError) and current.filename:
            return Path(os.fsdecode(current.filename))
        current = current.__cause__ or current.__context__
    return None


def free_bytes(folder: Path) -> int:
    """Free bytes for an unprivileged writer on the volume holding `folder` (its nearest existing parent)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def relative_to_volume(text: str, data_dir: Path) -> str:
    """`text` with every path under `data_dir` written relative to it (runs/x/run.json), so messages a
    client sees never carry the server's own paths."""
    root = re.escape(str(data_dir).rstrip("/"))
    # The root itself (followed by a separator or the end of the path) becomes "."; a longer name
    # that merely starts with it (/data vs /database) is left alone.
    return re.sub(root + r"(/|(?![\w.-]))", lambda m: "" if m.group(1) == "/" else ".", text)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """A hidden sibling name no reader looks for (readers glob visible names only)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temp_path), then make the result appear at `path` atomically. If it fails, the temp
    file and any folder made for it are removed (a full disk leaves no empty run folder behind); a full
    volume is raised as NoSpace."""
    created = _make_parents(path.parent)
    temp = temp_path_for(path)
    try:
        write(temp)
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        _fsync_dir(path.parent)
    except BaseException as err:
        temp.unlink(missing_ok=True)
        for folder in reversed(created):  # deepest first; only if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        if isinstance(err, Exception) and out_of_space(err) and not isinstance(err, NoSpace):
            raise NoSpace(path, str(err)) from err
        raise


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it made, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder == folder.parent:
            break
        folder = folder.parent
    made: list[Path] = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:  # made by a concurrent writer: not ours to remove
            continue
        except OSError as err:
            for undo in reversed(made):
                with contextlib.suppress(OSError):  # a concurrent writer's file is in it now
                    undo.rmdir()
            if out_of_space(err):
                raise NoSpace(folder, str(err)) from err
            raise
        made.append(folder)
    return made


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda temp: temp.write_bytes(data))


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
