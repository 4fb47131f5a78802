"""`ddpm bench`: the yardstick count and one tiny end-to-end run of the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import models
from ddpm.bench.measure import forward_flops, train_flops
from ddpm.bench.report import INCEPTION_GFLOP_PER_IMAGE
from ddpm.cli import main
from tests.conftest import TINY_WIDTH


def test_yardstick_counts_attention_and_training_is_about_three_forwards() -> None:
    net = models.build_model("baseline", width=TINY_WIDTH)
    no_attention = models.build_model("baseline", width=TINY_WIDTH, attention=False)
    shape = (3, 32, 32)
    forward = forward_flops(net, shape)
    # Self-attention at 32x32 has 1024x1024 score matrices: its QK^T and AV are real work the fused
    # kernel hides from the counter, so the yardstick counts them on the math backend.
    tokens = 32 * 32
    assert forward > forward_flops(no_attention, shape) + 2 * 2 * tokens * tokens * 8
    assert 2.5 < train_flops(net, shape) / forward < 3.2
    assert all(p.grad is None for p in net.parameters())  # counting leaves no gradients behind


def test_bench_command_prints_and_writes_every_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--archs", "pure_unet,DDPM_ConvNeXt",
            "--width", str(TINY_WIDTH),
            "--image-size", "16",
            "--batches", "1,8",
            "--pairs", "1",
            "--estimates",
            "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| fraction |" in printed and "100 epochs CIFAR-10" in printed
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 * 2 * 2 * 2  # archs x modes x batches x (eager, fast)
    assert {r["arch"] for r in rows} == {"pure_unet", "convnext"}
    for row in rows:
        assert row["throughput"] > 0 and 0 < row["fraction"] < 5
        assert row["gflops"] == pytest.approx(row["throughput"] * row["gflop_per_image"], rel=1e-6)
    checked = [r for r in rows if r["max_rel_error"] is not None]
    assert len(checked) == 8 and all(r["max_rel_error"] < 1e-4 for r in checked)


def test_bench_rejects_bad_options(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--archs", "pure_unet", "--batches", "0"]) == 2
    assert "--batches" in capsys.readouterr().err
    assert main(["bench", "--archs", "pure_unet", "--modes", "infer"]) == 2


def test_bench_estimates_a_4096_sample_fid_per_sampler(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "--archs", "pure_unet", "--width", str(TINY_WIDTH), "--image-size", "16"]
    argv += ["--modes", "sample", "--batches", "8", "--pairs", "1", "--fast-only", "--json", str(out)]
    code = main([*argv, "--fid-samplers", "ddpm,ddim:50,dpmpp_2m:20,heun:18", "--features-per-s", "4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "4096-sample FID" in printed
    matrix = printed[printed.index("4096-sample FID per sampler") :].splitlines()
    header = (
        "| arch | ddpm 1000 (1000 calls) | ddim 50 (50 calls) | dpmpp_2m 20 (20 calls) | heun 18 (35 calls) |"
    )
    assert matrix[1] == header
    assert matrix[3].startswith("| pure_unet | ") and matrix[3].count(" h / ") == 4
    payload = json.loads(out.read_text())
    (row,) = payload["rows"]
    costs = payload["fid_costs"]
    assert [c["nfe"] for c in costs] == [1000, 50, 20, 35]
    for cost in costs:
        assert cost["sampling_h"] == pytest.approx(4096 * cost["nfe"] / row["throughput"] / 3600)
        assert cost["total_h"] == pytest.approx(cost["sampling_h"] + 4096 / 4 / 3600)
        gpu = 4096 * cost["nfe"] * row["gflop_per_image"] / (cost["gpu_tflops_assumed"] * 1e3) / 3600
        assert cost["gpu_sampling_h"] == pytest.approx(gpu)
        inception = 4096 * INCEPTION_GFLOP_PER_IMAGE / (cost["gpu_tflops_assumed"] * 1e3) / 3600
        assert cost["gpu_total_h"] == pytest.approx(gpu + inception)
    assert main([*argv, "--fid-samplers", "ddim:0"]) == 2
    assert "steps must be an integer in [1, 1000] for ddim" in capsys.readouterr().err


def test_fid_phase_figures_are_rates_and_fractions_of_the_yardstick() -> None:
    from ddpm.fid.throughput import PhaseWork, distance_gflop, phase_records, statistics_gflop

    phases = {
        "features": PhaseWork(images=100, seconds=20.0, gflop_per_image=11.4),
        "distance": PhaseWork(images=100, seconds=10.0, gflop_per_image=distance_gflop(100)),
        "uncounted": PhaseWork(images=4, seconds=2.0, gflop_per_image=None),
    }
    record = phase_records(phases, matmul_flops_per_s=100e9)
    assert record["matmul_gflops"] == 100.0
    assert record["phases"]["features"] == {
        "images": 100,
        "seconds": 20.0,
        "gflop_per_image": 11.4,
        "images_per_s": 5.0,
        "fraction": pytest.approx(0.57),  # 5 images/s x 11.4 GFLOP against 100 GFLOP/s
    }
    # One 2048x2048 square root: the product, the Schur form, the triangular root (27.3 d^3).
    assert record["phases"]["distance"]["fraction"] == pytest.approx(27.33 * 2048**3 / 10 / 100e9, rel=1e-3)
    assert (
        record["phases"]["uncounted"]["fraction"] is None
        and record["phases"]["uncounted"]["images_per_s"] == 2
    )
    assert statistics_gflop() == pytest.approx(2 * 2048**2 / 1e9)
    assert phase_records(phases, None)["phases"]["features"]["fraction"] is None


def test_bench_fid_refuses_too_few_images(capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--fid", "--fid-n", "1"]) == 2
    assert "--fid-n needs at least 2" in capsys.readouterr().err
