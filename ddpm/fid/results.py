"""FID results: the result type, the stored table and its rows, torch-free (the API process imports this).

Each evaluation is one JSON file, DATA_DIR/fid/results/<id>.json, written atomically: a failed or
cancelled evaluation writes nothing, and a reader never sees half a record. Format 2 adds every
metric per N under `scores`; format 1 records (only n and fid per row) load unchanged.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddpm.fid.score_types import Scores
from ddpm.settings import fid_dir
from ddpm.storage import atomic_write_json

log = logging.getLogger("ddpm")

RECORD_FORMAT = "ddpm-arch-bench/fid-result/2"


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
    scores: dict[int, Scores] = field(default_factory=dict)  # every metric per N (fid repeated there)
    metrics: list[str] = field(default_factory=list)  # the metrics asked for
    metric_options: dict[str, Any] = field(default_factory=dict)  # MetricOptions.to_params()
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why it could not be computed
    reference_features: dict[str, Any] | None = None  # n, total, seed, chosen: KID's and P/R's reference rows
    # matmul_gflops and, per phase, images, seconds, gflop_per_image, images_per_s, fraction of the rate
    throughput: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The JSON record stored by save_result: one row per N under `scores`, every metric in it."""
        rows = [
            (self.scores[n] if n in self.scores else Scores(n, value)).to_dict()
            for n, value in sorted(self.fid.items())
        ]
        return {
            **self.checkpoint,
            **self.options,
            "scores": rows,
            "warnings": list(self.warnings),
            "reference": self.reference,
            "reference_path": self.reference_path,
            "timings": dict(self.timings),
            "metrics": list(self.metrics),
            "metric_options": dict(self.metric_options),
            "unavailable": dict(self.unavailable),
            "reference_features": self.reference_features,
            "throughput": dict(self.throughput),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> FidResult:
        """A stored record back as a result; records of format 1 (and the worker's `fid` map) load too."""
        scores = {row.n: row for row in record_scores(record)}
        known = {"checkpoint", "arch", "run_id", "step", "epoch", "weights"}
        option_keys = {
            "seed",
            "sampler",
            "steps",
            "eta",
            "nfe",
            "sampler_spec",
            "dataset",
            "n_samples",
            "device",
        }
        return cls(
            fid={n: row.fid for n, row in scores.items()},
            warnings=[str(w) for w in record.get("warnings") or []],
            reference=str(record.get("reference") or ""),
            timings={str(k): float(v) for k, v in (record.get("timings") or {}).items()},
            checkpoint={k: record.get(k) for k in known if k in record},
            options={k: record.get(k) for k in option_keys if k in record},
            reference_path=record.get("reference_path"),
            scores=scores,
            metrics=list(record.get("metrics") or ["fid"]),
            metric_options=dict(record.get("metric_options") or {}),
            unavailable=dict(record.get("unavailable") or {}),
            reference_features=record.get("reference_features"),
            throughput=dict(record.get("throughput") or {}),
        )


def record_scores(record: Mapping[str, Any]) -> list[Scores]:
    """The per-N rows of a stored record, N ascending: `scores` rows, or else a `fid` map {N: FID}."""
    if isinstance(record.get("scores"), list):
        rows = [Scores.from_dict(row) for row in record["scores"]]
    else:
        rows = [Scores(int(n), float(v)) for n, v in (record.get("fid") or {}).items()]
    return sorted(rows, key=lambda row: row.n)


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


RESULT_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}$")  # new_result_id's shape


