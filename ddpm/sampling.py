"""The sampling engine: n seeded images from a checkpoint, as uint8 tensors and a PNG grid.

Image i of a seed depends only on (checkpoint, seed, i, the sampler and its options), not on n or the
batch size, so identical requests give byte-identical PNGs and a smaller n is a prefix of a larger one.

The sampler is a `SamplerSpec` (ddpm/sampler_spec.py) or, as before, a name with `steps` and `eta` beside
it; every function here accepts both.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm.checkpoints import load_model
from ddpm.compile_policy import CompileDecision, decide_compile
from ddpm.data import to_uint8
from ddpm.device import resolve_device
from ddpm.errors import InvalidOption
from ddpm.fastpath import FastPath, InferenceRunner, sampling_path
from ddpm.limits import MAX_NROW, MAX_SAMPLES
from ddpm.model_cache import file_key, process_cache
from ddpm.sampler_spec import SamplerSpec
from ddpm.samplers import ImageNoise, sample
from ddpm.schedule import make_schedule
from ddpm.storage import atomic_write_bytes

GRID_PADDING = 2  # torchvision's make_grid default, so grids look like the report's


Sampler = str | SamplerSpec  # a name (with steps and eta beside it) or a whole spec


def check_sample_options(
    n: int, sampler: Sampler, steps: int | None = None, eta: float | None = None, nrow: int = 10
) -> SamplerSpec:
    """Everything about a sampling request that can be checked without a file; the normalised spec."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise InvalidOption(f"n must be an integer in [1, {MAX_SAMPLES}], got {n!r}")
    if isinstance(nrow, bool) or not isinstance(nrow, int) or not 1 <= nrow <= MAX_NROW:
        raise InvalidOption(f"nrow must be an integer in [1, {MAX_NROW}], got {nrow!r}")
    return SamplerSpec.of(sampler, steps, eta)


@torch.inference_mode()
def generate_images(
    model: torch.nn.Module,
    n: int,
    seed: int,
    sampler: Sampler = "ddpm",
    steps: int | None = None,
    eta: float | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    image_size: int = 32,
    schedule_kind: str = "linear",
    progress: Callable[[int, int], None] | None = None,
    fast: FastPath | None = None,
) -> torch.Tensor:
    """uint8 images (n, C, H, W) sampled in batches; `progress(done, total)` counts network calls.

    The network runs on the device's fast path (ddpm/fastpath.py) unless `fast` says otherwise.
    """
    (images,) = generate_many(
        model, [(seed, n)], sampler, steps, eta, device, batch_size, image_size, schedule_kind, progress, fast
    )
    return images


