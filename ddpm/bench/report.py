"""The bench's tables and its estimates of the report's workloads, from measured rows."""

from __future__ import annotations

from collections.abc import Sequence

from ddpm.bench.measure import Row

CIFAR_IMAGES = 50_000
REPORT_EPOCHS = 100
REPORT_BATCH = 128
REPORT_FID_SAMPLES = 4096
REPORT_STEPS = 1000


# --- estimates for the report's workloads --------------------------------------------------------------


def training_hours(images_per_s: float, epochs: int = REPORT_EPOCHS) -> float:
    return CIFAR_IMAGES * epochs / images_per_s / 3600


def fid_sampling_hours(image_steps_per_s: float, samples: int = REPORT_FID_SAMPLES) -> float:
    """DDPM-1000 sampling of the FID set (Inception scoring is minutes on a GPU and not included)."""
    return samples * REPORT_STEPS / image_steps_per_s / 3600


# --- output ------------------------------------------------------------------------------------------


def format_table(rows: Sequence[Row]) -> str:
    header = (
        "| arch | mode | batch | path | s/call | throughput | GFLOP/img | GFLOP/s | matmul GFLOP/s "
        "| fraction | peak MiB | first call s | rel. err |"
    )
    lines = [header, "|" + "---|" * 13]
    for row in rows:
        unit = "img-steps/s" if row.mode == "sample" else "img/s"
        peak = "-" if row.peak_mb is None else f"{row.peak_mb:,.0f}"
        error = "-" if row.max_rel_error is None else f"{row.max_rel_error:.1e}"
        lines.append(
            f"| {row.arch} | {row.mode} | {row.batch} | {row.path} | {row.seconds:.4f} "
            f"| {row.throughput:,.1f} {unit} | {row.gflop_per_image:.2f} | {row.gflops:,.1f} "
            f"| {row.matmul_gflops:,.0f} | {row.fraction:.2f} | {peak} | {row.first_call_s:.2f} | {error} |"
        )
    return "\n".join(lines)


def format_summary(rows: Sequence[Row]) -> str:
    """One line per arch: the fraction of the yardstick rate per (mode, batch), eager -> fast path,
    with the fast path's throughput and largest relative error against eager."""
    columns = sorted({(r.mode, r.batch) for r in rows}, key=lambda c: (c[0] != "sample", c[1]))
    header = (
        "| arch | GFLOP/img-step | GFLOP/img trained | "
        + " | ".join(f"{m} b{b}" for m, b in columns)
        + " | max rel. err |"
    )
    lines = [header, "|---|---:|---:|" + "---:|" * len(columns) + "---:|"]
    for arch in dict.fromkeys(r.arch for r in rows):
        mine = [r for r in rows if r.arch == arch]
        cells = []
        for mode, batch in columns:
            pair = [r for r in mine if (r.mode, r.batch) == (mode, batch)]
            eager = next((r for r in pair if r.path == "eager"), None)
            fast = next((r for r in pair if r.path != "eager"), None)
            unit = "img-steps/s" if mode == "sample" else "img/s"
            if eager and fast:
                cells.append(f"{eager.fraction:.2f} -> {fast.fraction:.2f} ({fast.throughput:,.1f} {unit})")
            elif pair:
                cells.append(f"{pair[0].fraction:.2f} ({pair[0].throughput:,.1f} {unit})")
            else:
                cells.append("-")
        errors = [r.max_rel_error for r in mine if r.max_rel_error is not None]
        # The yardstick of each mode this run measured (a count, never derived from the other mode's).
        counts = {r.mode: f"{r.gflop_per_image:.2f}" for r in mine}
        error = f"{max(errors):.1e}" if errors else "-"
        lines.append(
            f"| {arch} | {counts.get('sample', '-')} | {counts.get('train', '-')} | "
            + " | ".join(cells)
            + f" | {error} |"
        )
    return "\n".join(lines)


def format_estimates(rows: Sequence[Row]) -> str:
    """Per arch, from its fastest fast-path rows: 100 CIFAR-10 epochs and a 4096-sample DDPM-1000 set."""
    best: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.path == "eager" and any(r.arch == row.arch and r.path != "eager" for r in rows):
            continue
        entry = best.setdefault(row.arch, {})
        entry[row.mode] = max(entry.get(row.mode, 0.0), row.throughput)
    lines = ["| arch | 100 epochs CIFAR-10 (h) | 4096 samples, 1000 steps (h) |", "|---|---:|---:|"]
    for arch, entry in best.items():
        train = f"{training_hours(entry['train']):.1f}" if "train" in entry else "-"
        fid = f"{fid_sampling_hours(entry['sample']):.2f}" if "sample" in entry else "-"
        lines.append(f"| {arch} | {train} | {fid} |")
    return "\n".join(lines)
