"""The evaluator end to end, its agreement with `python -m pytorch_fid`, and its errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm.checkpoints import CheckpointError
from ddpm.cli import main
from ddpm.errors import Cancelled, DatasetUnavailable, InvalidOption
from ddpm.fid import FidUnavailable, evaluate_checkpoint, list_results
from ddpm.fid.features import feature_statistics, inception_features
from ddpm.fid.frechet import FrechetReference
from ddpm.fid.options import METRICS, MetricOptions
from ddpm.fid.reference import dataset_reference, load_npz, reference_path
from ddpm.fid.results import results_dir
from ddpm.sampling import sample_checkpoint
from tests.ddpm.fid.conftest import write_pngs

SWEEP = [4, 8]  # tiny: Inception and a 2048x2048 sqrtm per N are slow on two CPU cores
SAMPLING = {"seed": 3, "sampler": "ddim", "steps": 2}
REFERENCE = "folder:refdigits"


@pytest.fixture
def reference_folder(data_dir: Path, digits: torch.Tensor) -> str:
    """A folder dataset of 8 real digits under DATA_DIR/datasets, for cheap reference statistics."""
    write_pngs(data_dir / "datasets" / "refdigits", digits[100:108])
    return REFERENCE


def _pytorch_fid_cli(*paths: Path) -> float:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}  # TORCH_HOME points at the converted weights
    done = subprocess.run(
        [sys.executable, "-m", "pytorch_fid", "--device", "cpu", "--num-workers", "0", *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    match = re.search(r"FID:\s+(\S+)", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match.group(1))


@pytest.mark.slow
def test_sweep_end_to_end_equals_pytorch_fid_cli(
    torch_home: Path,
    inception: torch.nn.Module,
    tiny_checkpoint: Path,
    data_dir: Path,
    reference_folder: str,
    tmp_path: Path,
) -> None:
    phases: list[tuple[str, int, int]] = []
    result = evaluate_checkpoint(
        tiny_checkpoint,
        SWEEP,
        dataset=reference_folder,
        data_dir=data_dir,
        device="cpu",
        batch_size=4,
        progress=lambda *event: phases.append(event),
        **SAMPLING,
    )
    assert sorted(result.fid) == SWEEP and all(np.isfinite(v) and v > 0 for v in result.fid.values())
    assert [p for p, *_ in phases if p not in ("sampling",)][0] == "reference"  # reference first: fail early
    assert {p for p, *_ in phases} == {"reference", "sampling", "features", "scoring", "throughput"}
    assert [p for p, *_ in phases][-3:] == ["scoring", "throughput", "throughput"]  # every phase reports
    assert ("features", max(SWEEP), max(SWEEP)) in phases and ("reference", 8, 8) in phases
    assert sum("rank-deficient" in w for w in result.warnings) == len(SWEEP)
    # The other metrics, from the same features; FID-infinity (N >= 16) and the Inception Score (N >= 10)
    # are skipped at these N with a note saying so.
    for n in SWEEP:
        row = result.scores[n]
        assert row.fid == result.fid[n] and row.fid_interval is not None and row.fid_inf is None
        assert row.kid is not None and row.kid.subset_size == n // 2 and row.precision_recall is not None
        assert any(w.startswith(f"N={n}: fid_inf skipped") for w in row.warnings)
        assert any(w.startswith(f"N={n}: inception_score skipped") for w in row.warnings)
    assert result.unavailable == {}
    assert result.reference_features == {"n": 8, "total": 8, "seed": None, "chosen": "all"}
    assert result.metrics == list(METRICS) and result.metric_options == MetricOptions().to_params()
    assert REFERENCE in result.reference and "pytorch-fid-0.3.0" in result.reference
    assert {"weights", "reference", "sampling", "features", "statistics", "frechet", "total"} <= set(
        result.timings
    )
    # Each phase's throughput against the matmul rate measured in the same call (docs/performance.md).
    phases = result.throughput["phases"]
    assert list(phases) == ["reference", "sampling", "features", "statistics", "distance"]
    assert phases["reference"]["images"] == 8 and phases["sampling"]["images"] == max(SWEEP)
    assert phases["statistics"]["images"] == sum(SWEEP)
    assert phases["features"]["gflop_per_image"] == pytest.approx(11.42, rel=1e-3)  # pytorch-fid's count
    assert result.throughput["matmul_gflops"] > 0
    for name, phase in phases.items():
        assert phase["images_per_s"] > 0 and 0 < phase["fraction"] < 5, (name, phase)
        assert phase["images_per_s"] == pytest.approx(phase["images"] / phase["seconds"], rel=1e-3)
    assert result.checkpoint["arch"] == "baseline" and result.checkpoint["step"] == 1
    assert result.options["steps"] == 2 and result.options["n_samples"] == SWEEP

    # The cached reference is a pytorch-fid .npz of exactly the folder's training images.
    cached = reference_path(data_dir, REFERENCE, 32)
    assert Path(result.reference_path) == cached and load_npz(cached)[2]["n"] == 8

    # The same samples saved as PNG and scored by pytorch-fid's own CLI against the cached .npz.
    images, _ = sample_checkpoint(tiny_checkpoint, max(SWEEP), device="cpu", **SAMPLING)
    pngs = tmp_path / "samples"
    write_pngs(pngs, images)
    cli = _pytorch_fid_cli(pngs, cached)
    print(f"ours {result.fid[max(SWEEP)]!r} vs python -m pytorch_fid {cli!r}")
    # Same function; features from the fast Inception path (within 1e-5 of the plain network's).
    assert result.fid[max(SWEEP)] == pytest.approx(cli, rel=1e-6)

    # The fast distance (bootstrap, FID-infinity) on real 2048-d features equals the headline.
    mu, sigma, _ = load_npz(cached)
    projected = FrechetReference(mu, sigma).project(inception_features(images, inception))
    for n in SWEEP:
        assert projected.distance(slice(0, n)) == pytest.approx(result.fid[n], rel=1e-6)

    # A second use reads the cache: nothing is recomputed (the Inception loader is never called).
    def no_model() -> torch.nn.Module:
        raise AssertionError("reference recomputed")

    again: list[tuple[int, int]] = []
    stats = dataset_reference(REFERENCE, data_dir, 32, no_model, progress=lambda *e: again.append(e))
    assert not stats.computed and again == [(8, 8)] and stats.identity == result.reference


def test_cli_stores_a_record_and_fid_of_a_set_with_itself_is_zero(
    tiny_checkpoint: Path,
    inception: torch.nn.Module,
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    """The reference is a user .npz of the very samples the command will draw: FID(X, X) ~ 0."""
    images, _ = sample_checkpoint(tiny_checkpoint, 4, seed=0, sampler="ddim", steps=2, device="cpu")
    mu, sigma = feature_statistics(inception_features(images, inception))
    npz = tmp_path / "same.npz"
    np.savez(npz, mu=mu, sigma=sigma)
    argv = ["fid", "--checkpoint", str(tiny_checkpoint), "--n", "4", "--sampler", "ddim", "--steps", "2"]
    assert main([*argv, "--reference", str(npz), "--batch-size", "4", "--device", "cpu", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["scores"][0]["n"] == 4 and abs(record["scores"][0]["fid"]) < 1e-3
    # mu and sigma serve FID and its interval; KID and precision/recall need features a .npz lacks.
    assert record["scores"][0]["fid_interval"]["replicates"] == 50
    assert set(record["unavailable"]) == {"kid", "precision_recall"}
    assert "user .npz" in record["unavailable"]["kid"] and record["reference_features"] is None
    assert record["reference"].startswith("file same.npz") and record["reference_path"] == str(npz)
    assert record["sampler"] == "ddim" and record["seed"] == 0 and record["run_id"] == "tiny-fid"
    assert [r["id"] for r in list_results(data_dir)] == [record["id"]]


def test_cancel_from_progress_propagates_and_caches_nothing(
    torch_home: Path, tiny_checkpoint: Path, data_dir: Path, reference_folder: str
) -> None:
    def cancel(phase: str, done: int, total: int) -> None:
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        evaluate_checkpoint(
            tiny_checkpoint,
            [4],
            0,
            "ddim",
            2,
            dataset=reference_folder,
            data_dir=data_dir,
            device="cpu",
            progress=cancel,
        )
    assert not reference_path(data_dir, REFERENCE, 32).exists()


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"n_samples": [0]}, InvalidOption, r"\[2, 50000\]"),
        ({"n_samples": [50_001]}, InvalidOption, r"\[2, 50000\]"),
        ({"n_samples": []}, InvalidOption, "at least one"),
        ({"sampler": "euler"}, InvalidOption, "sampler"),
        ({"sampler": "ddpm", "steps": 10}, InvalidOption, "1000 steps"),
        ({"batch_size": 0}, InvalidOption, "batch_size"),
        ({"dataset": "imagenet"}, InvalidOption, "unknown dataset"),
        ({"checkpoint": Path("/nonexistent/step.safetensors")}, CheckpointError, "does not exist"),
    ],
)
def test_bad_options_fail_before_any_work(
    tiny_checkpoint: Path, data_dir: Path, options: dict, error: type, message: str
) -> None:
    arguments = {"checkpoint": tiny_checkpoint, "n_samples": [4], "seed": 0, "data_dir": data_dir, **options}
    with pytest.raises(error, match=message):
        evaluate_checkpoint(**arguments)
    assert not (data_dir / "fid").exists()


def test_missing_reference_data_is_explained(
    torch_home: Path, tiny_checkpoint: Path, data_dir: Path, tmp_path: Path
) -> None:
    # CIFAR-10 absent and downloads off (the data_dir fixture sets DDPM_DOWNLOAD=0)
    with pytest.raises(DatasetUnavailable, match="cifar-10-python.tar.gz"):
        evaluate_checkpoint(
            tiny_checkpoint, [4], 0, "ddim", 2, dataset="cifar10", data_dir=data_dir, device="cpu"
        )
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        evaluate_checkpoint(
            tiny_checkpoint, [4], 0, "ddim", 2, dataset="folder:absent", data_dir=data_dir, device="cpu"
        )
    with pytest.raises(FidUnavailable, match="do not exist"):
        evaluate_checkpoint(
            tiny_checkpoint, [4], 0, "ddim", 2, data_dir=data_dir, reference_npz=tmp_path / "none.npz"
        )
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu=np.zeros(64), sigma=np.eye(64))
    with pytest.raises(InvalidOption, match=r"\(2048,\)"):
        evaluate_checkpoint(tiny_checkpoint, [4], 0, "ddim", 2, data_dir=data_dir, reference_npz=bad)
    assert not any((data_dir / "fid").rglob("*.npz")) if (data_dir / "fid").exists() else True


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n", "0"], "[2, 50000]"),
        (["--n", "256,lots"], "comma-separated"),
        (["--arch", "nosuch"], "nosuch"),
        (["--run", "nosuch"], "no run"),
        (["--checkpoint", "/nonexistent.safetensors"], "does not exist"),
        (["--metrics", "kid,psnr"], "valid metrics are fid, fid_interval, fid_inf, kid"),
        (["--n", "8", "--metrics", "fid_inf"], "fid_inf needs N >= 16"),
        (["--bootstrap", "1"], "bootstrap must be an integer in [2, 10000]"),
    ],
)
def test_cli_errors_are_one_line_and_store_nothing(
    data_dir: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    if not any(a in argv for a in ("--arch", "--run", "--checkpoint")):
        argv = [*argv, "--checkpoint", "/nonexistent.safetensors"]
    assert main(["fid", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not results_dir(data_dir).exists()


def test_named_metrics_that_cannot_run_fail_before_sampling(
    torch_home: Path, tiny_checkpoint: Path, data_dir: Path, tmp_path: Path
) -> None:
    npz = tmp_path / "stats.npz"
    np.savez(npz, mu=np.zeros(2048), sigma=np.eye(2048))
    arguments = {"checkpoint": tiny_checkpoint, "n_samples": [16], "seed": 0, "data_dir": data_dir}
    with pytest.raises(InvalidOption, match="kid need the reference's features"):
        evaluate_checkpoint(**arguments, reference_npz=npz, metrics=MetricOptions(metrics=("kid",)))
    with pytest.raises(
        FidUnavailable, match="inception_score: the Inception Score needs the classifier head"
    ):
        evaluate_checkpoint(
            **arguments, reference_npz=npz, metrics=MetricOptions(metrics=("inception_score",))
        )
    with pytest.raises(InvalidOption, match="fid_inf needs N >= 16"):
        evaluate_checkpoint(**{**arguments, "n_samples": [8]}, metrics=MetricOptions(metrics=("fid_inf",)))
    assert not results_dir(data_dir).exists()