@torch.inference_mode()
def generate_many(
    model: torch.nn.Module,
    requests: Sequence[tuple[int, int]],
    sampler: Sampler = "ddpm",
    steps: int | None = None,
    eta: float | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    image_size: int = 32,
    schedule_kind: str = "linear",
    progress: Callable[[int, int], None] | None = None,
    fast: FastPath | None = None,
) -> list[torch.Tensor]:
    """Several (seed, n) requests sharing network calls: their images are laid end to end and cut
    into batches of `batch_size`, each image keeping its own noise stream, so every request gets the
    images it would get alone (request batching in the service)."""
    spec = SamplerSpec.of(sampler, steps, eta)
    if not requests:
        return []
    for _seed, n in requests:
        check_sample_options(n, spec)
    schedule = make_schedule(schedule_kind)
    model = model.eval()
    eps_fn = InferenceRunner(model, fast if fast is not None else sampling_path(device))
    image_shape = (model.config.in_channels, image_size, image_size)
    chunks = _batches(requests, batch_size)
    steps_per_batch = spec.nfe  # network calls per batch
    total = steps_per_batch * len(chunks)
    out = []
    for index, chunk in enumerate(chunks):
        offset = index * steps_per_batch
        report = (
            None if progress is None else (lambda done, _t, offset=offset: progress(offset + done, total))
        )
        noise = ImageNoise.concat([ImageNoise(seed, size, first=first) for seed, first, size in chunk])
        x = sample(
            eps_fn,
            schedule,
            noise,
            spec,
            image_shape=image_shape,
            device=device,
            progress=report,
        )
        out.append(to_uint8(x))
    images = torch.cat(out)
    bounds = np.cumsum([0, *(n for _, n in requests)])
    return [images[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _batches(requests: Sequence[tuple[int, int]], batch_size: int) -> list[list[tuple[int, int, int]]]:
    """Cut the requests' images, in order, into batches of at most batch_size images; each batch is a
    list of (seed, first image index, count) segments."""
    if batch_size < 1:
        raise InvalidOption(f"batch_size must be >= 1, got {batch_size}")
    batches: list[list[tuple[int, int, int]]] = [[]]
    room = batch_size
    for seed, n in requests:
        first = 0
        while first < n:
            if room == 0:
                batches.append([])
                room = batch_size
            count = min(room, n - first)
            batches[-1].append((seed, first, count))
            first += count
            room -= count
    return batches


def grid_png(images: torch.Tensor, nrow: int = 10, padding: int = GRID_PADDING) -> bytes:
    """A deterministic PNG of uint8 images (N, C, H, W) laid out nrow per row, as make_grid does."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    from PIL import Image

    count, channels, height, width = images.shape
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    canvas = np.zeros(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels), dtype=np.uint8
    )
    pixels = images.permute(0, 2, 3, 1).numpy()
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        canvas[top : top + height, left : left + width] = pixels[index]
    buffer = io.BytesIO()
    Image.fromarray(canvas.squeeze(-1) if channels == 1 else canvas).save(
        buffer, format="PNG", compress_level=6
    )
    return buffer.getvalue()


def grid_size(n: int, nrow: int, image_size: int = 32, padding: int = GRID_PADDING) -> tuple[int, int]:
    """(width, height) in pixels of the grid grid_png draws for n images."""
    columns = min(nrow, n)
    rows = math.ceil(n / columns)
    return columns * (image_size + padding) + padding, rows * (image_size + padding) + padding


def sample_checkpoint(
    checkpoint: Path,
    n: int,
    seed: int,
    sampler: Sampler = "ddpm",
    steps: int | None = None,
    eta: float | None = None,
    device: str = "auto",
    batch_size: int = 128,
    prefer_ema: bool = True,
    progress: Callable[[int, int], None] | None = None,
    compile: CompileDecision | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Load a checkpoint (its EMA weights when it has them) and sample n images from it."""
    (images,), meta = sample_checkpoint_many(
        checkpoint, [(seed, n)], sampler, steps, eta, device, batch_size, prefer_ema, progress, compile
    )
    return images, meta


def sample_checkpoint_many(
    checkpoint: Path,
    requests: Sequence[tuple[int, int]],
    sampler: Sampler = "ddpm",
    steps: int | None = None,
    eta: float | None = None,
    device: str = "auto",
    batch_size: int = 128,
    prefer_ema: bool = True,
    progress: Callable[[int, int], None] | None = None,
    compile: CompileDecision | None = None,
    on_ready: Callable[[], None] | None = None,
) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """Load the checkpoint once and sample every (seed, n) request in shared batches. `on_ready` is
    called when the network is loaded and the first network call comes next; meta's `load_s` is the
    load (near 0 when the worker's model cache held it).

    Whether the network runs compiled is `compile`, or else decided from the requests' total size
    (`sampling_decision`); the returned meta (the checkpoint's) carries it as `compile`.
    """
    spec = SamplerSpec.of(sampler, steps, eta)
    for _, n in requests:
        check_sample_options(n, spec)
    torch_device = resolve_device(device)
    loading, hits = time.monotonic(), process_cache().hits
    model, meta = _load(checkpoint, torch_device, prefer_ema)
    # A copy: the cache's meta stays as loaded. `model_cached`: the worker held the network already.
    meta = {**meta, "load_s": time.monotonic() - loading, "model_cached": process_cache().hits > hits}
    if compile is None:
        compile = sampling_decision(meta, sum(n for _, n in requests), spec, torch_device)
    meta["compile"] = compile.to_dict()
    train_config = meta.get("train_config", {})
    if on_ready is not None:
        on_ready()
    images = generate_many(
        model,
        requests,
        spec,
        None,
        None,
        torch_device,
        batch_size,
        image_size=int(train_config.get("image_size", 32)),
        schedule_kind=train_config.get("schedule", "linear"),
        progress=progress,
        fast=sampling_path(torch_device, compile=compile.compiled),
    )
    return images, meta


def sampling_decision(
    meta: dict[str, Any], images: int, sampler: Sampler, device: torch.device | str
) -> CompileDecision:
    """Whether sampling `images` images with `sampler` from the checkpoint described by `meta` runs
    compiled (ddpm/compile_policy.py); the network's work per call is counted once per process."""
    from ddpm.compile_policy import compile_setting
    from ddpm.fid.throughput import sampling_gflop

    setting = compile_setting()
    spec = SamplerSpec.of(sampler)
    gflop = sampling_gflop(meta, 1) if setting == "auto" else None  # a flop count only when it decides
    return decide_compile(images, spec.nfe, gflop, torch.device(device).type, setting)


def _load(checkpoint: Path, device: torch.device, prefer_ema: bool) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The checkpoint's network, kept between jobs by a worker (ddpm/model_cache.py)."""
    try:
        key = file_key(checkpoint, "unet", str(device), prefer_ema)
    except OSError:  # missing or unreadable: load_model says so as a CheckpointError
        return load_model(checkpoint, device, prefer_ema=prefer_ema)
    return process_cache().get(key, lambda: load_model(checkpoint, device, prefer_ema=prefer_ema))


def write_grid(path: Path, images: torch.Tensor, nrow: int = 10) -> bytes:
    """Encode and write the grid atomically; returns the PNG bytes."""
    data = grid_png(images, nrow)
    atomic_write_bytes(path, data)
    return data
