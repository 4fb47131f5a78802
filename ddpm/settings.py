"""Where files go: one setting, DATA_DIR (default ./data), laid out as the service spec says."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_DIR = "./data"


def data_dir(override: str | Path | None = None) -> Path:
    return Path(override or os.environ.get("DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve()


def runs_dir(root: Path) -> Path:
    return root / "runs"


def samples_dir(root: Path) -> Path:
    return root / "samples"


def fid_dir(root: Path) -> Path:
    return root / "fid"


def classifiers_dir(root: Path) -> Path:
    return root / "classifiers"


def analysis_dir(root: Path) -> Path:
    return root / "analysis"
