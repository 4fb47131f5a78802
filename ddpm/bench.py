"""`ddpm bench`: throughput of every variant as a fraction of this machine's matrix rate, measured in
the same run, so figures hold on noisy shared machines.

The yardstick is counted once per variant with `torch.utils.flop_counter` on the plain eager network
at batch 1, with attention on its math backend: fused attention kernels are invisible to the counter
on CPU, and a faster (fused) path must not shrink the work it is credited with. Each timed call is
paired with a matmul timed right before it; a pair's fraction is (work FLOP / call time) / (matmul
FLOP / matmul time), and the median over pairs is reported, so a neighbour's burst of load slows both
halves of a pair rather than skewing the figure.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ddpm.fastpath import (
    BATCH_MULTIPLE,
    EAGER,
    EpsFn,
    FastPath,
    InferenceRunner,
    prepare_for_training,
    to_layout,
)
from ddpm.sampler_spec import SamplerSpec

CIFAR_IMAGES = 50_000
REPORT_EPOCHS = 100
REPORT_BATCH = 128
REPORT_FID_SAMPLES = 4096
REPORT_STEPS = 1000
EQUALITY_TOLERANCE = 1e-4  # relative error of the fast path against the eager reference, fp32


@dataclass
class Pairing:
    """Median figures over pairs of (reference matmul, timed call)."""

    seconds: float  # median time of one call
    matmul_flops_per_s: float  # median rate of the reference matmul
    fraction: float  # median of per-pair (call FLOP/s) / (matmul FLOP/s)


@dataclass
class Row:
    arch: str
    mode: str  # "sample" (one network call in eval/inference mode) or "train" (fwd + bwd + AdamW)
    batch: int
    path: str  # "eager" or the fast path's description
    seconds: float
    throughput: float  # image-steps/s when sampling, images/s when training
    gflop_per_image: float  # the yardstick: one image-step forward, or one image trained
    gflops: float  # achieved yardstick GFLOP/s
    matmul_gflops: float
    fraction: float
    peak_mb: float | None  # extra memory at peak over the state before the call
    first_call_s: float  # includes torch.compile's compile time and CUDA graph capture
    max_rel_error: float | None = None  # fast path vs eager on the same weights and inputs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchResult:
    device: str
    threads: int
    dtype: str
    matmul_size: int
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class MatmulYardstick:
    """A square matrix product in the machine's reference precision: fp32 on CPU, bf16 on a GPU.

    On CPU the same product is also run as a 1x1 convolution through oneDNN, and the faster of the
    two kernels is the yardstick: torch.mm goes to MKL, which on AMD processors takes slower code
    paths, so MKL alone would understate what the machine's convolutions can reach and inflate every
    fraction (docs/performance.md has both rates).
    """

    def __init__(self, device: torch.device, size: int | None = None) -> None:
        self.device = device
        self.dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        self.size = size or (8192 if device.type == "cuda" else 2048)
        self.repeats = 10 if device.type == "cuda" else 3
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(self.size, self.size, generator=generator).to(device, self.dtype)
        b = torch.randn(self.size, self.size, generator=generator).to(device, self.dtype)
        kernels: dict[str, Callable[[], Any]] = {"mm": lambda: torch.mm(a, b)}
        if device.type == "cpu" and self.size % 32 == 0:
            # (1, K, M/32, 32) x (N, K, 1, 1): the same M x K x N product, NHWC as oneDNN prefers it.
            image = (
                a.t().reshape(1, self.size, self.size // 32, 32).contiguous(memory_format=torch.channels_last)
            )
            weight = b.t().reshape(self.size, self.size, 1, 1).contiguous(memory_format=torch.channels_last)
            kernels["conv1x1"] = lambda: F.conv2d(image, weight)
        self.rates = {}
        for name, kernel in kernels.items():
            kernel()  # warm-up: thread pool, library initialisation
            self.rates[name] = max(self._time(kernel) for _ in range(3))
        self.kernel_name = max(self.rates, key=self.rates.__getitem__)
        self._kernel = kernels[self.kernel_name]

    def measure(self) -> float:
        """FLOP/s of `repeats` back-to-back products with the chosen kernel."""
        return self._time(self._kernel)

    def _time(self, kernel: Callable[[], Any]) -> float:
        _sync(self.device)
        start = time.perf_counter()
        for _ in range(self.repeats):
            kernel()
        _sync(self.device)
        return 2 * self.size**3 * self.repeats / (time.perf_counter() - start)


def paired(call: Callable[[], Any], flops: float, yardstick: MatmulYardstick, pairs: int) -> Pairing:
    call()  # warm-up: allocation, kernel selection (bench_arch times the very first call itself)
    times, rates, fractions = [], [], []
    for _ in range(pairs):
        rate = yardstick.measure()
        _sync(yardstick.device)
        start = time.perf_counter()
        call()
        _sync(yardstick.device)
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        rates.append(rate)
        fractions.append(flops / elapsed / rate)
    return Pairing(statistics.median(times), statistics.median(rates), statistics.median(fractions))


def forward_flops(model: torch.nn.Module, image_shape: Sequence[int]) -> int:
    """FLOPs of one image-step forward of the eager network (attention counted on the math backend)."""
    x, t = _inputs(1, image_shape, torch.device("cpu"))
    model = model.cpu().eval()
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        model(x, t)
    return counter.get_total_flops()


def train_flops(model: torch.nn.Module, image_shape: Sequence[int]) -> int:
    """FLOPs of one image trained: forward and backward of the eager network (AdamW's elementwise
    update is not counted: it does not scale with the batch)."""
    x, t = _inputs(1, image_shape, torch.device("cpu"))
    model = model.cpu().train()
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        F.mse_loss(model(x, t), x).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def relative_error(fast: torch.Tensor, reference: torch.Tensor) -> float:
    return float((fast.float() - reference.float()).norm() / reference.float().norm().clamp_min(1e-30))


def bench_arch(
    arch: str,
    batches: Sequence[int],
    modes: Sequence[str],
    fast: dict[str, FastPath],
    device: torch.device,
    yardstick: MatmulYardstick,
    pairs: int = 3,
    width: float = 1.0,
    image_size: int = 32,
    compare_eager: bool = True,
) -> list[Row]:
    """Rows for one variant: per mode and batch, the eager network and the mode's fast path
    (`fast["sample"]`, `fast["train"]`)."""
    import models

    torch.manual_seed(0)
    reference = models.build_model(arch, width=width)
    image_shape = (reference.config.in_channels, image_size, image_size)
    yardsticks = {
        "sample": forward_flops(reference, image_shape),
        "train": train_flops(reference, image_shape),
    }
    rows: list[Row] = []
    for mode in modes:
        # (label, path, is the plain eager reference)
        label = fast[mode].describe() + (f", padded to {BATCH_MULTIPLE}" if mode == "sample" else "")
        paths = [("eager", EAGER, True)] * compare_eager + [(label, fast[mode], False)]
        for batch in batches:
            outputs: list[torch.Tensor] = []
            for name, path, reference_path in paths:
                model = models.build_model(arch, width=width)
                model.load_state_dict(reference.state_dict())
                model = model.to(device)
                if mode == "sample":
                    call, output = _sampling_call(model, path, batch, image_shape, device, reference_path)
                    work = batch  # image-steps per call
                else:
                    call, output = _training_call(model, path, batch, image_shape, device)
                    work = batch  # images per step
                _sync(device)
                started = time.perf_counter()
                outputs.append(output())  # the first call: compile and graph capture happen here
                first_call_s = time.perf_counter() - started
                with _peak_memory(device) as peak:
                    pairing = paired(call, work * yardsticks[mode], yardstick, pairs)
                rows.append(
                    Row(
                        arch=arch,
                        mode=mode,
                        batch=batch,
                        path=name,
                        seconds=pairing.seconds,
                        throughput=work / pairing.seconds,
                        gflop_per_image=yardsticks[mode] / 1e9,
                        gflops=work * yardsticks[mode] / pairing.seconds / 1e9,
                        matmul_gflops=pairing.matmul_flops_per_s / 1e9,
                        fraction=pairing.fraction,
                        peak_mb=peak(),
                        first_call_s=first_call_s,
                    )
                )
                del model, call, output
                gc.collect()
            if len(outputs) == 2:
                eager_out, fast_out = outputs
                rows[-1].max_rel_error = relative_error(fast_out, eager_out)
    return rows


def _inputs(
    batch: int, image_shape: Sequence[int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn((batch, *image_shape), generator=generator)
    t = torch.randint(0, REPORT_STEPS, (batch,), generator=generator)
    return x.to(device), t.to(device)


def _sampling_call(
    model: torch.nn.Module,
    path: FastPath,
    batch: int,
    image_shape: Sequence[int],
    device: torch.device,
    reference: bool = False,
) -> tuple[Callable[[], Any], Callable[[], torch.Tensor]]:
    """The eager reference is the network called as it is; the fast path is what the sampler calls
    (InferenceRunner: layout, padding to BATCH_MULTIPLE, autocast, compile, graphs)."""
    runner: EpsFn = model.eval() if reference else InferenceRunner(model, path)
    x, t = _inputs(batch, image_shape, device)

    def call() -> torch.Tensor:
        with torch.inference_mode():
            return runner(x, t)

    return call, lambda: call().cpu()


def _training_call(
    model: torch.nn.Module, path: FastPath, batch: int, image_shape: Sequence[int], device: torch.device
) -> tuple[Callable[[], Any], Callable[[], torch.Tensor]]:
    """One optimiser step. Its output for the equality check is the parameter gradients of the first
    batch, taken before any timed step (so both paths see the same weights and inputs)."""
    model = prepare_for_training(model.train(), path)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    x, t = _inputs(batch, image_shape, device)
    target = torch.randn(x.shape, generator=torch.Generator().manual_seed(2)).to(device)
    forward = torch.compile(model) if path.compile else model

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=path.bf16 and device.type == "cuda"):
            loss = F.mse_loss(forward(to_layout(x, path), t).float(), target)
        loss.backward()
        return loss

    def first_gradients() -> torch.Tensor:
        step()
        grads = [p.grad.detach().flatten().cpu() for p in model.parameters() if p.grad is not None]
        return torch.cat(grads)

    def call() -> None:
        step()
        optimizer.step()

    return call, first_gradients


@contextmanager
def _peak_memory(device: torch.device) -> Iterator[Callable[[], float | None]]:
    """Extra memory at peak during the block, in MiB: CUDA's allocator statistics, or on Linux the
    process's peak resident set (reset through /proc/self/clear_refs) over its size before."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result: list[float | None] = [None]
        yield lambda: result[0]
        torch.cuda.synchronize(device)
        result[0] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        return
    status = Path("/proc/self/status")
    clear = Path("/proc/self/clear_refs")
    if not status.exists() or not clear.exists():
        yield lambda: None
        return
    try:
        clear.write_text("5")
    except OSError:
        yield lambda: None
        return
    before = _status_kib(status, "VmRSS")
    result = [None]
    yield lambda: result[0]
    result[0] = (_status_kib(status, "VmHWM") - before) / 1024


