"""The bench's tables and its estimates of the report's workloads, from measured rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ddpm.bench.measure import Row
from ddpm.sampler_spec import SamplerSpec

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


# --- a 4096-sample FID per sampler ---------------------------------------------------------------------

# No GPU has run the bench yet (docs/performance.md), so a GPU's hours are the work divided by an assumed
# sustained rate: an H200 peaks at ~989 dense bf16 / ~494 TF32 TFLOP/s; small UNets at batch 128 reach
# a fraction of that. Replace it with the rate scripts/gpu_bench.sh measures once it has run.
GPU_ASSUMED_TFLOPS = 150.0
# FLOPs of one image through pytorch-fid's InceptionV3 (resize to 299 included, up to pool3), counted by
# torch.utils.flop_counter.FlopCounterMode on the converted weights (2 FLOPs per multiply-add; torchvision
# lists Inception v3 at 5.71 G multiply-adds). The GPU column's features are this work at the assumed rate.
INCEPTION_GFLOP_PER_IMAGE = 11.42


def fid_cost_estimates(
    rows: Sequence[Row],
    specs: Sequence[SamplerSpec],
    samples: int = REPORT_FID_SAMPLES,
    features_per_s: float | None = None,
    gpu_tflops: float = GPU_ASSUMED_TFLOPS,
) -> list[dict[str, Any]]:
    """Hours of a `samples`-image FID per arch and sampler: sampling at the arch's fastest measured
    sampling rate (network calls only: noise draws and updates are ~0.1% of a step), plus Inception
    features at `features_per_s` when given; and the GPU's hours at `gpu_tflops` (an estimate): the
    counted FLOPs of the network calls, and of Inception's features."""
    best: dict[str, Row] = {}
    for row in rows:
        if row.mode == "sample" and (row.arch not in best or row.throughput > best[row.arch].throughput):
            best[row.arch] = row
    estimates = []
    for arch, row in best.items():
        for spec in specs:
            image_steps = samples * spec.nfe
            sampling_h = image_steps / row.throughput / 3600
            features_h = None if features_per_s is None else samples / features_per_s / 3600
            gpu_sampling_h = image_steps * row.gflop_per_image / (gpu_tflops * 1e3) / 3600
            gpu_features_h = samples * INCEPTION_GFLOP_PER_IMAGE / (gpu_tflops * 1e3) / 3600
            estimates.append(
                {
                    "arch": arch,
                    "sampler": spec.describe(),
                    "label": f"{spec.sampler} {spec.steps} ({spec.nfe} calls)",
                    "nfe": spec.nfe,
                    "samples": samples,
                    "measured_batch": row.batch,
                    "sampling_h": sampling_h,
                    "features_h": features_h,
                    "total_h": sampling_h + (features_h or 0.0),
                    "gpu_sampling_h": gpu_sampling_h,
                    "gpu_features_h": gpu_features_h,
                    "gpu_total_h": gpu_sampling_h + gpu_features_h,
                    "gpu_tflops_assumed": gpu_tflops,
                }
            )
    return estimates


def format_fid_costs(estimates: Sequence[dict[str, Any]], device: str) -> str:
    if not estimates:
        return "no sampling rows: run with --modes sample"
    first = estimates[0]
    features = first["features_h"] is not None
    lines = [
        f"4096-sample FID, hours on {device} at each arch's best measured sampling rate"
        + (" (+ Inception features)" if features else " (sampling only)")
        + f"; GPU: counted FLOPs at an assumed {first['gpu_tflops_assumed']:g} TFLOP/s (an estimate)",
        f"| arch | sampler | network calls | {device} sampling (h) | "
        + ("with features (h) | " if features else "")
        + "GPU sampling (min) | GPU with features (min) |",
        "|---|---|---:|---:|" + ("---:|" if features else "") + "---:|---:|",
    ]
    for e in estimates:
        total = f" {e['total_h']:.2f} |" if features else ""
        lines.append(
            f"| {e['arch']} | {e['sampler']} | {e['nfe']} | {e['sampling_h']:.2f} |{total} "
            f"{e['gpu_sampling_h'] * 60:.2f} | {e['gpu_total_h'] * 60:.2f} |"
        )
    return "\n".join(lines)


def format_fid_cost_matrix(estimates: Sequence[dict[str, Any]], device: str) -> str:
    """The same estimates, one row per arch and one column per sampler: '<device> h / GPU min', with
    Inception features in both when their rate was given (the GPU's always)."""
    samplers = list(dict.fromkeys(e["label"] for e in estimates))
    with_features = bool(estimates) and estimates[0]["features_h"] is not None
    cpu_key = "total_h" if with_features else "sampling_h"
    lines = [
        f"4096-sample FID per sampler: {device} hours"
        + (" with features" if with_features else " (sampling only)")
        + " / GPU minutes with features (estimate)",
        "| arch | " + " | ".join(samplers) + " |",
        "|---|" + "---:|" * len(samplers),
    ]
    for arch in dict.fromkeys(e["arch"] for e in estimates):
        mine = {e["label"]: e for e in estimates if e["arch"] == arch}
        cells = [f"{mine[s][cpu_key]:.2f} h / {mine[s]['gpu_total_h'] * 60:.2f} min" for s in samplers]
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
