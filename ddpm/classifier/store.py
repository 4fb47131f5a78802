"""Where classifiers live, readable without torch (the API lists and validates classifiers from it).

classifiers/<name>/classifier.json                  the record: data set, classes, split, accuracy, status
classifiers/<name>/classifier.safetensors           the finished classifier (what analyses load)
classifiers/<name>/history.csv                      epoch,step,loss,train_accuracy,holdout_accuracy,seconds
classifiers/<name>/checkpoints/latest.safetensors   the newest training state (each epoch end), for resume
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddpm.errors import InvalidOption
from ddpm.limits import CLASSIFIER_NAME_REGEX
from ddpm.runs import SUCCEEDED
from ddpm.settings import classifiers_dir
from ddpm.storage import atomic_write_json, read_json

NAME_PATTERN = re.compile(CLASSIFIER_NAME_REGEX)
WEIGHTS_FILE = "classifier.safetensors"
HISTORY_HEADER = ("epoch", "step", "loss", "train_accuracy", "holdout_accuracy", "seconds")


def check_classifier_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidOption(
            f"invalid classifier name {name!r}: 1-128 lower-case letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class ClassifierDir:
    path: Path

    @classmethod
    def of(cls, data_dir: Path, name: str) -> ClassifierDir:
        return cls(classifiers_dir(Path(data_dir)) / check_classifier_name(name))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def record_path(self) -> Path:
        return self.path / "classifier.json"

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE

    @property
    def history_path(self) -> Path:
        return self.path / "history.csv"

    @property
    def latest_path(self) -> Path:
        return self.path / "checkpoints" / "latest.safetensors"

    def exists(self) -> bool:
        return self.record_path.is_file()

    def read(self) -> dict[str, Any]:
        return read_json(self.record_path)

    def write(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.record_path, record)

    def update(self, **changes: Any) -> dict[str, Any]:
        record = {**self.read(), **changes, "updated": time.time()}
        self.write(record)
        return record


def is_ready(record: dict[str, Any]) -> bool:
    """A classifier an analysis can use: finished, with its weights written."""
    return record.get("status") == SUCCEEDED and bool(record.get("ready"))


def list_classifiers(data_dir: Path) -> list[dict[str, Any]]:
    """Every classifier's record, sorted by name; unreadable records are skipped."""
    root = classifiers_dir(Path(data_dir))
    if not root.is_dir():
        return []
    records = []
    for path in sorted(root.iterdir()):
        folder = ClassifierDir(path)
        if not NAME_PATTERN.match(path.name) or not folder.exists():
            continue
        try:
            record = folder.read()
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_classifier(data_dir: Path, name: str) -> dict[str, Any]:
    """The record of classifier `name`; InvalidOption naming the classifiers there are when absent."""
    folder = ClassifierDir.of(data_dir, name)
    if not folder.exists():
        names = [r.get("name") for r in list_classifiers(data_dir)]
        listed = (
            ", ".join(str(n) for n in names) if names else "none yet: `ddpm classifier train --dataset ...`"
        )
        raise InvalidOption(f"no classifier {name!r}; valid: {listed}")
    return folder.read()
