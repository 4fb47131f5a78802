"""Members read from real runs, and the ranking on synthetic FID records (separated, overlapping, seeds)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from ddpm.runs import RunDir
from ddpm.study.ranking import BOOTSTRAP, NO_INTERVAL, SEEDS_T, rank, t_quantile, variant_figures
from ddpm.study.results import (
    DONE,
    EVALUATING,
    MemberResult,
    final_checkpoint,
    member_from_run,
    train_seconds,
)
from tests.conftest import TINY_WIDTH, make_image_folder


def record(points: dict[int, tuple[float, float | None]]) -> dict[str, Any]:
    """An FID record (FidResult.to_record's shape) with FID and its bootstrap interval's half-width per N."""
    rows = []
    for n, (fid, half) in sorted(points.items()):
        row: dict[str, Any] = {"n": n, "fid": fid, "warnings": []}
        if half is not None:
            row["fid_interval"] = {
                "low": fid - half,
                "high": fid + half,
                "se": half / 1.96,
                "level": 0.95,
                "replicates": 50,
                "bootstrap_mean": fid + 1,
            }
        rows.append(row)
    return {"arch": "x", "scores": rows, "warnings": [], "dataset": "digits"}


def member(variant: str, points: dict[int, tuple[float, float | None]], seed: int = 0) -> MemberResult:
    return MemberResult(variant, seed, f"{variant}-{seed}", DONE, fid_record=record(points))


def test_separated_intervals_rank_in_tiers() -> None:
    results = [
        member("baseline", {100: (80.0, 2.0), 200: (75.0, 2.0)}),
        member("biggan", {100: (60.0, 2.0), 200: (53.0, 2.0)}),
        member("res_link", {100: (70.0, 2.0), 200: (56.0, 2.0)}),
    ]
    ranking = rank(results)
    assert ranking.n == 200  # the largest N by default
    assert ranking.tiers == [["biggan", "res_link"], ["baseline"]]  # 53 +-2 and 56 +-2 overlap
    assert ranking.indistinct == {"biggan": ["res_link"], "res_link": ["biggan"], "baseline": []}
    assert ranking.tier_of("baseline") == 2
    at_100 = rank(results, 100)
    assert at_100.tiers == [["biggan"], ["res_link"], ["baseline"]] and not any(at_100.indistinct.values())
    text = "\n".join(ranking.lines())
    assert "res_link: 56.00 [54.00, 58.00]; not distinguishable from biggan" in text
    assert BOOTSTRAP in text and "Tier 2" in text


def test_all_overlapping_is_one_tier_said_so() -> None:
    results = [member("a", {50: (10.0, 3.0)}), member("b", {50: (12.0, 3.0)}), member("c", {50: (14.0, 3.0)})]
    ranking = rank(results)
    # c [11, 17] overlaps a [7, 13], the leader: one tier
    assert ranking.tiers == [["a", "b", "c"]]
    assert "cannot tell these variants apart" in "\n".join(ranking.lines())


def test_overlap_is_not_transitive_and_is_said() -> None:
    results = [member("a", {50: (10.0, 1.5)}), member("b", {50: (12.0, 1.5)}), member("c", {50: (14.0, 1.5)})]
    ranking = rank(results)
    assert ranking.tiers == [["a", "b"], ["c"]]  # c does not overlap a, the leader
    assert ranking.indistinct["c"] == ["b"]  # but it does overlap b: never called worse than b
    assert "c: 14.00 [12.50, 15.50]; not distinguishable from b" in "\n".join(ranking.lines())


def test_no_interval_is_shown_not_ranked() -> None:
    results = [member("a", {50: (10.0, 1.0)}), member("b", {50: (5.0, None)})]
    ranking = rank(results)
    assert ranking.tiers == [["a"]] and ranking.unranked == ["b"]
    assert [f.method for f in ranking.figures] == [BOOTSTRAP, NO_INTERVAL]
    assert "b: 5.00 (no interval): no interval, so not ranked" in "\n".join(ranking.lines())


def test_several_seeds_give_a_t_interval_over_seeds() -> None:
    values = [50.0, 54.0, 52.0]
    results = [member("a", {64: (v, 0.5)}, seed) for seed, v in enumerate(values)]
    results += [member("b", {64: (70.0, 0.5)}), MemberResult("c", 0, None, "training")]
    (a, b) = variant_figures(results, 64)
    half = t_quantile(0.95, 2) * statistics.stdev(values) / math.sqrt(3)
    assert t_quantile(0.95, 1) == pytest.approx(12.706, abs=1e-3)
    assert a.method == SEEDS_T and a.seeds == 3 and a.value == pytest.approx(52.0)
    assert (a.low, a.high) == (pytest.approx(52.0 - half), pytest.approx(52.0 + half))
    assert b.method == BOOTSTRAP and b.seeds == 1
    assert rank(results).tiers == [["a"], ["b"]]
    assert "3 seeds" in "\n".join(rank(results).lines())


def test_nothing_scored_yet() -> None:
    ranking = rank([MemberResult("a", 0, None, "pending")])
    assert ranking.figures == [] and "nothing to rank" in ranking.lines()[0]


def test_member_round_trips_and_smooths_its_loss() -> None:
    result = member("a", {8: (3.0, 1.0)})
    result.losses = [(1, 1.0), (2, 0.5), (3, math.nan), (4, 0.25)]
    assert MemberResult.from_dict(result.to_dict()) == result
    assert result.final_loss(0.0) == 0.25
    assert result.final_loss(0.5) == pytest.approx(0.375 / 0.875)  # the nan step is skipped
    assert MemberResult("b", 0, None, "pending").final_loss() is None


def test_member_from_a_real_run(data_dir: Path) -> None:
    from ddpm.training import TrainConfig, train
    from models import build_model

    make_image_folder(data_dir / "datasets" / "tiny", count=16, size=16)
    config = TrainConfig(
        arch="biggan",
        dataset="folder:tiny",
        width=TINY_WIDTH,
        image_size=16,
        batch_size=8,
        max_steps=3,
        seed=2,
    )
    train(config, data_dir, run_id="r1", device="cpu")
    run = RunDir.of(data_dir, "r1")
    result = member_from_run(run.path)
    expected = sum(p.numel() for p in build_model("biggan", width=TINY_WIDTH).parameters())
    assert (result.variant, result.seed, result.run_id) == ("biggan", 2, "r1")
    assert result.parameters == expected and result.state == EVALUATING
    assert [step for step, _ in result.losses] == [1, 2, 3] and result.train_seconds > 0
    assert final_checkpoint(run.path) == run.checkpoint_path(3)
    done = member_from_run(run.path, grid_png=Path("g.png"), fid_record=record({4: (1.0, 0.1)}))
    assert done.state == DONE and done.scores()[4].fid == 1.0

    # A resumed run's seconds restart at its process start: the segments are summed.
    run.loss_path.write_text(
        "step,epoch,loss,lr,seconds\n1,0,1,0.1,2.0\n2,0,1,0.1,3.0\n3,1,1,0.1,0.5\n4,1,1,0.1,1.5\n"
    )
    assert train_seconds(run) == pytest.approx(4.5)
    run.update(status="failed", error="boom")
    failed = member_from_run(run.path)
    assert failed.state == "failed" and failed.error == "boom"
