"""`ddpm bench --fid`: the phases of an FID job, each against the matmul rate measured right before it.

Two parts:
- **Inception standalone**: pytorch-fid's network called as it is (eager) and on the FID fast path
  (ddpm/fid/inception.py) at one batch size, paired with the yardstick like every `ddpm bench` row; the
  work is counted once on the plain network (11.4 GFLOP per image) and the fast path's features are
  compared with the plain network's (relative error per row).
- **A job's phases** on one checkpoint (a given one, or a fresh untrained one of the first `--archs` at
  `--width`: speed does not depend on training): sampling N images as the job does (checkpoint load
  included), Inception features of the generated images and of N reference images of the data set,
  statistics, and pytorch-fid's distance. Each phase is timed once, right after a yardstick product.
  The same work counts (ddpm/fid/throughput.py) are what every FID job records on its result.
"""

from __future__ import annotations

import statistics as stats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm.bench.measure import MatmulYardstick, paired, sync_device
from ddpm.fid.throughput import (
    PhaseWork,
    distance_gflop,
    inception_gflop,
    phase_records,
    sampling_gflop,
    statistics_gflop,
)
from ddpm.sampler_spec import SamplerSpec


def inception_rows(
    device: torch.device, yardstick: MatmulYardstick, batch: int, pairs: int
) -> list[dict[str, Any]]:
    """Inception at `batch` images: eager (pytorch-fid's module) and the fast path, each a paired figure."""
    from ddpm.fid.features import inception_features, load_inception

    plain = load_inception(device, fast=False)
    fast = load_inception(device, fast=True)
    gflop = inception_gflop(plain)
    images = torch.randint(
        0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    reference = inception_features(images, plain, batch, device)
    ours = inception_features(images, fast, batch, device)
    error = float(np.max(np.linalg.norm(ours - reference, axis=1) / np.linalg.norm(reference, axis=1)))
    rows = []
    for name, model in (("eager", plain), ("fast", fast)):
        pairing = paired(
            lambda m=model: inception_features(images, m, batch, device),
            batch * gflop * 1e9,
            yardstick,
            pairs,
        )
        rows.append(
            {
                "path": name,
                "batch": batch,
                "seconds": pairing.seconds,
                "images_per_s": batch / pairing.seconds,
                "gflop_per_image": gflop,
                "matmul_gflops": pairing.matmul_flops_per_s / 1e9,
                "fraction": pairing.fraction,
                "max_rel_error": None if name == "eager" else error,
            }
        )
    return rows


def fresh_checkpoint(folder: Path, arch: str, width: float, image_size: int, dataset: str) -> Path:
    """An untrained checkpoint with the metadata the trainer writes (speed does not depend on weights)."""
    from ddpm.checkpoints import Checkpoint, save_checkpoint
    from ddpm.training import TrainConfig
    from models import build_model

    torch.manual_seed(0)
    config = TrainConfig(arch=arch, dataset=dataset, width=width, image_size=image_size, max_steps=1)
    model = build_model(config.arch, **config.model_options())
    meta = {
        "run_id": "bench-fid",
        "arch": arch,
        "model_config": model.config.to_dict(),
        "train_config": config.to_dict(),
        "step": 0,
        "epoch": 0,
        "time": 0.0,
    }
    path = folder / "step-00000000.safetensors"
    save_checkpoint(path, Checkpoint(meta=meta, model=model.state_dict()))
    return path


def job_phases(
    checkpoint: Path,
    n: int,
    spec: SamplerSpec,
    dataset: str,
    data_dir: Path,
    batch: int,
    device: torch.device,
    yardstick: MatmulYardstick,
    fast_inception: bool = True,
) -> dict[str, Any]:
    """Each phase of an FID job at N = n once, with the rate measured right before it."""
    from ddpm.checkpoints import read_meta
    from ddpm.data import load_dataset
    from ddpm.fid.features import feature_statistics, frechet_distance, inception_features, load_inception
    from ddpm.fid.reference import reference_size
    from ddpm.sampling import sample_checkpoint

    meta = read_meta(checkpoint)
    image_size = int(meta.get("train_config", {}).get("image_size", 32))
    model = load_inception(device, fast=fast_inception)
    real = load_dataset(dataset, data_dir, reference_size(dataset, image_size)).images[:n]
    rates: list[float] = []

    def timed(call: Callable[[], Any]) -> tuple[Any, float]:
        rates.append(yardstick.measure())
        sync_device(device)
        start = time.perf_counter()
        value = call()
        sync_device(device)
        return value, time.perf_counter() - start

    (images, sample_meta), sampling_s = timed(
        lambda: sample_checkpoint(checkpoint, n, 0, spec, None, None, str(device), batch)
    )
    generated, features_s = timed(lambda: inception_features(images, model, batch, device))
    reference, reference_s = timed(lambda: inception_features(real, model, batch, device))
    (mu, sigma), statistics_s = timed(lambda: feature_statistics(generated))
    mu_ref, sigma_ref = feature_statistics(reference)
    _, distance_s = timed(lambda: frechet_distance(mu, sigma, mu_ref, sigma_ref))
    per_inception = inception_gflop(model)
    works = {
        "sampling": PhaseWork(n, sampling_s, sampling_gflop(sample_meta, spec.nfe)),
        "features": PhaseWork(n, features_s, per_inception),
        "reference": PhaseWork(len(real), reference_s, per_inception),
        "statistics": PhaseWork(n, statistics_s, statistics_gflop()),
        "distance": PhaseWork(n, distance_s, distance_gflop(n)),
    }
    # Each phase against the product timed right before it (a neighbour's load slows both).
    records = {name: work.as_record(rate) for (name, work), rate in zip(works.items(), rates, strict=True)}
    summary = phase_records({}, stats.median(rates))
    return {
        **summary,
        "phases": records,
        "n": n,
        "sampler": spec.describe(),
        "checkpoint": str(checkpoint),
        "inception": "fast" if fast_inception else "eager",
    }


def run_fid_bench(
    device: torch.device,
    yardstick: MatmulYardstick,
    checkpoint: Path | None,
    arch: str,
    width: float,
    image_size: int,
    n: int,
    spec: SamplerSpec,
    dataset: str,
    data_dir: Path,
    batch: int,
    pairs: int,
    fast_inception: bool = True,
) -> dict[str, Any]:
    inception = inception_rows(device, yardstick, batch, pairs)
    print(format_inception(inception), "\n", flush=True)  # the job's phases take minutes
    with tempfile.TemporaryDirectory(prefix="bench-fid-") as folder:
        path = checkpoint or fresh_checkpoint(Path(folder), arch, width, image_size, dataset)
        phases = job_phases(path, n, spec, dataset, data_dir, batch, device, yardstick, fast_inception)
    return {"inception": inception, "job": phases}


def format_inception(rows: list[dict[str, Any]]) -> str:
    lines = [
        "Inception (pytorch-fid, pool3), fraction of the yardstick rate:",
        "| path | batch | images/s | GFLOP/img | fraction | max rel. err |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        error = "-" if row["max_rel_error"] is None else f"{row['max_rel_error']:.1e}"
        lines.append(
            f"| {row['path']} | {row['batch']} | {row['images_per_s']:.2f} | {row['gflop_per_image']:.2f} | "
            f"{row['fraction']:.2f} | {error} |"
        )
    return "\n".join(lines)


def format_job(job: dict[str, Any]) -> str:
    lines = [
        f"FID job phases, N = {job['n']}, {job['sampler']}, {job['inception']} Inception (rate median "
        f"{job['matmul_gflops']:.0f} GFLOP/s):",
        "| phase | images | seconds | images/s | GFLOP/img | fraction |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    total = 0.0
    for name, phase in job["phases"].items():
        total += phase["seconds"]
        gflop = "-" if phase["gflop_per_image"] is None else f"{phase['gflop_per_image']:.3g}"
        fraction = "-" if phase["fraction"] is None else f"{phase['fraction']:.2f}"
        lines.append(
            f"| {name} | {phase['images']} | {phase['seconds']:.1f} | {phase['images_per_s']:.2f} | {gflop} | "
            f"{fraction} |"
        )
    lines.append(f"| all phases | | {total:.1f} | | | |")
    return "\n".join(lines)
