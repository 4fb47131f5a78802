"""Measure what docs/fid.md's metrics section quotes (run on a quiet machine; they print their commands).

    python -m ddpm.fid.study frechet-speed [--rows 4096] [--repeats 3]
    python -m ddpm.fid.study real-vs-real --dataset digits --image-size 16 --n 256,512,898 [--seed 0]
        [--kid-subset-size 128]

`frechet-speed` times one 2048 x 2048 Frechet distance by pytorch-fid (scipy's sqrtm) and by the
symmetric-eigenproblem path (ddpm.fid.frechet), from full-rank pool3-like statistics, and reports how
far apart the two values are. `real-vs-real` splits a dataset's cached reference feature set (all
digits: ddpm fid-reference computes it) into two disjoint seeded halves and scores the first N rows of
one half against the other with every metric: what each metric says when there is nothing to find.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ddpm.fid.frechet import FrechetReference
from ddpm.fid.metrics import knn_radii
from ddpm.fid.options import FEATURE_DIMS, PR_NEIGHBOURS, MetricOptions, parse_n_list
from ddpm.fid.reference import ReferenceFeatures, load_reference_features, reference_features_path
from ddpm.fid.results import markdown_table, table_rows
from ddpm.fid.scoring import score_features
from ddpm.settings import data_dir as default_data_dir


def pool3_like_features(rows: int, seed: int) -> np.ndarray:
    """Non-negative, correlated 2048-d features (full-rank covariance when rows > 2048)."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(12345).standard_normal((FEATURE_DIMS, FEATURE_DIMS)) / np.sqrt(
        FEATURE_DIMS
    )
    spectrum = np.geomspace(2.0, 0.01, FEATURE_DIMS)
    return np.abs((rng.standard_normal((rows, FEATURE_DIMS)) * spectrum) @ mixing + 0.3)


def _best_and_median(times: list[float]) -> str:
    return f"{min(times):.2f} / {np.median(times):.2f}"


def frechet_speed(rows: int, repeats: int) -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance

    generated, real = pool3_like_features(rows, 1), pool3_like_features(rows, 2)
    mu1, sigma1 = generated.mean(axis=0), np.cov(generated, rowvar=False)
    mu2, sigma2 = real.mean(axis=0), np.cov(real, rowvar=False)
    slow_times, fast_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        expected = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
        slow_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    reference = FrechetReference(mu2, sigma2)
    setup = time.perf_counter() - start
    for _ in range(repeats):
        start = time.perf_counter()
        value = reference.distance(mu1, sigma1)
        fast_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    projected = reference.project(generated)
    projection = time.perf_counter() - start
    rng = np.random.default_rng(0)
    print(f"{rows} rows per side, {FEATURE_DIMS} dims, {repeats} repeats (best / median seconds)")
    print(f"pytorch-fid calculate_frechet_distance (sqrtm):   {_best_and_median(slow_times)}")
    print(f"reference square root, once per reference (eigh): {setup:.2f}")
    print(f"fast distance from (mu, sigma) (2 products + eigvalsh): {_best_and_median(fast_times)}")
    print(f"features projected once (X A):                    {projection:.2f}")
    for n in sorted({rows, 1024, 256}):
        times = []
        for _ in range(repeats):
            resample = rng.integers(0, n, size=n)  # a bootstrap replicate of the first n rows
            start = time.perf_counter()
            projected.distance(resample)
            times.append(time.perf_counter() - start)
        form = "n x n Gram" if n - 1 < FEATURE_DIMS else "d x d"
        print(f"fast distance of a resample of {n} rows ({form} eigvalsh): {_best_and_median(times)}")
    print(f"values: {expected!r} vs {value!r} (from statistics), {projected.distance()!r} (from features)")
    print(f"relative difference: {abs(value - expected) / expected:.1e}")


def real_vs_real(
    dataset: str, image_size: int, counts: list[int], seed: int, data_dir: Path, kid_size: int | None
) -> None:
    path = reference_features_path(data_dir, dataset, image_size)
    cached = load_reference_features(path, None)
    if cached is None:
        raise SystemExit(
            f"no reference feature set at {path}: run ddpm fid-reference --dataset {dataset} first"
        )
    order = np.random.default_rng(seed).permutation(len(cached.features))
    half = len(order) // 2
    first, second = cached.features[order[:half]], cached.features[order[half:]]
    if max(counts) > len(first):
        raise SystemExit(f"the first half has {len(first)} rows; ask for N <= {len(first)}")
    held_out = ReferenceFeatures(
        second, knn_radii(second, PR_NEIGHBOURS), order[half:], len(second), seed, path
    )
    options = replace(MetricOptions(), seed=seed, kid_subset_size=kid_size)
    start = time.perf_counter()
    scoring = score_features(
        first,
        counts,
        second.mean(axis=0),
        np.cov(second, rowvar=False),
        options,
        held_out,
        None,
        {"inception_score": "not measured here"},
    )
    record = {
        "arch": "real digits" if dataset == "digits" else f"real {dataset}",
        "dataset": f"{dataset} (half A vs held-out half B, {len(second)} images)",
        "scores": [row.to_dict() for row in scoring.scores.values()],
        "warnings": scoring.warnings,
    }
    print(
        f"{dataset} {image_size}px: {len(first)} vs {len(second)} held-out images (split seed {seed}); "
        f"metrics in {time.perf_counter() - start:.0f} s"
    )
    print(markdown_table(table_rows([record])), end="")
    for row in scoring.scores.values():
        if row.kid is not None:
            inside = abs(row.kid.mean) <= row.kid.std
            print(
                f"N={row.n}: KID {row.kid.mean:.2e} +- {row.kid.std:.1e} (subsets of {row.kid.subset_size}): "
                f"{'within' if inside else 'outside'} one std of 0; FID {row.fid:.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("frechet-speed")
    speed.add_argument("--rows", type=int, default=4096)
    speed.add_argument("--repeats", type=int, default=3)
    real = commands.add_parser("real-vs-real")
    real.add_argument("--dataset", default="digits")
    real.add_argument("--image-size", type=int, default=32)
    real.add_argument("--n", default="256,512")
    real.add_argument("--seed", type=int, default=0)
    real.add_argument("--kid-subset-size", type=int, help="default min(1000, N // 2, held-out rows // 2)")
    real.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    if args.command == "frechet-speed":
        frechet_speed(args.rows, args.repeats)
    else:
        root = default_data_dir(args.data_dir)
        counts = parse_n_list(args.n)
        real_vs_real(args.dataset, args.image_size, counts, args.seed, root, args.kid_subset_size)


if __name__ == "__main__":
    main()