def read_result(data_dir: Path, result_id: str) -> dict[str, Any] | None:
    """One stored record by id; None when there is none (or the id is not one new_result_id makes)."""
    if not RESULT_ID_PATTERN.match(result_id):
        return None
    try:
        record = json.loads((results_dir(Path(data_dir)) / f"{result_id}.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


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


# One row per (stored result, N): what GET /fid shows. The data set, N and the row's warnings are in
# every row, so a figure is never read without the conditions that qualify it.
ROW_KEYS = ("arch", "run_id", "step", "epoch", "weights", "sampler", "steps", "eta", "nfe", "seed", "dataset")
_PER_N = re.compile(r"^N=(\d+)\b")


def row_warnings(record_warnings: Iterable[str], n: int) -> list[str]:
    """The record's warnings that concern N = n: its own (they start with "N=<n>") and the general ones."""
    kept = []
    for warning in record_warnings:
        match = _PER_N.match(warning)
        if match is None or int(match.group(1)) == n:
            kept.append(warning)
    return kept


def table_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every stored evaluation (list_results' order) as rows, one per N, with all its metrics flattened.

    Metrics not computed are None; `unavailable` says why a metric could not be computed at all.
    """
    rows = []
    for record in records:
        unavailable = dict(record.get("unavailable") or {})
        features = record.get("reference_features") or {}
        try:
            scores = record_scores(record)
        except (KeyError, TypeError, ValueError) as err:  # written by hand, or by a newer version
            log.warning(
                "FID result %s does not read (%s: %s); left out of the table",
                record.get("id"),
                type(err).__name__,
                err,
            )
            continue
        for score in scores:
            interval, infinity, kid = score.fid_interval, score.fid_inf, score.kid
            pr, inception = score.precision_recall, score.inception_score
            rows.append(
                {
                    "result_id": record.get("id"),
                    "created": record.get("created"),
                    **{key: record.get(key) for key in ROW_KEYS},
                    "reference": record.get("reference"),
                    "n": score.n,
                    "fid": score.fid,
                    "fid_low": interval.low if interval else None,
                    "fid_high": interval.high if interval else None,
                    "fid_se": interval.se if interval else None,
                    "fid_inf": infinity.value if infinity else None,
                    "fid_inf_se": infinity.se if infinity else None,
                    "fid_inf_slope": infinity.slope if infinity else None,
                    "fid_inf_n": [infinity.points[0][0], infinity.points[-1][0]] if infinity else None,
                    "kid": kid.mean if kid else None,
                    "kid_std": kid.std if kid else None,
                    "precision": pr.precision if pr else None,
                    "recall": pr.recall if pr else None,
                    "inception_score": inception.mean if inception else None,
                    "inception_score_std": inception.std if inception else None,
                    "reference_features_n": features.get("n"),
                    "warnings": row_warnings(record.get("warnings") or [], score.n),
                    "unavailable": unavailable,
                }
            )
    return rows


MARKDOWN_COLUMNS = (
    "arch",
    "run",
    "step",
    "sampler",
    "data set",
    "N",
    "FID (95% interval)",
    "FID-inf (± se)",
    "KID x 10^3 (± std)",
    "precision",
    "recall",
    "IS",
    "warnings",
)


def _number(value: float | None, spec: str = ".2f") -> str:
    return "" if value is None else format(value, spec)


def _cell(text: Any) -> str:
    return "" if text is None else str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """table_rows as a Markdown table. Each row's warnings (and why a metric is missing) are numbered
    notes in its last column, written out in full under the table: visible, and said once."""
    lines = ["| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + "---|" * len(MARKDOWN_COLUMNS)]
    notes: dict[str, int] = {}
    for row in rows:
        fid = _number(row["fid"])
        if row.get("fid_low") is not None:
            fid += f" ({row['fid_low']:.2f} to {row['fid_high']:.2f})"
        infinity = _number(row.get("fid_inf"))
        if row.get("fid_inf_se") is not None:
            infinity += f" ± {row['fid_inf_se']:.2f}"
        kid = "" if row.get("kid") is None else f"{row['kid'] * 1e3:.2f} ± {row['kid_std'] * 1e3:.2f}"
        texts = list(row.get("warnings") or [])
        texts += [f"no {metric}: {why}" for metric, why in (row.get("unavailable") or {}).items()]
        marks = ", ".join(f"[{notes.setdefault(text, len(notes) + 1)}]" for text in texts)
        cells = [
            row.get("arch"),
            row.get("run_id"),
            row.get("step"),
            "" if row.get("sampler") is None else f"{row['sampler']} {row.get('steps') or ''}".strip(),
            row.get("dataset"),
            row["n"],
            fid,
            infinity,
            kid,
            _number(row.get("precision"), ".3f"),
            _number(row.get("recall"), ".3f"),
            _number(row.get("inception_score")),
            marks,
        ]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    if not rows:
        lines.append("| (no results yet) |" + " |" * (len(MARKDOWN_COLUMNS) - 1))
    if notes:
        lines.append("")
        lines += [f"[{number}] {_cell(text)}  " for text, number in notes.items()]
    return "\n".join(lines) + "\n"
