"""The fast path: same numbers as the eager network, and each image independent of its batch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch._dynamo

import models
from ddpm.errors import InvalidOption
from ddpm.fastpath import (
    BATCH_MULTIPLE,
    EAGER,
    FastPath,
    InferenceRunner,
    batch_invariant,
    deterministic_cudnn,
    fp32_precision,
    sampling_path,
    training_path,
)
from ddpm.sampler_spec import SamplerSpec
from ddpm.sampling import generate_images, generate_many
from tests.conftest import TINY_WIDTH


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("arch", ["baseline", "convnext", "biggan", "rdn"])
def test_each_row_is_the_same_bits_whatever_the_batch(arch: str, threads: int) -> None:
    """The sampling path on CPU: any batch size, any position in the batch, one or two threads."""
    torch.manual_seed(0)
    runner = InferenceRunner(models.build_model(arch, width=TINY_WIDTH), sampling_path("cpu"))
    x, t = torch.randn(40, 3, 16, 16), torch.randint(0, 1000, (40,))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            full = runner(x, t)
            for batch in (1, 2, 3, 5, 8, 12, 17, 33):  # sizes oneDNN computes differently unless padded
                assert torch.equal(runner(x[:batch], t[:batch]), full[:batch]), batch
            order = torch.randperm(40, generator=torch.Generator().manual_seed(1))
            assert torch.equal(runner(x[order], t[order]), full[order])
    finally:
        torch.set_num_threads(before)


def test_fast_path_matches_the_eager_network() -> None:
    torch.manual_seed(0)
    reference = models.build_model("baseline", width=TINY_WIDTH).eval()
    fast = models.build_model("baseline", width=TINY_WIDTH)
    fast.load_state_dict(reference.state_dict())
    runner = InferenceRunner(fast, FastPath(channels_last=True))  # the training and GPU layout
    x, t = torch.randn(8, 3, 16, 16), torch.randint(0, 1000, (8,))
    with torch.inference_mode():
        expected, got = reference(x, t), runner(x, t)
    assert got.dtype == torch.float32
    assert float((got - expected).norm() / expected.norm()) < 1e-4


def test_padding_keeps_scalar_timesteps_and_the_row_count() -> None:
    runner = InferenceRunner(models.build_model("pure_unet", width=TINY_WIDTH), EAGER)
    with torch.inference_mode():
        out = runner(torch.randn(3, 3, 16, 16), torch.tensor(5))
    assert out.shape == (3, 3, 16, 16)
    assert BATCH_MULTIPLE >= 16


def test_default_paths() -> None:
    assert sampling_path("cpu") == EAGER  # NHWC would tie a row's bits to its position at some thread counts
    assert training_path("cpu").channels_last
    assert not sampling_path("cuda").bf16


@pytest.mark.parametrize(
    "spec",
    [
        # DDIM with eta=1 draws fresh noise at every step, like DDPM, in 10 network calls instead of 1000.
        SamplerSpec("ddim", 10, eta=1.0),
        SamplerSpec("dpmpp_2m", 6, spacing="time", clip_x0=True),
        SamplerSpec("dpmpp_2m", 6, spacing="logsnr"),
        SamplerSpec("heun", 4, timestep="interpolated", churn=10.0),  # churn draws noise at each level
        SamplerSpec("heun", 4, timestep="nearest"),
    ],
    ids=lambda spec: spec.describe(),
)
def test_requests_batched_together_get_the_images_they_get_alone(spec: SamplerSpec) -> None:
    torch.manual_seed(0)
    model = models.build_model("baseline", width=TINY_WIDTH)
    requests = [(3, 4), (0, 10), (3, 1), (7, 6)]  # (seed, n); seed 3 twice on purpose
    options = dict(sampler=spec, image_size=16)
    together = generate_many(model, requests, batch_size=8, **options)  # batches cut across requests
    for (seed, n), images in zip(requests, together, strict=True):
        alone = generate_images(model, n, seed, batch_size=128, **options)
        assert torch.equal(images, alone), (seed, n)


class _ShapeLog(torch.nn.Module):
    """The network, recording the batch size of every call it gets."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.config, self.sizes = net, net.config, []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return self.net(x, t)


def test_a_fixed_batch_runs_every_call_at_one_shape_and_keeps_each_row_its_own() -> None:
    """The CUDA sampling path's shape rule, run on CPU: smaller calls padded, larger ones split."""
    torch.manual_seed(0)
    net = _ShapeLog(models.build_model("baseline", width=TINY_WIDTH))
    runner = InferenceRunner(net, FastPath(fixed_batch=16))
    x, t = torch.randn(40, 3, 16, 16), torch.randint(0, 1000, (40,))
    with torch.inference_mode():
        full = runner(x, t)
        assert full.shape == (40, 3, 16, 16)
        for batch in (1, 5, 16, 17, 33):
            assert torch.equal(runner(x[:batch], t[:batch]), full[:batch]), batch
        assert runner(x[:3], torch.tensor(7)).shape == (3, 3, 16, 16)  # a scalar timestep
    assert set(net.sizes) == {16}


_compiled_shapes: list[int] = []


def _counting_backend(graph_module: torch.fx.GraphModule, example_inputs: list) -> object:
    _compiled_shapes.append(1)
    return graph_module.forward


torch._dynamo.register_backend(name="ddpm_test_counting")(_counting_backend)


