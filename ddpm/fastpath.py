"""The fast path: how a network is run for sampling and training, without changing its math.

`FastPath` names the execution choices (memory format, bf16 autocast, torch.compile, CUDA graphs);
`fast_path_for` picks the defaults for a device, and `InferenceRunner` / `prepare_for_training` apply
them. The plain eager network (`models.build_model(...)` in eval mode) stays the reference: `ddpm bench`
checks that the fast path's output equals it (relative error under 1e-4 in fp32).

The choice is a pure function of the device (and explicit settings), never of timing, so the same
request on the same kind of machine always takes the same path and gives the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Sampling calls run on batches padded with zero images to a multiple of this. oneDNN picks its
# convolution kernels by batch size: on one thread every batch under 16 gives rows that differ in their
# last bits from the same rows in a batch of 48, and on two threads sizes 1, 2, 3 and 5 do, enough to
# flip pixels after 50 DDIM steps. From 16 up, in NCHW, each row is a function of its own input alone
# at every thread count tried (1-16), whatever its position in the batch (tests/ddpm/test_fastpath.py). That
# is what makes image i the same bytes whatever n, the batch size, or the requests it shares a batch
# with; the price is that a request of 1 image computes 16 on CPU.
BATCH_MULTIPLE = 16

COMPILE_ENV = "DDPM_COMPILE"  # "1" compiles sampling networks (worth it for long jobs; see performance.md)


@dataclass(frozen=True)
class FastPath:
    """Execution options. All default off: FastPath() is the plain eager network."""

    channels_last: bool = False  # NHWC activations and weights: oneDNN and tensor-core convs prefer it
    bf16: bool = False  # autocast matmuls/convs to bfloat16 (CUDA only; fp32 on CPU is the reference)
    compile: bool = False  # torch.compile the network (pays only for long jobs: minutes to compile on CPU)
    cuda_graphs: bool = False  # capture one network call per batch shape and replay it (CUDA only)

    def describe(self) -> str:
        parts = [name for name in ("channels_last", "bf16", "compile", "cuda_graphs") if getattr(self, name)]
        return "+".join(parts) or "eager"


EAGER = FastPath()


def sampling_path(device: torch.device | str, compile: bool | None = None) -> FastPath:
    """How sampling runs the network on `device` by default.

    CPU: NCHW. channels-last is faster on oneDNN (docs/performance.md) but at some thread counts
    (3 of the 1-16 tried) a row's bits then depend on its position in the batch, which would break
    byte-identical grids. CUDA: channels-last (tensor-core convolutions prefer NHWC). bf16 and CUDA
    graphs stay opt-in (ddpm bench --bf16 --cuda-graphs measures them): bf16 changes the numbers, and
    graph capture has not run on a GPU in this project's tests yet.
    compile defaults to the DDPM_COMPILE environment variable (off): it costs a minute or more.
    """
    device = torch.device(device)
    if compile is None:
        compile = os.environ.get(COMPILE_ENV, "0") == "1"
    return FastPath(channels_last=device.type == "cuda", compile=compile)


def training_path(device: torch.device | str) -> FastPath:
    """How training runs the network: channels-last on CPU and GPU (training has no batch-invariance
    promise to keep; resume stays exact because the layout is the same before and after)."""
    return FastPath(channels_last=True)


def memory_format(path: FastPath) -> torch.memory_format:
    return torch.channels_last if path.channels_last else torch.contiguous_format


def prepare_for_training(model: torch.nn.Module, path: FastPath) -> torch.nn.Module:
    """Convert the weights' layout in place (state_dict keys and values are unchanged; checkpoints are
    written contiguous). Inputs are converted by `to_layout` at each step."""
    return model.to(memory_format=memory_format(path))


def to_layout(x: torch.Tensor, path: FastPath) -> torch.Tensor:
    return x.contiguous(memory_format=memory_format(path)) if x.ndim == 4 else x


class InferenceRunner:
    """eps_fn for the samplers: the model in eval mode under `path`; returns float32 eps.

    Batches are padded with zero images to a multiple of BATCH_MULTIPLE (see there why).

    With cuda_graphs, the first call at each batch shape captures the network into a CUDA graph with
    static input buffers; later calls copy x and t in and replay it, removing the per-kernel launch
    cost that dominates small batches on a fast GPU.
    """

    def __init__(self, model: torch.nn.Module, path: FastPath = EAGER) -> None:
        self.path = path
        self.model = model.eval()
        if path.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.device = next(self.model.parameters()).device
        if path.bf16 and self.device.type != "cuda":
            self.path = path = replace(path, bf16=False)  # CPU keeps the fp32 reference arithmetic
        if path.cuda_graphs and self.device.type != "cuda":
            self.path = path = replace(path, cuda_graphs=False)
        self.forward: EpsFn = torch.compile(self.model, dynamic=False) if path.compile else self.model
        self._graphs: dict[tuple[object, ...], _CapturedCall] = {}

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        padding = -rows % BATCH_MULTIPLE
        if padding:
            x = torch.cat([x, x.new_zeros((padding, *x.shape[1:]))])
            t = torch.cat([t, t.new_zeros((padding, *t.shape[1:]))]) if t.ndim else t
        return self._padded(x, t)[:rows]

    def _padded(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.path.cuda_graphs:
            key = (*x.shape, t.dtype)  # heun feeds fractional (float) timesteps, the others int64
            if key not in self._graphs:
                self._graphs[key] = _CapturedCall(self._call, x, t)
            return self._graphs[key](x, t)
        return self._call(x, t)

    def _call(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = to_layout(x, self.path)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.path.bf16):
            return self.forward(x, t).float()


class _CapturedCall:
    """One CUDA graph of fn(x, t) at a fixed shape, fed through static buffers."""

    def __init__(self, fn: EpsFn, x: torch.Tensor, t: torch.Tensor) -> None:
        self.x, self.t = x.clone(), t.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph (allocator, kernel choice)
            for _ in range(2):
                fn(self.x, self.t)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(self.x, self.t)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.x.copy_(x)
        self.t.copy_(t)
        self.graph.replay()
        return self.out.clone()  # the static output is overwritten by the next replay
