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
from dataclasses import asdict, dataclass, replace
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
    fp32_precision,
    prepare_for_training,
    to_layout,
)
from ddpm.limits import SCHEDULE_STEPS

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
        sync_device(self.device)
        start = time.perf_counter()
        for _ in range(self.repeats):
            kernel()
        sync_device(self.device)
        return 2 * self.size**3 * self.repeats / (time.perf_counter() - start)


def paired(call: Callable[[], Any], flops: float, yardstick: MatmulYardstick, pairs: int) -> Pairing:
    call()  # warm-up: allocation, kernel selection (bench_arch times the very first call itself)
    times, rates, fractions = [], [], []
    for _ in range(pairs):
        rate = yardstick.measure()
        sync_device(yardstick.device)
        start = time.perf_counter()
        call()
        sync_device(yardstick.device)
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

    def fresh() -> torch.nn.Module:
        model = models.build_model(arch, width=width)
        model.load_state_dict(reference.state_dict())
        return model.to(device)

    for mode in modes:
        path = fast[mode]
        label = path.describe()
        if mode == "sample" and not path.fixed_batch:
            label += f", padded to {BATCH_MULTIPLE}"
        paths = [("eager", EAGER, True)] * compare_eager + [(label, path, False)]
        make = _sampling_call if mode == "sample" else _training_call
        for batch in batches:
            error = None
            if compare_eager:
                # The equality check runs apart from the timed calls, on fresh networks, with TF32 off
                # for convolutions and matmuls: it checks the fast path's code, and TF32's 10-bit
                # products would differ from fp32 by more than the tolerance on their own. (Separate
                # runners, since a CUDA graph or a compiled graph keeps the precision it was made with.)
                with fp32_precision(False):
                    outputs = [
                        make(fresh(), replace(p, tf32=False), batch, image_shape, device, is_eager)[1]()
                        for _, p, is_eager in paths
                    ]
                error = relative_error(outputs[1], outputs[0])
                del outputs
            for name, path_here, is_eager in paths:
                call, _ = make(fresh(), path_here, batch, image_shape, device, is_eager)
                work = batch  # image-steps per call when sampling, images per step when training
                sync_device(device)
                started = time.perf_counter()
                call()  # the first call: compile and graph capture happen here
                sync_device(device)
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
                        max_rel_error=None if is_eager else error,
                    )
                )
                del call
                gc.collect()
    return rows


def _inputs(
    batch: int, image_shape: Sequence[int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn((batch, *image_shape), generator=generator)
    t = torch.randint(0, SCHEDULE_STEPS, (batch,), generator=generator)
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
    model: torch.nn.Module,
    path: FastPath,
    batch: int,
    image_shape: Sequence[int],
    device: torch.device,
    reference: bool = False,
) -> tuple[Callable[[], Any], Callable[[], torch.Tensor]]:
    """One optimiser step (as the trainer takes it: layout, bf16 autocast with the loss in fp32, TF32
    under the path's setting). Its output for the equality check is the parameter gradients of the
    first batch (so both paths see the same weights and inputs)."""
    model = prepare_for_training(model.train(), path)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    x, t = _inputs(batch, image_shape, device)
    target = torch.randn(x.shape, generator=torch.Generator().manual_seed(2)).to(device)
    forward = torch.compile(model) if path.compile else model

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with _precision(path, device):
            with torch.autocast(
                device.type, dtype=torch.bfloat16, enabled=path.bf16 and device.type == "cuda"
            ):
                out = forward(to_layout(x, path), t)
            loss = F.mse_loss(out.float(), target)
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


def _precision(path: FastPath, device: torch.device) -> Any:
    """TF32 as the path says on CUDA; otherwise the caller's setting (the equality check's IEEE)."""
    from contextlib import nullcontext

    return fp32_precision(True) if device.type == "cuda" and path.tf32 else nullcontext()


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


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch_invariant(
    arch: str, fast: FastPath, device: torch.device, width: float = 1.0, image_size: int = 32
) -> bool:
    """Whether the fast path gives each image the same bits in a batch of 80 as in a batch of 8 and
    wherever it sits in the batch (the property request batching and 'a smaller n is a prefix of a
    larger one' rest on), under the path's own precision settings."""
    import models

    torch.manual_seed(0)
    model = models.build_model(arch, width=width).to(device)
    runner = InferenceRunner(model, fast)
    x, t = _inputs(80, (model.config.in_channels, image_size, image_size), device)
    order = torch.randperm(80, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.inference_mode():
        full = runner(x, t)
        return bool(
            torch.equal(full[:8], runner(x[:8], t[:8]))
            and torch.equal(full[order], runner(x[order], t[order]))
        )
