"""Compiled sampling by job size (ddpm/compile_policy.py): the decision, unit-tested without compiling,
what a sampling job records, where the compile cache goes, and one tiny compiled network whose images
do not depend on their batch."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

import models
from ddpm import compile_policy as policy
from ddpm.compile_policy import decide_compile, parse_setting
from ddpm.errors import InvalidOption
from ddpm.fastpath import FastPath, InferenceRunner, compile_network
from ddpm.sampling import sample_checkpoint, sampling_decision
from ddpm.training import TrainConfig, train
from jobs.settings import Settings
from tests.conftest import TINY_WIDTH

BASELINE_GFLOP = 3.71  # the report's baseline at 32x32, one network call (docs/performance.md)


def test_settings_and_their_older_spellings() -> None:
    assert [parse_setting(v) for v in ("auto", "ON", " off ", "1", "0", "")] == [
        "auto", "on", "off", "on", "off", "auto",
    ]  # fmt: skip
    with pytest.raises(InvalidOption, match="DDPM_COMPILE must be one of auto, on, off, got 'yes'"):
        parse_setting("yes")
    assert Settings(compile="1").compile == "on" and Settings().compile == "auto"
    with pytest.raises(ValidationError, match="DDPM_COMPILE must be one of auto, on, off"):
        Settings(compile="sometimes")


def test_on_and_off_are_obeyed_whatever_the_size() -> None:
    huge, tiny = (4096, 1000, BASELINE_GFLOP), (1, 1, BASELINE_GFLOP)
    assert decide_compile(*tiny, "cpu", "on").compiled
    assert not decide_compile(*huge, "cpu", "off").compiled
    assert decide_compile(*tiny, "cpu", "on").reason == "DDPM_COMPILE=on"


def test_auto_compiles_where_the_saving_covers_the_cost() -> None:
    # The report's FID set on the CPU: 4096 images x 1000 calls, hours eager; compiling pays at once.
    report = decide_compile(4096, 1000, BASELINE_GFLOP, "cpu", "auto")
    assert report.compiled and report.image_calls == 4_096_000 and report.saved_s > 10_000
    # One 80-image DDIM-50 grid: 97 s eager (the bench's 41 image-steps/s), compiling would save 13 s.
    grid = decide_compile(80, 50, BASELINE_GFLOP, "cpu", "auto")
    assert not grid.compiled
    assert grid.reason == "4,000 image-calls: about 97 s eager, compiling saves about 13 s < its 60 s cost"
    # The break-even: saved = calls x GFLOP / (rate x 0.75) x (1 - 0.75/0.87) = 60 s.
    per_call = BASELINE_GFLOP / (policy.ASSUMED_GFLOPS["cpu"] * policy.EAGER_FRACTION) * policy.SAVED_FRACTION
    even = policy.COMPILE_COST_S["cpu"] / per_call
    assert not decide_compile(int(even) - 1, 1, BASELINE_GFLOP, "cpu", "auto").compiled
    assert decide_compile(int(even) + 1, 1, BASELINE_GFLOP, "cpu", "auto").compiled
    # An H200 is ~740x faster: the same FID set samples in about 2 minutes and compiling stays off.
    assert not decide_compile(4096, 1000, BASELINE_GFLOP, "cuda", "auto").compiled
    # Nothing to go on: eager.
    assert "no compile figures for 'mps'" in decide_compile(4096, 1000, 1.0, "mps", "auto").reason
    assert not decide_compile(4096, 1000, None, "cpu", "auto").compiled
    assert set(report.to_dict()) == {
        "compiled", "setting", "reason", "image_calls", "eager_s", "saved_s", "compile_cost_s",
    }  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    config = TrainConfig(
        arch="pure_unet", dataset="digits", width=TINY_WIDTH, batch_size=8, image_size=16, max_steps=1
    )
    train(config, root, run_id="c", device="cpu")
    from ddpm.runs import RunDir

    return RunDir.of(root, "c").kept_checkpoints()[-1][1]


def test_a_sampling_job_records_its_decision(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DDPM_COMPILE", raising=False)
    _, meta = sample_checkpoint(checkpoint, 2, 0, "ddim", steps=2, device="cpu")
    decision = meta["compile"]
    assert decision["setting"] == "auto" and not decision["compiled"] and decision["image_calls"] == 4
    assert decision["eager_s"] is not None and decision["saved_s"] < decision["compile_cost_s"]
    # The decision alone (no compiling): a job asking for enough images would compile; `on` always does.
    assert sampling_decision(meta, 50_000, "ddpm", "cpu").compiled
    monkeypatch.setenv("DDPM_COMPILE", "on")
    assert sampling_decision(meta, 1, "ddim", "cpu").reason == "DDPM_COMPILE=on"


def test_the_compile_cache_goes_on_the_data_volume(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    model = models.build_model("pure_unet", width=TINY_WIDTH)
    compile_network(model, FastPath(compile=True, compile_backend="eager"))  # lazy: nothing compiles yet
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(data_dir / "cache" / "compile")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/elsewhere")  # an operator's own choice is kept
    compile_network(model, FastPath(compile=True, compile_backend="eager"))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/elsewhere"


@pytest.mark.timeout(600)
def test_a_compiled_network_gives_each_image_the_same_bits_in_any_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inductor on a tiny network (two levels, no attention: a minute to compile on two busy cores)
    at the fixed batch: an image's eps is the same bits alone, first or last in a batch, with any
    neighbours; the compile cache is written where TORCHINDUCTOR_CACHE_DIR says."""
    import torch._dynamo

    cache = tmp_path / "compile"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = models.build_model("baseline", channels=(8, 16), bottleneck=(16,), attention=False, in_channels=1)
    compiled = InferenceRunner(model, FastPath(compile=True, fixed_batch=16))
    eager = InferenceRunner(model, FastPath(fixed_batch=16))
    x, t = torch.randn(20, 1, 16, 16), torch.randint(0, 1000, (20,))
    order = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    started = time.monotonic()
    with torch.inference_mode():
        full = compiled(x, t)  # two calls of 16, the second padded
        print(f"compile and first call: {time.monotonic() - started:.0f} s")
        assert torch.equal(compiled(x[order], t[order]), full[order])
        assert torch.equal(compiled(x[:3], t[:3]), full[:3])
        assert torch.equal(compiled(x[19:], t[19:]), full[19:])
        reference = eager(x, t)
    torch._dynamo.reset()
    # Not the eager path's bits (fused kernels round differently), but its numbers.
    assert torch.allclose(full, reference, rtol=1e-4, atol=1e-5)
    assert any(cache.rglob("*")), "nothing was written to the compile cache"
