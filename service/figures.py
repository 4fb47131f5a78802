"""What the figures show, shaped from runs and stored results: a run's loss series, one FID curve per
evaluated checkpoint and sampler, the report's Table 1 figures beside CIFAR-10 curves. service/plots.py
draws them; service/routes/plots.py serves them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ddpm.runs import RunDir
from jobs.settings import Settings
from models import list_archs
from service import plots
from service.fid_rows import result_rows

MAX_FID_CURVES = 20  # a legend beyond this is unreadable; ?arch= narrows the plot
REPORT_DATASET = "cifar10"  # the report's figures are CIFAR-10 FIDs


def loss_series(run: RunDir) -> plots.LossSeries | None:
    record = run.read()
    rows = run.loss_history()
    if not rows:
        return None
    return plots.LossSeries(
        label=f"{record.get('arch', '?')}: run {run.run_id}",
        steps=[row["step"] for row in rows],
        losses=[row["loss"] for row in rows],
        steps_per_epoch=record.get("steps_per_epoch"),
    )


def loss_png(runs: Sequence[RunDir], smooth: float, log_scale: bool, size: plots.Size) -> bytes:
    series = [s for s in map(loss_series, runs) if s is not None]
    if not series:
        record = runs[0].read()
        title = f"{record.get('arch', '?')}: run {runs[0].run_id}"
        return plots.message_png(title, f"no loss recorded yet (run status: {record.get('status')})", size)
    return plots.loss_png(series, smooth, log_scale, size)


def fid_curves(rows: Iterable[dict[str, Any]], limit: int) -> tuple[list[plots.FidCurve], int]:
    """One curve per evaluated checkpoint and sampler setting (the newest score wins at each N): the
    `limit` most recently evaluated, in a stable order, and how many there were in all."""
    by_key: dict[tuple[Any, ...], dict[int, dict[str, Any]]] = {}
    for row in rows:  # newest first, so keys are met newest first
        key = (row["arch"], row["run_id"], row["step"], row["sampler"], row["steps"], row["dataset"])
        by_key.setdefault(key, {}).setdefault(int(row["n"]), row)
    newest = list(by_key)[:limit]
    datasets = {key[5] for key in newest}
    curves = []
    for key in sorted(newest, key=repr):
        arch, run_id, step, sampler, steps, dataset = key
        how = str(sampler) if sampler == "ddpm" or not steps else f"{sampler} {steps}"
        label = f"{run_id} @ {step} ({how}{', ' + str(dataset) if len(datasets) > 1 else ''})"
        by_n = sorted(by_key[key].items())
        largest = by_n[-1][1]
        curves.append(
            plots.FidCurve(
                arch=arch,
                dataset=dataset,
                label=label,
                points=[(n, float(row["fid"])) for n, row in by_n],
                intervals=[
                    (n, row["fid_low"], row["fid_high"]) for n, row in by_n if row.get("fid_low") is not None
                ],
                kid=[(n, row["kid"], row["kid_std"]) for n, row in by_n if row.get("kid") is not None],
                fid_inf=(
                    (largest["fid_inf"], largest["fid_inf_slope"], *largest["fid_inf_n"])
                    if largest.get("fid_inf") is not None and largest.get("fid_inf_n")
                    else None
                ),
            )
        )
    return curves, len(by_key)


def fid_png(
    settings: Settings, archs: list[str] | None, dataset: str | None, report: bool, size: plots.Size
) -> bytes:
    rows = [
        row
        for row in result_rows(settings)
        if (not archs or row["arch"] in archs) and (dataset is None or row["dataset"] == dataset)
    ]
    curves, evaluated = fid_curves(rows, MAX_FID_CURVES)
    if not curves:
        which = f" for {', '.join(archs)}" if archs else ""
        where = f" on {dataset}" if dataset else ""
        return plots.message_png(
            "FID against the number of samples",
            f"no FID results yet{which}{where}\nPOST /fid with n_samples: [1024, 2048, 4096] draws one",
            size,
        )
    notes = []
    if evaluated > len(curves):
        notes.append(f"the {len(curves)} newest of {evaluated} evaluations; ?arch= narrows it")
    figures = report_figures(curves) if report else []
    if report and not figures:
        notes.append("the report's figures (CIFAR-10, 100 epochs) belong to none of these")
    return plots.fid_png(curves, figures, "; ".join(notes) or None, size)


def report_figures(curves: Iterable[plots.FidCurve]) -> list[plots.ReportFigure]:
    """Table 1 of the report (CIFAR-10, N=4096) for each arch drawn with a CIFAR-10 curve: a digits FID
    is on another scale altogether, so the report's figure would mislead beside it."""
    on_report_data = {curve.arch for curve in curves if curve.dataset == REPORT_DATASET}
    return [
        plots.ReportFigure(arch=a["name"], label=a["report_name"], fid=a["report_fid"])
        for a in list_archs()
        if a["name"] in on_report_data and a["report_fid"] is not None
    ]
