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
from ddpm.fid.results import results_dir


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
    assert records[1]["scores"] == [{"n": 256, "fid": 80.5}, {"n": 512, "fid": 71.25}]
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
    assert json.loads(json.dumps(record))["scores"] == [{"n": 8, "fid": 1.5}]


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
