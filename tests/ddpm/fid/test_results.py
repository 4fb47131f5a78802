"""The results table and the package's torch-free surface (the API process imports them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ddpm.errors import InvalidOption
from ddpm.fid import FidResult, list_results, save_result
from ddpm.fid.options import MAX_N, check_n_samples, parse_n_list, rank_warnings
from ddpm.fid.results import markdown_table, results_dir, table_rows
from ddpm.fid.score_types import (
    FidInfinity,
    FidInterval,
    InceptionScore,
    KidEstimate,
    PrecisionRecall,
    Scores,
)


def test_importing_results_and_package_does_not_import_torch() -> None:
    code = (
        "import sys, ddpm.fid, ddpm.fid.results, ddpm.fid.options, ddpm.fid.cli; "
        "from ddpm.fid import FidResult, save_result, list_results; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'numpy' not in sys.modules, 'numpy imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_evaluate_checkpoint_is_loaded_lazily() -> None:
    import ddpm.fid

    assert callable(ddpm.fid.evaluate_checkpoint)
    with pytest.raises(AttributeError):
        _ = ddpm.fid.no_such_name


def test_save_and_list_newest_first(tmp_path: Path) -> None:
    result = FidResult({256: 80.5, 512: 71.25}, ["w"], "digits ...", {"sampling": 1.0})
    first = save_result(tmp_path, {**result.to_record(), "arch": "baseline"})
    second = save_result(tmp_path, {"arch": "biggan", "scores": [{"n": 4096, "fid": 53.1}]})
    records = list_results(tmp_path)
    assert [r["id"] for r in records] == [second, first]
    assert records[1]["scores"] == [
        {"n": 256, "fid": 80.5, "warnings": []},
        {"n": 512, "fid": 71.25, "warnings": []},
    ]
    assert records[1]["warnings"] == ["w"] and records[1]["arch"] == "baseline"
    assert (results_dir(tmp_path) / f"{first}.json").is_file()


def test_list_skips_temp_and_corrupt_files(tmp_path: Path) -> None:
    kept = save_result(tmp_path, {"arch": "baseline"})
    folder = results_dir(tmp_path)
    (folder / ".partial.json.123.tmp").write_text("{")
    (folder / "broken.json").write_text("{not json")
    assert [r["id"] for r in list_results(tmp_path)] == [kept]
    assert list_results(tmp_path / "nothing-here") == []


def test_unserialisable_record_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_result(tmp_path, {"bad": object()})
    assert list_results(tmp_path) == []
    assert not results_dir(tmp_path).exists() or not any(results_dir(tmp_path).iterdir())


def test_record_is_json(tmp_path: Path) -> None:
    record = FidResult({8: 1.5}, [], "ref", {"total": 2.0}, {"arch": "baseline", "step": 3}).to_record()
    assert json.loads(json.dumps(record))["scores"] == [{"n": 8, "fid": 1.5, "warnings": []}]


@pytest.mark.parametrize("bad", [0, -1, 1, MAX_N + 1, 2.5, "64", True, [], [64, 0]])
def test_bad_sample_counts(bad: object) -> None:
    with pytest.raises(InvalidOption, match=r"\[2, 50000\]|at least one"):
        check_n_samples(bad)  # type: ignore[arg-type]


def test_sample_counts_sorted_unique_and_parsed() -> None:
    assert check_n_samples([512, 256, 512]) == [256, 512]
    assert check_n_samples(4096) == [4096]
    assert parse_n_list("256, 512,1024") == [256, 512, 1024]
    with pytest.raises(InvalidOption, match="comma-separated"):
        parse_n_list("4k")


def test_limit_matches_the_sampling_engine() -> None:
    from ddpm.sampling import MAX_SAMPLES

    assert MAX_N == MAX_SAMPLES


def test_rank_warning_only_below_2048() -> None:
    warnings = rank_warnings([256, 2047, 2048, 4096])
    assert len(warnings) == 2 and "N=256" in warnings[0] and "rank-deficient" in warnings[0]


# A record exactly as format 1 wrote it (ddpm fid before the metrics), and as the worker wrote it.
FORMAT_1 = {
    "checkpoint": "/data/runs/b/checkpoints/step-00001000.safetensors",
    "arch": "biggan",
    "run_id": "b",
    "step": 1000,
    "epoch": 2.0,
    "weights": "ema",
    "seed": 0,
    "sampler": "ddim",
    "steps": 50,
    "eta": 0.0,
    "dataset": "digits",
    "n_samples": [256, 4096],
    "device": "cpu",
    "scores": [{"n": 256, "fid": 80.5}, {"n": 4096, "fid": 61.25}],
    "warnings": [
        "N=256 < 2048: the sample covariance is rank-deficient, so FID is biased upward",
        "samples are 16px but the digits reference images are 32px",
    ],
    "reference": "digits training split (1797 images, 32x32, no flips); pytorch-fid-0.3.0-pool3-bilinear299",
    "reference_path": "/data/fid/reference/digits.npz",
    "timings": {"total": 12.0},
    "id": "20261101-120000-abcd1234",
    "created": 1.0,
    "format": "ddpm-arch-bench/fid-result/1",
}
WORKER_FORMAT_1 = {"arch": "rdn", "dataset": "cifar10", "fid": {"512": 20.0}, "warnings": [], "created": 2.0}


def full_scores() -> Scores:
    return Scores(
        n=512,
        fid=71.25,
        fid_interval=FidInterval(69.0, 73.5, 1.148, 0.95, 50, 72.0),
        fid_inf=FidInfinity(60.5, 0.4, 5000.0, ((52, 160.0), (512, 71.0))),
        kid=KidEstimate(0.0123, 0.0021, 100, 512),
        precision_recall=PrecisionRecall(0.61, 0.42, 3),
        inception_score=InceptionScore(2.5, 0.1, 10),
        warnings=["N=512 < 2048: rank-deficient"],
    )


def test_format_1_records_load_and_make_rows(tmp_path: Path) -> None:
    result = FidResult.from_record(FORMAT_1)
    assert result.fid == {256: 80.5, 4096: 61.25} and result.metrics == ["fid"]
    assert result.scores[256] == Scores(256, 80.5) and result.scores[256].kid is None
    assert result.checkpoint["arch"] == "biggan" and result.options["n_samples"] == [256, 4096]
    rows = table_rows([FORMAT_1, WORKER_FORMAT_1])
    assert [(r["arch"], r["dataset"], r["n"], r["fid"]) for r in rows] == [
        ("biggan", "digits", 256, 80.5),
        ("biggan", "digits", 4096, 61.25),
        ("rdn", "cifar10", 512, 20.0),
    ]
    # A warning about one N stays in that N's row; a general one is in every row of its record.
    assert rows[0]["warnings"] == FORMAT_1["warnings"]
    assert rows[1]["warnings"] == [FORMAT_1["warnings"][1]]
    assert rows[0]["kid"] is None and rows[0]["unavailable"] == {}


def test_new_record_round_trips_through_json(tmp_path: Path) -> None:
    scores = full_scores()
    result = FidResult(
        {512: 71.25},
        list(scores.warnings),
        "ref",
        {"total": 3.0},
        {"arch": "baseline"},
        {"dataset": "digits"},
        scores={512: scores},
        metrics=["fid", "kid"],
        metric_options={"bootstrap": 50},
        unavailable={"inception_score": "no classifier head"},
        reference_features={"n": 1797, "total": 1797, "seed": None, "chosen": "all"},
    )
    save_result(tmp_path, result.to_record())
    stored = list_results(tmp_path)[0]
    assert stored["format"] == "ddpm-arch-bench/fid-result/2"
    assert stored["scores"][0]["fid_inf"]["points"] == [[52, 160.0], [512, 71.0]]
    loaded = FidResult.from_record(stored)
    assert loaded.scores == {512: scores} and loaded.unavailable == result.unavailable
    assert loaded.reference_features == result.reference_features and loaded.metrics == ["fid", "kid"]


def test_rows_carry_every_metric_and_markdown_shows_the_warnings() -> None:
    record = {
        **FORMAT_1,
        "scores": [Scores(256, 80.5).to_dict(), full_scores().to_dict()],
        "warnings": ["N=256 < 2048: biased | not comparable", "N=512 < 2048: rank-deficient", "general"],
        "unavailable": {"inception_score": "no classifier head"},
        "reference_features": {"n": 1797, "total": 1797, "seed": None, "chosen": "all"},
    }
    rows = table_rows([record])
    row = rows[1]
    assert (row["n"], row["dataset"], row["fid"], row["fid_low"], row["fid_high"]) == (
        512,
        "digits",
        71.25,
        69.0,
        73.5,
    )
    assert (row["fid_inf"], row["fid_inf_se"], row["kid"], row["kid_std"]) == (60.5, 0.4, 0.0123, 0.0021)
    assert (row["precision"], row["recall"], row["inception_score"]) == (0.61, 0.42, 2.5)
    assert row["reference_features_n"] == 1797
    assert row["warnings"] == ["N=512 < 2048: rank-deficient", "general"]
    markdown = markdown_table(rows)
    lines = markdown.splitlines()
    assert lines[0].startswith("| arch | run | step | sampler | data set | N | FID (95% interval) |")
    assert "| 256 | 80.50 |" in lines[2] and lines[2].endswith("| [1], [2], [3] |")
    assert "| 512 | 71.25 (69.00 to 73.50) | 60.50 ± 0.40 | 12.30 ± 2.10 | 0.610 | 0.420 | 2.50 |" in lines[3]
    assert lines[3].endswith("| [4], [2], [3] |")
    assert "[1] N=256 < 2048: biased \\| not comparable" in markdown  # a pipe cannot break the table
    assert "[3] no inception_score: no classifier head" in markdown
    assert markdown_table([]).splitlines()[2].startswith("| (no results yet) |")
