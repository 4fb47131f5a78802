"""Stored analyses and classifiers as the API shows them: list rows, Markdown, full records, comparisons.

Reads through ddpm.classifier's torch-free modules (results, store); the comparison's chi-square test
loads scipy when called, never torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddpm.classifier import compare_records
from ddpm.storage import relative_to_volume
from service.schemas import iso

# "Measurably different" (docs/analysis.md): a histogram's distance from the data set is beyond what
# sampling noise gives at its N (the null's 95th percentile) and the chi-square test rejects at this level.
SIGNIFICANCE = 0.01

ROW_FIELDS = (
    "id",
    "kind",
    "arch",
    "run_id",
    "step",
    "epoch",
    "dataset",
    "image_size",
    "classifier",
    "n",
    "seed",
    "sampler",
    "steps",
    "nfe",
    "threshold",
    "confident_share",
    "mean_confidence",
    "label_accuracy",
    "warnings",
    "job_id",
)
CLASSIFIER_FIELDS = (
    "name",
    "arch",
    "dataset",
    "image_size",
    "channels",
    "class_names",
    "class_counts",
    "parameters",
    "split",
    "accuracy",
    "accuracy_ci95",
    "status",
    "ready",
    "error",
    "epoch",
    "step",
    "total_steps",
    "config",
    "history",
)


def analysis_links(result_id: str) -> dict[str, str]:
    return {"self": f"/analysis/{result_id}", "grid": f"/analysis/{result_id}/grid.png"}


def measurably_different(record: dict[str, Any]) -> bool:
    divergence = record.get("divergence") or {}
    return bool(
        divergence.get("total_variation", 0.0) > divergence.get("null_total_variation_p95", 1.0)
        and divergence.get("p_value", 1.0) < SIGNIFICANCE
    )


def row(record: dict[str, Any]) -> dict[str, Any]:
    """One analysis in a list: what it analysed, with what, and its headline numbers."""
    entropy = record.get("entropy") or {}
    divergence = record.get("divergence") or {}
    return {
        **{key: record.get(key) for key in ROW_FIELDS},
        "classes_present": entropy.get("classes_present"),
        "classes": len(record.get("class_names") or []),
        "entropy_normalised": entropy.get("normalised"),
        "total_variation": divergence.get("total_variation"),
        "null_total_variation_p95": divergence.get("null_total_variation_p95"),
        "p_value": divergence.get("p_value"),
        "measurably_different": measurably_different(record),
        "created": iso(record.get("created")),
        "links": analysis_links(str(record.get("id"))),
    }


def detail(record: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """The whole stored record (the engine's fields, docs/analysis.md) with the server's paths made
    relative to the data volume, its verdict and links."""
    shown = dict(record)
    if isinstance(shown.get("checkpoint"), str):
        shown["checkpoint"] = relative_to_volume(shown["checkpoint"], data_dir)
    return {
        **shown,
        "created": iso(record.get("created")),
        "measurably_different": measurably_different(record),
        "links": analysis_links(str(record.get("id"))),
    }


def comparison(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Two analyses' histograms side by side and how they differ (total variation, chi-square test of
    homogeneity); InvalidOption when their classes differ."""
    test = compare_records(first, second)
    names = first.get("class_names") or []
    first_classes, second_classes = first.get("classes") or [], second.get("classes") or []
    classes = [
        {
            "name": name,
            "first_share": a.get("share"),
            "first_share_ci95": a.get("share_ci95"),
            "second_share": b.get("share"),
            "second_share_ci95": b.get("share_ci95"),
            "dataset_share": a.get("dataset_share"),
            "first_confident_share": a.get("confident_share"),
            "second_confident_share": b.get("confident_share"),
        }
        for name, a, b in zip(names, first_classes, second_classes, strict=False)
    ]
    return {
        "first": row(first),
        "second": row(second),
        "comparison": {
            key: test[key] for key in ("total_variation", "chi_square", "dof", "p_value", "min_expected")
        },
        "significance": SIGNIFICANCE,
        "different": test["p_value"] < SIGNIFICANCE,
        "classes": classes,
    }


def _number(value: Any, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _p_value(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if value >= 1e-3 else f"{value:.1e}"


def _source(r: dict[str, Any]) -> str:
    if r["kind"] == "real":
        return "held-out real images"
    epoch = "" if r.get("epoch") is None else f", epoch {_number(r['epoch'], 2)}"
    return f"{r.get('arch')} {r.get('run_id')} step {r.get('step')}{epoch}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| id | source | classifier | sampler | N | classes | entropy / log K | TV (null p95) | chi-square p "
        "| confident share | different |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sampler = "" if r["kind"] == "real" else f"{r.get('sampler')} {r.get('steps') or ''}".strip()
        lines.append(
            f"| {r['id']} | {_source(r)} | {r.get('classifier')} | {sampler} | {r.get('n')} "
            f"| {r.get('classes_present')}/{r.get('classes')} | {_number(r.get('entropy_normalised'))} "
            f"| {_number(r.get('total_variation'))} ({_number(r.get('null_total_variation_p95'))}) "
            f"| {_p_value(r.get('p_value'))} "
            f"| {_number(r.get('confident_share'))} | {'yes' if r['measurably_different'] else 'no'} |"
        )
    if not rows:
        lines.append("| (no analyses yet: POST /analysis) | | | | | | | | | | |")
    return "\n".join(lines) + "\n"


def classifier_row(record: dict[str, Any], job_id: str | None) -> dict[str, Any]:
    return {
        **{key: record.get(key) for key in CLASSIFIER_FIELDS},
        "created": iso(record.get("created")),
        "updated": iso(record.get("updated")),
        "job_id": job_id,
        "links": {"job": f"/jobs/{job_id}"} if job_id else {},
    }
