"""The fast path: how a network is run for sampling and training, without changing its math.

`FastPath` names the execution choices (memory format, bf16 autocast, torch.compile, CUDA graphs);
`fast_path_for` picks the defaults for a device, and `InferenceRunner` / `prepare_for_training` apply
them. The plain eager network (`models.build_model(...)` in eval mode) stays the reference: `ddpm bench`
checks that the fast path's output equals it (relative error under 1e-4 in fp32).

The choice is a pure function of the device (and explicit settings), never of timing, so the same
request on the same kind of machine always takes the same path and gives the same bytes.

GPU defaults, and why (docs/performance.md, "GPU", says what is still to be measured):
- every sampling call on CUDA is exactly FIXED_BATCH images (smaller calls padded, larger ones split),
  with cuDNN's deterministic algorithms and its autotuner off: cuDNN and cuBLAS choose kernels by
  shape, so one shape makes each image a function of its own input, whatever batch it came in; one
  shape also means one torch.compile graph and one CUDA graph per network;
- TF32 tensor cores for fp32 convolutions and matmuls (cuDNN already defaults to it for convolutions;
  matmuls were full fp32); the equality check against eager runs with TF32 off (`fp32_precision`);
- channels-last off on CUDA unless DDPM_CUDA_CHANNELS_LAST=1: GroupNorm, in every block here, computes
  in NCHW on CUDA, so NHWC activations are converted twice per GroupNorm; to be measured
  (scripts/gpu_bench.sh, step layout) before it becomes the default;
- bf16 autocast: a training option (TrainConfig.bf16, loss in fp32) and opt-in for sampling;
- CUDA graphs opt-in (DDPM_CUDA_GRAPHS=1), captured and replayed under the network's own device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace

import torch

from ddpm.compile_policy import COMPILE_ENV, compile_cache_dir, compile_setting  # noqa: F401 (re-exported)
from ddpm.errors import InvalidOption
from ddpm.limits import MAX_BATCH
from ddpm.settings import data_dir

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Sampling calls run on batches padded with zero images to a multiple of this. oneDNN picks its
# convolution kernels by batch size: on one thread every batch under 16 gives rows that differ in their
# last bits from the same rows in a batch of 48, and on two threads sizes 1, 2, 3 and 5 do, enough to
# flip pixels after 50 DDIM steps. From 16 up, in NCHW, each row is a function of its own input alone
# at every thread count tried (1-16), whatever its position in the batch (tests/ddpm/test_fastpath.py). That
# is what makes image i the same bytes whatever n, the batch size, or the requests it shares a batch
# with; the price is that a request of 1 image computes 16 on CPU.
BATCH_MULTIPLE = 16

# On CUDA (and with torch.compile anywhere) every sampling call is exactly this many images: one shape,
# so one kernel choice per layer, one compiled graph and one CUDA graph. The sampler's default batch
# (DDPM_SAMPLE_BATCH_SIZE), so full batches waste nothing. Changing it changes GPU images' last bits.
FIXED_BATCH = 128

CUDA_GRAPHS_ENV = "DDPM_CUDA_GRAPHS"  # "1" replays sampling calls from CUDA graphs
CUDA_CHANNELS_LAST_ENV = "DDPM_CUDA_CHANNELS_LAST"  # "1": NHWC on CUDA (sampling and training)
FIXED_BATCH_ENV = "DDPM_FIXED_BATCH"
# Dynamo keeps compiled code per Python function, and every variant runs the same UNet.forward: past
# this many graphs it would silently run eager. Enough for every variant at two image sizes, one shape
# each (FIXED_BATCH).
COMPILE_RECOMPILE_LIMIT = 64


@dataclass(frozen=True)
class FastPath:
    """Execution options. All default off: FastPath() is the plain eager network."""

    channels_last: bool = False  # NHWC activations and weights: oneDNN and tensor-core convs prefer it
    bf16: bool = False  # autocast matmuls/convs to bfloat16 (sampling: CUDA only; training: TrainConfig.bf16)
    compile: bool = False  # torch.compile the network (pays only for long jobs: minutes to compile on CPU)
    cuda_graphs: bool = False  # capture the network call and replay it (CUDA only)
    tf32: bool = False  # fp32 convs and matmuls on TF32 tensor cores (CUDA only; 10-bit mantissa products)
    fixed_batch: int | None = None  # every sampling call exactly this many images (else padded to 16s)
    compile_backend: str = "inductor"  # torch.compile's backend (tests count compilations with their own)

    def describe(self) -> str:
        names = ("channels_last", "bf16", "tf32", "compile", "cuda_graphs")
        parts = [name for name in names if getattr(self, name)]
        if self.fixed_batch:
            parts.append(f"fixed{self.fixed_batch}")
        return "+".join(parts) or "eager"


EAGER = FastPath()


def _flag(name: str) -> bool:
    return os.environ.get(name, "0") == "1"


def fixed_batch() -> int:
    """FIXED_BATCH, or DDPM_FIXED_BATCH when set (every worker sharing a cache must agree on it)."""
    value = os.environ.get(FIXED_BATCH_ENV, str(FIXED_BATCH))
    if not value.isdigit() or not 1 <= int(value) <= MAX_BATCH:
        raise InvalidOption(f"{FIXED_BATCH_ENV} must be an integer in [1, {MAX_BATCH}], got {value!r}")
    return int(value)


def sampling_path(device: torch.device | str, compile: bool | None = None) -> FastPath:
    """How sampling runs the network on `device` by default.

    CPU: NCHW, padded to multiples of 16. channels-last is faster on oneDNN (docs/performance.md) but
    at some thread counts (3 of the 1-16 tried) a row's bits then depend on its position in the
    batch, which would break byte-identical grids. CUDA: one fixed batch, TF32, NCHW unless
    DDPM_CUDA_CHANNELS_LAST=1, CUDA graphs when DDPM_CUDA_GRAPHS=1 (see the module's docstring).
    bf16 stays opt-in (ddpm bench --bf16 measures it): it changes the numbers.
    compile defaults to DDPM_COMPILE=on only: under `auto` (the default) a sampling job decides from its
    size (ddpm/compile_policy.py, ddpm.sampling.sample_checkpoint_many) and passes it here. Compiled
    calls always take the fixed batch, so each network is compiled once, whatever the request sizes.
    """
    device = torch.device(device)
    if compile is None:
        compile = compile_setting() == "on"
    cuda = device.type == "cuda"
    return FastPath(
        channels_last=cuda and _flag(CUDA_CHANNELS_LAST_ENV),
        compile=compile,
        cuda_graphs=cuda and _flag(CUDA_GRAPHS_ENV),
        tf32=cuda,
        fixed_batch=fixed_batch() if cuda or compile else None,
    )


def training_path(device: torch.device | str, bf16: bool = False) -> FastPath:
    """How training runs the network. CPU: channels-last (measured: baseline 0.78 -> 0.86 of the
    machine's rate at batch 80). CUDA: TF32, and NCHW unless DDPM_CUDA_CHANNELS_LAST=1 (GroupNorm, see
    the module's docstring). bf16 is the run's own choice (TrainConfig.bf16). Training has no
    batch-invariance promise to keep; resume stays exact on CPU because the layout of weights and
    optimizer state is the same before and after (Trainer._restore)."""
    cuda = torch.device(device).type == "cuda"
    return FastPath(channels_last=_flag(CUDA_CHANNELS_LAST_ENV) if cuda else True, bf16=bf16, tf32=cuda)


def batch_invariant(path: FastPath, device: torch.device | str) -> bool:
    """Whether `path` gives each image the same bits whatever batch it is computed in and wherever it
    sits there (request batching relies on it). CUDA: with one fixed shape, given cuDNN's deterministic
    algorithms (scripts/gpu_bench.sh checks it on a GPU). CPU: NCHW padded to multiples of 16, eager
    (tested at 1 and 2 threads, tried at 1-16); channels-last and compiled CPU paths are not promised."""
    if torch.device(device).type == "cuda":
        return path.fixed_batch is not None
    return not path.channels_last and not path.compile


@contextmanager
def fp32_precision(tf32: bool) -> Iterator[None]:
    """fp32 convolutions and matmuls on CUDA in TF32 (True) or full IEEE fp32 (False) inside the block;
    the previous settings come back after it. No effect on CPU."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = "tf32" if tf32 else "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


@contextmanager
def deterministic_cudnn() -> Iterator[None]:
    """cuDNN's deterministic algorithms, autotuner off, inside the block (the autotuner times
    candidate kernels and may pick another one in another process, giving other bits)."""
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def compile_network(model: torch.nn.Module, path: FastPath) -> Callable[..., torch.Tensor]:
    """torch.compile for fixed shapes, with room for one graph per variant (COMPILE_RECOMPILE_LIMIT).

    The inductor cache goes on the data volume (DATA_DIR/cache/compile) unless TORCHINDUCTOR_CACHE_DIR
    says otherwise, set before anything compiles: a host then pays a shape's compile once, not once per
    process (a tiny network: 136 s cold, 8 s from the cache on a busy 2-core machine).
    """
    import torch._dynamo

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir(data_dir())))
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, COMPILE_RECOMPILE_LIMIT)
    return torch.compile(model, dynamic=False, backend=path.compile_backend)


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

    Batches are padded with zero images to a multiple of BATCH_MULTIPLE, or, with `fixed_batch`, cut
    into calls of exactly that many images, the last one padded (see there why).

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
        cuda = self.device.type == "cuda"
        if not cuda and (path.bf16 or path.cuda_graphs or path.tf32):
            # CPU keeps the fp32 reference arithmetic; graphs and TF32 are CUDA features.
            self.path = path = replace(path, bf16=False, cuda_graphs=False, tf32=False)
        self.forward: EpsFn = compile_network(self.model, path) if path.compile else self.model
        self._graphs: dict[tuple[object, ...], _CapturedCall] = {}

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        size = self.path.fixed_batch
        if size is None:
            return self._padded(*_pad(x, t, -x.shape[0] % BATCH_MULTIPLE))[: x.shape[0]]
        outputs = []
        for first in range(0, x.shape[0], size):
            part, times = x[first : first + size], t[first : first + size] if t.ndim else t
            outputs.append(self._padded(*_pad(part, times, size - part.shape[0]))[: part.shape[0]])
        return torch.cat(outputs)

    def _padded(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.path.cuda_graphs:
            key = (*x.shape, t.dtype)  # heun feeds fractional (float) timesteps, the others int64
            if key not in self._graphs:
                self._graphs[key] = _CapturedCall(self._call, x, t, self.device)
            return self._graphs[key](x, t)
        return self._call(x, t)

    def _call(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = to_layout(x, self.path)
        cuda = self.device.type == "cuda"
        with (
            fp32_precision(self.path.tf32) if cuda else nullcontext(),
            deterministic_cudnn() if cuda else nullcontext(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.path.bf16),
        ):
            return self.forward(x, t).float()


def _pad(x: torch.Tensor, t: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x and t with `rows` zero images (timestep 0) appended, as new tensors (never views of the
    caller's: Dynamo guards on whether an input is a view, and would compile the same shape twice);
    a scalar t is left as it is."""
    if rows == 0:
        return x.clone(), t.clone()
    x = torch.cat([x, x.new_zeros((rows, *x.shape[1:]))])
    return x, torch.cat([t, t.new_zeros((rows, *t.shape[1:]))]) if t.ndim else t


class _CapturedCall:
    """One CUDA graph of fn(x, t) at a fixed shape, fed through static buffers.

    Everything runs under the inputs' own device (`torch.cuda.device`): streams are created on the
    current device, and torch.cuda.graph's shared default capture stream belongs to whichever device
    was current when it was first made, so a network on cuda:1 captured from a process whose current
    device is cuda:0 would record an empty graph and replay stale outputs. The capture stream is
    therefore made here, on the network's device, and passed in."""

    def __init__(self, fn: EpsFn, x: torch.Tensor, t: torch.Tensor, device: torch.device) -> None:
        self.device = device
        with torch.cuda.device(device):
            self.x, self.t = x.clone(), t.clone()
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):  # warm-up outside the graph (allocator, kernel choice)
                for _ in range(2):
                    fn(self.x, self.t)
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=torch.cuda.Stream(device)):
                self.out = fn(self.x, self.t)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.cuda.device(self.device):
            self.x.copy_(x)
            self.t.copy_(t)
            self.graph.replay()
            return self.out.clone()  # the static output is overwritten by the next replay
