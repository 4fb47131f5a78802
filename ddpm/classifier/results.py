"""Analysis results: the stored records and their grids, torch-free (the API process lists and reads them).

Each analysis is DATA_DIR/analysis/results/<id>.json plus <id>.png (the most confident images of each
class, one row per class). The PNG is written first and the JSON last, both atomically, so a listed
record always has its grid, and a failed or cancelled analysis leaves no record.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

from ddpm.errors import InvalidOption
from ddpm.settings import analysis_dir
from ddpm.storage import atomic_write_bytes, atomic_write_json

RECORD_FORMAT = "ddpm-arch-bench/analysis-result/1"
RESULT_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}$")
# Fields that differ between two runs of the same analysis; every other field is a pure function of
# the inputs (checkpoint or data, classifier, options) on the same kind of machine (device included).
VOLATILE_FIELDS = ("id", "created", "format", "timings", "grid_file")


def results_dir(data_dir: Path) -> Path:
    return analysis_dir(Path(data_dir)) / "results"


def new_result_id() -> str:
    """Sorts by creation time; the random tail keeps concurrent writers apart."""
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"


def check_result_id(result_id: Any) -> str:
    if not isinstance(result_id, str) or not RESULT_ID_PATTERN.match(result_id):
        raise InvalidOption(f"invalid analysis id {result_id!r}; ids look like 20250101-120000-a1b2c3d4")
    return result_id


def grid_path(data_dir: Path, result_id: str) -> Path:
    return results_dir(data_dir) / f"{check_result_id(result_id)}.png"


def save_analysis(data_dir: Path, record: dict[str, Any], grid_png: bytes) -> str:
    """Store the record (plus id, created, format, grid_file) and its grid; returns the id."""
    result_id = new_result_id()
    stored = {
        **record,
        "id": result_id,
        "created": time.time(),
        "format": RECORD_FORMAT,
        "grid_file": f"{result_id}.png",
    }
    json.dumps(stored)  # fail before touching the disk if the record is not JSON
    atomic_write_bytes(grid_path(data_dir, result_id), grid_png)
    atomic_write_json(results_dir(data_dir) / f"{result_id}.json", stored)
    return result_id


def list_analyses(data_dir: Path) -> list[dict[str, Any]]:
    """Every stored record, newest first; unreadable files are skipped (temp files are hidden names)."""
    folder = results_dir(data_dir)
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


def read_analysis(data_dir: Path, result_id: str) -> dict[str, Any]:
    path = results_dir(data_dir) / f"{check_result_id(result_id)}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidOption(
            f"no analysis {result_id!r}; GET /analysis or `ddpm analyse --list` lists them"
        ) from None


def stable_part(record: dict[str, Any]) -> dict[str, Any]:
    """The record without the fields that legitimately differ between two runs (ids, times, device)."""
    return {key: value for key, value in record.items() if key not in VOLATILE_FIELDS}


def compare_records(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """How two analyses' class histograms differ: total variation distance and a chi-square test of
    homogeneity (scipy, imported here only). Both must use the same classes."""
    if first.get("class_names") != second.get("class_names"):
        raise InvalidOption(
            f"analyses {first.get('id')} and {second.get('id')} have different classes "
            f"({first.get('class_names')} vs {second.get('class_names')}); compare analyses of one data set"
        )
    from ddpm.classifier.stats import compare_counts

    return {
        "first": first.get("id"),
        "second": second.get("id"),
        **compare_counts(first["counts"], second["counts"]),
    }
