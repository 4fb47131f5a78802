"""PNG figures of runs and results, drawn with matplotlib's Agg canvas (no display, no torch).

Each function builds its own `Figure` (never pyplot's global state), so renders in concurrent worker
threads of the API do not share anything but matplotlib's font cache.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ddpm.smoothing import smooth_ema  # the one smoother: the study report's final loss uses it too

DPI = 100
RAW_ALPHA = 0.25  # raw loss: thin and translucent, under the smoothed curve (as TensorBoard draws it)
REPORT_N = 4096  # the report's Table 1 used 4096 samples


@dataclass(frozen=True)
class Size:
    width_px: int = 800
    height_px: int = 450

    @property
    def inches(self) -> tuple[float, float]:
        return self.width_px / DPI, self.height_px / DPI


@dataclass(frozen=True)
class LossSeries:
    label: str  # the run: "<arch>: run <id>"
    steps: Sequence[float]
    losses: Sequence[float]
    steps_per_epoch: int | None  # for the epoch axis on top; None when the run has not said yet


@dataclass(frozen=True)
class FidCurve:
    """FID against N for one evaluated checkpoint (one line; a single N is a lone marker)."""

    arch: str
    dataset: str
    label: str
    points: Sequence[tuple[int, float]]  # (N, FID), N ascending
    intervals: Sequence[tuple[int, float, float]] = ()  # (N, low, high): the bootstrap's 95% interval
    kid: Sequence[tuple[int, float, float]] = ()  # (N, mean, std over subsets)
    # FID-infinity of the largest N: the line FID(N) = value + slope / N fitted over N in [low, high]
    fid_inf: tuple[float, float, int, int] | None = None


@dataclass(frozen=True)
class ReportFigure:
    arch: str
    label: str
    fid: float
    n: int = REPORT_N


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def _figure(size: Size) -> Figure:
    return Figure(figsize=size.inches, dpi=DPI, layout="constrained")


def message_png(title: str, message: str, size: Size) -> bytes:
    """A figure that says why there is nothing to plot (an <img> on a page still shows something)."""
    figure = _figure(size)
    ax = figure.add_subplot()
    ax.set_axis_off()
    # parse_math off: a '$' in the text is a dollar sign, not the start of a formula that may not parse.
    ax.set_title(title, fontsize=11, parse_math=False)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="0.35", parse_math=False)
    return _png(figure)


def loss_png(runs: Sequence[LossSeries], smooth: float, log_scale: bool, size: Size) -> bytes:
    """The training loss per step, raw (thin, translucent) and smoothed, like the report's figure 10;
    several runs share the axes in different colours."""
    figure = _figure(size)
    ax = figure.add_subplot()
    single = len(runs) == 1
    for index, series in enumerate(runs):
        colour = f"C{index % 10}"
        line = smooth_ema(series.losses, smooth) if smooth > 0 else list(series.losses)
        if smooth > 0:  # the raw loss under its average, faint (smooth 0: the raw loss is the line)
            raw_label = "loss (raw)" if single else None
            ax.plot(
                series.steps, series.losses, color=colour, alpha=RAW_ALPHA, linewidth=0.7, label=raw_label
            )
        if single:
            label = f"smoothed ({smooth:g})" if smooth > 0 else "loss"
        else:
            label = f"{series.label} (step {series.steps[-1]:g}: {line[-1]:.4g})"
        ax.plot(series.steps, line, color=colour, linewidth=1.6 if smooth > 0 else 0.8, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("MSE loss (eps prediction)")
    if log_scale:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0, right=max(max(series.steps[-1] for series in runs), 1))
    per_epoch = {series.steps_per_epoch for series in runs}
    if len(per_epoch) == 1 and (steps := per_epoch.pop()):  # one epoch axis only when all runs share it
        top = ax.secondary_xaxis("top", functions=(lambda s: s / steps, lambda e: e * steps))
        top.set_xlabel("epoch", fontsize=9)
    if len(runs) == 1:
        only = runs[0]
        title = f"{only.label}\nstep {only.steps[-1]:g}, last loss {only.losses[-1]:.4g}"
    else:
        title = "training loss" + (f", smoothed ({smooth:g})" if smooth > 0 else "")
    ax.set_title(title, fontsize=10, parse_math=False)
    ax.legend(loc="upper right", fontsize=9 if len(runs) <= 4 else 7)
    return _png(figure)


def fid_png(
    curves: Sequence[FidCurve], report: Sequence[ReportFigure], note: str | None, size: Size
) -> bytes:
    """FID against the number of samples N (the report's figure 9), one line per evaluated checkpoint,
    with its bootstrap interval as error bars, its FID-infinity fit (FID = FID_inf + slope / N) dashed and
    the intercept marked, and the report's Table 1 figures (N=4096) as hollow stars in the same arch's
    colour. Beside it, when any evaluation has it, KID against N (mean and std over subsets)."""
    figure = _figure(size)
    with_kid = any(curve.kid for curve in curves)
    ax, kid_ax = figure.subplots(1, 2, width_ratios=(3, 2)) if with_kid else (figure.add_subplot(), None)
    archs = list(dict.fromkeys([c.arch for c in curves] + [r.arch for r in report]))
    colour = {arch: f"C{i % 10}" for i, arch in enumerate(archs)}
    for curve in curves:
        ns, fids = zip(*curve.points, strict=True)
        ax.plot(
            ns, fids, marker="o", markersize=4, linewidth=1.4, color=colour[curve.arch], label=curve.label
        )
        if curve.intervals:
            n_i, low, high = zip(*curve.intervals, strict=True)
            middle = [(a + b) / 2 for a, b in zip(low, high, strict=True)]
            half = [(b - a) / 2 for a, b in zip(low, high, strict=True)]
            ax.errorbar(n_i, middle, yerr=half, fmt="none", ecolor=colour[curve.arch], capsize=3, linewidth=1)
        if curve.fid_inf is not None:
            value, slope, n_low, n_high = curve.fid_inf
            grid = [n_low * (n_high / n_low) ** (i / 40) for i in range(41)] if n_high > n_low else [n_low]
            ax.plot(
                grid, [value + slope / n for n in grid], linestyle="--", linewidth=1, color=colour[curve.arch]
            )
            ax.annotate(
                f"FID-inf {value:.1f}",
                (n_high, value),
                fontsize=7,
                color=colour[curve.arch],
                xytext=(-6, -9),
                textcoords="offset points",
                ha="right",
                va="center",
            )
            ax.plot([n_high], [value], marker="_", markersize=14, color=colour[curve.arch])
        if kid_ax is not None and curve.kid:
            n_k, means, stds = zip(*curve.kid, strict=True)
            kid_ax.errorbar(
                n_k,
                [m * 1e3 for m in means],
                yerr=[s * 1e3 for s in stds],
                marker="o",
                markersize=4,
                capsize=3,
                linewidth=1.2,
                color=colour[curve.arch],
            )
    for figure_row in report:
        ax.plot(
            [figure_row.n],
            [figure_row.fid],
            marker="*",
            markersize=13,
            linestyle="none",
            markerfacecolor="none",
            markeredgecolor=colour[figure_row.arch],
            markeredgewidth=1.3,
            label=f"{figure_row.label}: report, N={figure_row.n}",
        )
    all_n = sorted({n for c in curves for n, _ in c.points} | {r.n for r in report})
    if all_n and all_n[-1] / max(all_n[0], 1) >= 8:  # sweeps often double N: a log axis spaces them evenly
        ax.set_xscale("log", base=2)
    if all_n:
        ax.set_xticks(all_n, [str(n) for n in all_n], fontsize=8, rotation=45 if len(all_n) > 6 else 0)
        ax.minorticks_off()
    ax.set_xlabel("N (number of samples)")
    ax.set_ylabel("FID")
    ax.grid(True, alpha=0.3)
    ax.set_title("FID against the number of samples" + (f"\n{note}" if note else ""), fontsize=10)
    ax.legend(fontsize=7, loc="upper right", ncols=1 if len(curves) + len(report) <= 8 else 2)
    if kid_ax is not None:
        kid_ns = sorted({n for c in curves for n, _, _ in c.kid})
        if kid_ns and kid_ns[-1] / max(kid_ns[0], 1) >= 8:
            kid_ax.set_xscale("log", base=2)
        kid_ax.set_xticks(kid_ns, [str(n) for n in kid_ns], fontsize=8, rotation=45 if len(kid_ns) > 6 else 0)
        kid_ax.minorticks_off()
        kid_ax.axhline(0, color="0.5", linewidth=0.8)
        kid_ax.set_xlabel("N (number of samples)")
        kid_ax.set_ylabel("KID x 10^3 (mean, std over subsets)")
        kid_ax.grid(True, alpha=0.3)
        kid_ax.set_title("KID: unbiased at any N", fontsize=10)
    return _png(figure)