def _status_kib(status: Path, key: str) -> int:
    for line in status.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in {status}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_invariant(
    arch: str, fast: FastPath, device: torch.device, width: float = 1.0, image_size: int = 32
) -> bool:
    """Whether the fast path gives each image the same bits in a batch of 80 as in a batch of 8 (the
    property request batching and 'a smaller n is a prefix of a larger one' rest on)."""
    import models

    torch.manual_seed(0)
    model = models.build_model(arch, width=width).to(device)
    runner = InferenceRunner(model, fast)
    x, t = _inputs(80, (model.config.in_channels, image_size, image_size), device)
    with torch.inference_mode():
        return bool(torch.equal(runner(x, t)[:8], runner(x[:8], t[:8])))


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


def fid_cost_estimates(
    rows: Sequence[Row],
    specs: Sequence[SamplerSpec],
    samples: int = REPORT_FID_SAMPLES,
    features_per_s: float | None = None,
    gpu_tflops: float = GPU_ASSUMED_TFLOPS,
) -> list[dict[str, Any]]:
    """Hours of a `samples`-image FID per arch and sampler: sampling at the arch's fastest measured
    sampling rate (network calls only: noise draws and updates are ~0.1% of a step), plus Inception
    features at `features_per_s` when given; and the GPU's sampling hours at `gpu_tflops` (an estimate)."""
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
            estimates.append(
                {
                    "arch": arch,
                    "sampler": spec.describe(),
                    "nfe": spec.nfe,
                    "samples": samples,
                    "measured_batch": row.batch,
                    "sampling_h": sampling_h,
                    "features_h": features_h,
                    "total_h": sampling_h + (features_h or 0.0),
                    "gpu_sampling_h": image_steps * row.gflop_per_image / (gpu_tflops * 1e3) / 3600,
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
        + f"; GPU: estimate at an assumed {first['gpu_tflops_assumed']:g} TFLOP/s, sampling only",
        f"| arch | sampler | network calls | {device} sampling (h) | "
        + ("with features (h) | " if features else "")
        + "GPU estimate (min) |",
        "|---|---|---:|---:|" + ("---:|" if features else "") + "---:|",
    ]
    for e in estimates:
        total = f" {e['total_h']:.2f} |" if features else ""
        lines.append(
            f"| {e['arch']} | {e['sampler']} | {e['nfe']} | {e['sampling_h']:.2f} |{total} "
            f"{e['gpu_sampling_h'] * 60:.2f} |"
        )
    return "\n".join(lines)


# --- DDIM-50 against DDPM-1000, end to end ------------------------------------------------------------


def sampler_ratio(
    device: torch.device, fast: FastPath, width: float = 0.25, batch: int = 16, arch: str = "baseline"
) -> dict[str, float]:
    """Wall time of generate_images with DDPM-1000 and with DDIM-50 (network, noise, update, clamps).

    Run at a reduced width so DDPM-1000 takes minutes, not an hour, on CPU; the ratio moves towards
    50/1000 as the network's share of a step grows.
    """
    import models
    from ddpm.sampling import generate_images

    torch.manual_seed(0)
    model = models.build_model(arch, width=width).to(device)
    timings = {}
    for sampler, steps in (("ddim", 50), ("ddpm", None)):
        start = time.perf_counter()
        generate_images(model, batch, seed=0, sampler=sampler, steps=steps, device=device, fast=fast)
        _sync(device)
        timings[sampler] = time.perf_counter() - start
    return {
        "arch": arch,
        "width": width,
        "batch": batch,
        "ddim50_s": timings["ddim"],
        "ddpm1000_s": timings["ddpm"],
        "ratio": timings["ddim"] / timings["ddpm"],
    }


def format_sampler_ratio(result: dict[str, Any]) -> str:
    return (
        f"{result['arch']} width {result['width']}, {result['batch']} images: DDIM-50 "
        f"{result['ddim50_s']:.1f} s, DDPM-1000 {result['ddpm1000_s']:.1f} s, ratio {result['ratio']:.4f} "
        f"(50/1000 = 0.05)"
    )
