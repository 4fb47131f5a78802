"""Stored FID results as table rows (one per result and N, every metric with its N, data set and
warnings), for GET /fid, its Markdown and the FID plot, with the report's Table 1 figure beside each.

ddpm/fid/results.py is torch-free, so the API reads the results without loading the evaluator.
"""

from __future__ import annotations

from typing import Any

from ddpm.fid import results
from jobs.settings import Settings
from models import list_archs
from service.schemas import iso

# The report's figures are FID at N = 4096 on CIFAR-10 after 100 epochs: beside a row of another data
# set or another N they would be read as comparable when they are not.
REPORT_DATASET, REPORT_N = "cifar10", 4096


def result_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row per (stored result, N), newest result first, with the report's figure where comparable."""
    report = {a["name"]: a for a in list_archs()}
    rows = []
    for row in results.table_rows(results.list_results(settings.data_dir)):
        spec = report.get(row.get("arch"), {})
        comparable = row.get("dataset") == REPORT_DATASET
        rows.append(
            {
                **row,
                "created": iso(row.get("created")),
                "report_name": spec.get("report_name"),
                "report_fid": spec.get("report_fid") if comparable else None,
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    table = results.markdown_table(rows)
    if not rows:
        table += "\n(no results yet: POST /fid queues an evaluation)\n"
    report = [
        f"| {row['arch']} | {row['report_name']} | {row['report_fid']} |"
        for row in {r["arch"]: r for r in rows if r.get("report_fid") is not None}.values()
    ]
    if report:
        table += (
            f"\nThe report's Table 1 (CIFAR-10, 100 epochs, N={REPORT_N}, one run each):\n\n"
            "| arch | report name | report FID |\n|---|---|---:|\n" + "\n".join(report) + "\n"
        )
    return table
