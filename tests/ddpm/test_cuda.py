"""The CUDA paths on a real GPU. Skipped where torch cannot use CUDA (every CPU-only machine, CI
included); on a GPU machine: `pytest -q tests/ddpm/test_cuda.py` (about a minute), after
`scripts/gpu_bench.sh device equality baseline` (docs/performance.md, GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import models
from ddpm.device import probe, resolve_device
from ddpm.fastpath import FastPath, InferenceRunner, sampling_path
from ddpm.runs import RunDir
from ddpm.training import TrainConfig, Trainer, TrainHooks
from tests.conftest import TINY_WIDTH, make_image_folder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_the_device_check_sees_the_gpu_and_its_driver() -> None:
    report = probe("cuda")
    assert report.device.startswith("cuda:") and report.name != "cpu" and report.torch_cuda
    assert resolve_device("auto").type == "cuda"


@pytest.mark.parametrize("arch", ["baseline", "convnext", "biggan"])
def test_each_image_is_the_same_bits_in_any_batch_on_the_gpu(arch: str) -> None:
    torch.manual_seed(0)
    runner = InferenceRunner(models.build_model(arch, width=TINY_WIDTH).cuda(), sampling_path("cuda"))
    x, t = torch.randn(150, 3, 32, 32, device="cuda"), torch.randint(0, 1000, (150,), device="cuda")
    with torch.inference_mode():
        full = runner(x, t)
        for batch in (1, 5, 16, 129):
            assert torch.equal(runner(x[:batch], t[:batch]), full[:batch]), batch
        order = torch.randperm(150, device="cuda")
        assert torch.equal(runner(x[order], t[order]), full[order])


def test_cuda_graphs_replay_what_the_network_computes_on_every_gpu() -> None:
    for index in range(torch.cuda.device_count()):
        torch.manual_seed(0)
        model = models.build_model("baseline", width=TINY_WIDTH).to(f"cuda:{index}")
        plain = InferenceRunner(model, FastPath(fixed_batch=16))
        graphed = InferenceRunner(model, FastPath(fixed_batch=16, cuda_graphs=True))
        x = torch.randn(20, 3, 32, 32, device=f"cuda:{index}")
        with torch.inference_mode():
            for step in (999, 500, 3):  # new inputs each replay: the graph must not return stale outputs
                t = torch.full((20,), step, device=f"cuda:{index}")
                # A stale replay (another timestep's output) would be far off; rounding would not.
                torch.testing.assert_close(graphed(x, t), plain(x, t), rtol=1e-5, atol=1e-6)


@pytest.fixture
def folder_data(data_dir: Path) -> Path:
    make_image_folder(data_dir / "datasets" / "tiny", count=20, size=20)
    return data_dir


def _config(**changes: object) -> TrainConfig:
    options = dict(arch="pure_unet", dataset="folder:tiny", width=TINY_WIDTH, batch_size=8, image_size=16)
    return TrainConfig(**{**options, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("bf16", [False, True])
def test_training_on_the_gpu_reads_losses_in_bursts_and_resumes(folder_data: Path, bf16: bool) -> None:
    seen: list[int] = []
    hooks = TrainHooks(on_progress=[lambda p: seen.append(p.step)])
    first = Trainer(_config(max_steps=4, bf16=bf16), folder_data, "gpu", device="cuda", hooks=hooks)
    assert first.sync_every == 10 and first.run_training().step == 4
    resumed = Trainer(_config(max_steps=25, bf16=bf16), folder_data, "gpu", device="cuda", hooks=hooks)
    parts = resumed._build()
    assert resumed._restore(parts, resume=True)[0] == 4
    for param in parts.model.parameters():  # moments in their parameters' layout, on the GPU
        state = parts.optimizer.state[param]
        assert state["exp_avg"].stride() == param.stride() and state["exp_avg"].is_cuda
        assert not state["step"].is_cuda  # AdamW's step count stays on the CPU
    assert resumed.run_training().step == 25
    assert seen == list(range(1, 26))
    rows = RunDir.of(folder_data, "gpu").loss_history()
    assert [r["step"] for r in rows] == list(range(1, 26)) and all(r["loss"] > 0 for r in rows)
