"""FID results: the result type and the stored table, torch-free (the API process imports this).

Each evaluation is one JSON file, DATA_DIR/fid/results/<id>.json, written atomically: a failed or
cancelled evaluation writes nothing, and a reader never sees half a record.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddpm.settings import fid_dir
from ddpm.storage import atomic_write_json

RECORD_FORMAT = "ddpm-arch-bench/fid-result/1"


@dataclass
class FidResult:
    """What evaluate_checkpoint returns. `fid` maps each N to its FID (all N from one sample set)."""

    fid: dict[int, float]
    warnings: list[str]
    reference: str  # identity of the reference statistics: dataset, split, size, preprocessing
    timings: dict[str, float]  # seconds per phase
    checkpoint: dict[str, Any] = field(default_factory=dict)  # path, arch, run_id, step, epoch, weights
    options: dict[str, Any] = field(default_factory=dict)  # seed, sampler, steps, eta, dataset, n_samples
    reference_path: str | None = None  # the .npz the reference statistics came from

    def to_record(self) -> dict[str, Any]:
        """The JSON record stored by save_result: one row per N under `scores`."""
        return {
            **self.checkpoint,
            **self.options,
            "scores": [{"n": n, "fid": value} for n, value in sorted(self.fid.items())],
            "warnings": list(self.warnings),
            "reference": self.reference,
            "reference_path": self.reference_path,
            "timings": dict(self.timings),
        }


def results_dir(data_dir: Path) -> Path:
    return fid_dir(data_dir) / "results"


def new_result_id() -> str:
    """Sorts by creation time; the random tail keeps concurrent writers apart."""
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"


def save_result(data_dir: Path, record: dict[str, Any]) -> str:
    """Store `record` (plus `id`, `created`, `format`) as DATA_DIR/fid/results/<id>.json; returns the id."""
    result_id = new_result_id()
    stored = {**record, "id": result_id, "created": time.time(), "format": RECORD_FORMAT}
    json.dumps(stored)  # fail before touching the disk if the record is not JSON
    atomic_write_json(results_dir(Path(data_dir)) / f"{result_id}.json", stored)
    return result_id


def list_results(data_dir: Path) -> list[dict[str, Any]]:
    """Every stored record, newest first; unreadable files are skipped (temp files are hidden names)."""
    folder = results_dir(Path(data_dir))
    if not folder.is_dir():
        return []
    records = []
    for path in folder.glob("[!.]*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return sorted(records, key=lambda r: (float(r.get("created", 0.0)), str(r.get("id", ""))), reverse=True)
