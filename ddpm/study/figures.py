"""The study report's figures as PNG bytes: loss curves overlaid (the report's figure 10) and FID against
N (its figure 9). matplotlib's Agg canvas on a Figure of its own (no pyplot state, no display, no torch)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ddpm.smoothing import smooth_ema
from ddpm.study.results import LOSS_SMOOTHING, MemberResult

DPI = 100
SIZE = (8.0, 4.5)  # inches
RAW_ALPHA = 0.15


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer, metadata={"Software": None})  # no version: same bytes
    return buffer.getvalue()


def _empty(ax: object, message: str) -> None:
    ax.set_axis_off()  # type: ignore[attr-defined]
    ax.text(0.5, 0.5, message, ha="center", va="center", color="0.35", parse_math=False)  # type: ignore[attr-defined]


def loss_png(results: Sequence[MemberResult], weight: float = LOSS_SMOOTHING) -> bytes:
    """Every member's training loss per step: raw faint, smoothed (debiased EMA at `weight`) on top."""
    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    drawn = [result for result in results if result.losses]
    if not drawn:
        _empty(ax, "no training steps logged yet")
        return _png(figure)
    for index, result in enumerate(drawn):
        colour = f"C{index % 10}"
        steps = [step for step, _ in result.losses]
        losses = [loss for _, loss in result.losses]
        smoothed = smooth_ema(losses, weight)
        ax.plot(steps, losses, color=colour, alpha=RAW_ALPHA, linewidth=0.6)
        ax.plot(steps, smoothed, color=colour, linewidth=1.6, label=f"{result.key} ({smoothed[-1]:.4f})")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE loss (eps prediction)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"training loss, raw (faint) and smoothed (EMA {weight:g})", fontsize=10, parse_math=False)
    ax.legend(loc="upper right", fontsize=8)
    return _png(figure)


def fid_png(
    results: Sequence[MemberResult], report_fids: dict[str, tuple[int, float]] | None = None
) -> bytes:
    """FID against N per member, with each N's bootstrap 95% interval as error bars; the report's own
    figure (N, FID) as a star where given (CIFAR-10 studies only: other data sets are not comparable)."""
    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    scored = [result for result in results if result.scores()]
    if not scored:
        _empty(ax, "no FID yet")
        return _png(figure)
    for index, result in enumerate(scored):
        colour = f"C{index % 10}"
        rows = sorted(result.scores().values(), key=lambda row: row.n)
        ns = [row.n for row in rows]
        fids = [row.fid for row in rows]
        below = [row.fid - row.fid_interval.low if row.fid_interval else 0.0 for row in rows]
        above = [row.fid_interval.high - row.fid if row.fid_interval else 0.0 for row in rows]
        ax.errorbar(ns, fids, yerr=[below, above], color=colour, marker="o", capsize=3, label=result.key)
        if report_fids and result.variant in report_fids:
            n, fid = report_fids[result.variant]
            ax.plot([n], [fid], marker="*", markersize=12, color=colour, linestyle="none")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (samples; each N is a prefix of one sample set)")
    ax.set_ylabel("FID")
    ax.grid(True, alpha=0.3)
    title = "FID against N, bootstrap 95% intervals"
    if report_fids:
        title += "; stars: the report's Table 1"
    ax.set_title(title, fontsize=10, parse_math=False)
    ax.legend(fontsize=8)
    return _png(figure)
