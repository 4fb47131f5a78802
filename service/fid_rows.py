"""Stored FID results as table rows (one per result and N), for GET /fid, its Markdown and the FID plot.

ddpm/fid/results.py is torch-free, so the API reads the results without loading the evaluator.
"""

from __future__ import annotations

from typing import Any

from ddpm.fid import results
from jobs.settings import Settings
from models import list_archs
from service.schemas import iso


def result_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row per (stored result, N), newest result first, with the report's figure beside it."""
    report = {a["name"]: a for a in list_archs()}
    rows = []
    for record in results.list_results(settings.data_dir):
        spec = report.get(record.get("arch"), {})
        for n, value in _scores(record):
            rows.append(
                {
                    "result_id": record.get("id"),
                    **{key: record.get(key) for key in ROW_FIELDS},
                    "n": n,
                    "fid": value,
                    "report_name": spec.get("report_name"),
                    "report_fid": spec.get("report_fid"),
                    "created": iso(record.get("created")),
                }
            )
    return rows


ROW_FIELDS = ("arch", "run_id", "step", "epoch", "weights", "sampler", "steps", "seed", "dataset", "warnings")


def _scores(record: dict[str, Any]) -> list[tuple[int, float]]:
    """(N, FID) pairs: the evaluator stores `scores` rows; a `fid` mapping is read as well."""
    if isinstance(record.get("scores"), list):
        return [(int(s["n"]), float(s["fid"])) for s in record["scores"]]
    return sorted((int(n), float(v)) for n, v in (record.get("fid") or {}).items())


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| arch | report name | run | step | epoch | sampler | steps | N | FID | report FID (N=4096, 100 epochs) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        epoch = row.get("epoch")
        lines.append(
            f"| {row['arch']} | {row['report_name']} | {row['run_id']} | {row['step']} "
            f"| {'' if epoch is None else f'{epoch:.2f}'} | {row['sampler']} | {row['steps'] or ''} | {row['n']} "
            f"| {row['fid']:.3f} | {'' if row['report_fid'] is None else row['report_fid']} |"
        )
    if not rows:
        lines.append("| (no results yet: POST /fid) | | | | | | | | | |")
    return "\n".join(lines) + "\n"