def test_compiled_sampling_compiles_once_for_any_request_size() -> None:
    """One fixed shape: one compilation for batches 1 to 40. Padding to multiples of 16 instead would
    compile once per padded size (16, 32, 48 here), and Dynamo gives up past its recompile limit."""
    import torch._dynamo

    sizes = (1, 5, 16, 23, 40)
    x, t = torch.randn(40, 3, 16, 16), torch.randint(0, 1000, (40,))
    counts = {}
    for label, fixed in (("fixed", 16), ("multiple of 16", None)):
        torch._dynamo.reset()
        _compiled_shapes.clear()
        torch.manual_seed(0)
        path = FastPath(compile=True, fixed_batch=fixed, compile_backend="ddpm_test_counting")
        runner = InferenceRunner(models.build_model("pure_unet", width=TINY_WIDTH), path)
        seen = []
        with torch.inference_mode():
            for batch in sizes:
                runner(x[:batch], t[:batch])
                seen.append(len(_compiled_shapes))
        counts[label] = seen
    torch._dynamo.reset()
    first = counts["fixed"][0]
    assert first >= 1 and counts["fixed"] == [first] * len(sizes)  # nothing after the first call
    assert counts["multiple of 16"][-1] == 3 * counts["multiple of 16"][0]  # 16, 32, 48
    assert torch._dynamo.config.recompile_limit >= 64


def test_cuda_defaults_and_their_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = sampling_path("cuda")
    assert cuda.fixed_batch == 128 and cuda.tf32 and not cuda.channels_last and not cuda.cuda_graphs
    assert not cuda.bf16 and batch_invariant(cuda, "cuda")
    assert training_path("cuda").tf32 and not training_path("cuda").channels_last
    assert training_path("cuda", bf16=True).bf16
    assert sampling_path("cpu").fixed_batch is None and sampling_path("cpu", compile=True).fixed_batch == 128
    assert batch_invariant(sampling_path("cpu"), "cpu")
    assert not batch_invariant(FastPath(channels_last=True), "cpu")
    monkeypatch.setenv("DDPM_CUDA_CHANNELS_LAST", "1")
    monkeypatch.setenv("DDPM_CUDA_GRAPHS", "1")
    monkeypatch.setenv("DDPM_FIXED_BATCH", "64")
    cuda = sampling_path("cuda")
    assert cuda.channels_last and cuda.cuda_graphs and cuda.fixed_batch == 64
    assert training_path("cuda").channels_last
    assert sampling_path("cpu") == EAGER  # the CPU path's choices are measured, not switched
    monkeypatch.setenv("DDPM_FIXED_BATCH", "0")
    with pytest.raises(InvalidOption, match=r"DDPM_FIXED_BATCH must be an integer in \[1, 4096\], got '0'"):
        sampling_path("cuda")


def test_precision_and_cudnn_flags_are_set_for_the_block_and_restored() -> None:
    matmul, conv, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn
    before = (matmul.fp32_precision, conv.fp32_precision, cudnn.deterministic, cudnn.benchmark)
    with fp32_precision(False), deterministic_cudnn():
        assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
        assert cudnn.deterministic and not cudnn.benchmark
        with fp32_precision(True):
            assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
        assert matmul.fp32_precision == "ieee"
    assert (matmul.fp32_precision, conv.fp32_precision, cudnn.deterministic, cudnn.benchmark) == before


class _FakeCuda:
    """Stand-ins for the torch.cuda calls a graph capture makes, recording the current device at each."""

    def __init__(self) -> None:
        self.current = 0
        self.events: list[tuple[str, int, int | None]] = []  # (what, current device, its own device)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = self

        class Stream:
            def __init__(self, device: torch.device | None = None) -> None:
                self.index = fake.current if device is None else torch.device(device).index
                fake.events.append(("stream", fake.current, self.index))

            def wait_stream(self, other: object) -> None:
                pass

        class CUDAGraph:
            def replay(self) -> None:
                fake.events.append(("replay", fake.current, None))

        @contextmanager
        def device(which: torch.device) -> Iterator[None]:
            saved, fake.current = fake.current, torch.device(which).index
            try:
                yield
            finally:
                fake.current = saved

        @contextmanager
        def stream(s: Stream) -> Iterator[None]:
            yield

        @contextmanager
        def graph(g: CUDAGraph, stream: Stream | None = None) -> Iterator[None]:
            fake.events.append(("capture", fake.current, None if stream is None else stream.index))
            yield

        for name, value in {
            "Stream": Stream,
            "CUDAGraph": CUDAGraph,
            "device": device,
            "stream": stream,
            "graph": graph,
            "current_stream": lambda device=None: Stream(device),
        }.items():
            monkeypatch.setattr(torch.cuda, name, value)


def test_cuda_graphs_are_captured_and_replayed_on_the_networks_own_device(monkeypatch) -> None:
    """A network on cuda:1 in a process whose current device is cuda:0: every stream, the capture
    and each replay happen on cuda:1 (the capture stream is passed in, not torch's shared default)."""
    from ddpm.fastpath import _CapturedCall

    fake = _FakeCuda()
    fake.install(monkeypatch)
    calls: list[int] = []

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(fake.current)
        return x * 2

    captured = _CapturedCall(fn, torch.ones(2, 3), torch.zeros(2), torch.device("cuda", 1))
    assert fake.current == 0  # the caller's device is left as it was
    assert calls == [1, 1, 1]  # two warm-up calls and the captured one
    out = captured(torch.full((2, 3), 5.0), torch.zeros(2))
    assert torch.equal(out, torch.full((2, 3), 2.0))  # the captured output (a fake graph does not rerun fn)
    assert fake.events and all(current == 1 for _, current, _ in fake.events)
    assert all(own == 1 for what, _, own in fake.events if what in ("stream", "capture"))
    assert [what for what, _, _ in fake.events].count("replay") == 1
