"""The sampler study: real evaluations stored and reused, and what its table says about intervals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddpm.fid.results import FidResult, list_results, save_result
from ddpm.fid.sampler_study import (
    find_stored,
    findings,
    main,
    metric_options,
    read_loads,
    study_rows,
)
from ddpm.fid.score_types import FidInterval, KidEstimate, Scores
from ddpm.sampler_spec import SamplerSpec
from tests.ddpm.fid.conftest import write_pngs

N = 4  # tiny: each evaluation is Inception on N images and one Frechet distance on two CPU cores


@pytest.mark.slow
def test_run_stores_a_sampler_once_and_the_table_reads_it(
    torch_home: Path,
    tiny_checkpoint: Path,
    data_dir: Path,
    digits: torch.Tensor,
    capsys: pytest.CaptureFixture,
) -> None:
    """One real evaluation (Inception and a Frechet distance are slow on two CPU cores), then reruns."""
    write_pngs(data_dir / "datasets" / "refdigits", digits[100:108])
    argv = ["--checkpoint", str(tiny_checkpoint), "--n", str(N), "--seed", "1", "--bootstrap", "2"]
    argv += ["--kid-subsets", "2", "--batch-size", "4", "--dataset", "folder:refdigits"]
    assert main(["run", *argv, "--samplers", "heun:2"]) == 0
    (heun,) = list_results(data_dir)
    assert heun["sampler"] == "heun" and heun["nfe"] == 3 and heun["seed"] == 1 and heun["n_samples"] == [N]
    score = heun["scores"][0]
    assert score["fid_interval"]["replicates"] == 2 and score["kid"]["subsets"] == 2
    loads = read_loads(data_dir)
    assert list(loads) == [heun["id"]] and len(loads[heun["id"]]) == 2
    # Rerun as the second of two processes sharing a list: its one sampler is stored, so it is skipped.
    assert main(["run", *argv, "--samplers", "ddim:2,heun:2", "--part", "2/2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("heun 2 steps (3 network calls)") and "skipped" in out and "ddim" not in out
    assert len(list_results(data_dir)) == 1
    assert main(["table", *argv, "--samplers", "heun:2,ddim:2"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| Heun (Karras) "))
    assert f"| 2 | 3 | {score['fid']:.2f} (" in row and f"{loads[heun['id']][0]:.1f} -> " in row
    assert "Lowest FID: Heun (Karras) 2" in out and "Not measured yet: ddim 2 steps" in out
    assert main(["run", *argv, "--part", "3/2"]) == 2
    assert "--part takes I/K" in capsys.readouterr().err


def _stored(data_dir: Path, spec: SamplerSpec, fid: float, half_width: float) -> None:
    """A record as evaluate_checkpoint makes it, with a chosen FID and 95% interval."""
    interval = FidInterval(fid - half_width, fid + half_width, half_width / 1.96, 0.95, 100, fid + 1)
    scores = {512: Scores(512, fid, fid_interval=interval, kid=KidEstimate(0.01, 0.001, 100, 256))}
    result = FidResult(
        fid={512: fid},
        warnings=[],
        reference="digits",
        timings={"sampling": 1.0, "features": 2.0, "total": 4.0},
        checkpoint={"checkpoint": "/runs/r/checkpoints/step-00000010.safetensors", "arch": "baseline"},
        options={"seed": 0, "sampler": spec.sampler, "steps": spec.steps, "nfe": spec.nfe, "n_samples": [512]}
        | {"sampler_spec": spec.to_params(), "dataset": "digits"},
        scores=scores,
        metric_options=metric_options().to_params(),
    )
    save_result(data_dir, result.to_record())


@pytest.mark.parametrize(
    ("ddpm_fid", "verdict"),
    [
        (20.0, "DDPM 1000 beats DDIM 50"),  # [18, 22] against [28, 32]: disjoint
        (27.0, "not ranked: the intervals overlap"),  # [25, 29] against [28, 32]
        (40.0, "DDPM 1000 is worse than DDIM 50"),
    ],
)
def test_the_criterion_ranks_only_disjoint_intervals(data_dir: Path, ddpm_fid: float, verdict: str) -> None:
    checkpoint = Path("/runs/r/checkpoints/step-00000010.safetensors")
    specs = [SamplerSpec("ddim", 50), SamplerSpec("ddpm"), SamplerSpec("heun", 18)]
    _stored(data_dir, specs[0], 30.0, 2.0)
    _stored(data_dir, specs[1], ddpm_fid, 2.0)
    _stored(data_dir, specs[2], 31.0, 2.0)
    records = list_results(data_dir)
    options = metric_options()
    assert find_stored(records, checkpoint, specs[0], 512, 1, options) is None  # another seed
    assert find_stored(records, checkpoint, specs[0], 256, 0, options) is None  # another N
    rows, missing = study_rows(records, checkpoint, [*specs, SamplerSpec("ddim", 10)], 512, 0, options, {})
    assert [r.label for r in rows] == ["DDPM 1000", "DDIM 50", "Heun (Karras) 18"] and len(missing) == 1
    criterion, best, equals = findings(rows)
    assert criterion.startswith("Criterion: ") and verdict in criterion
    if ddpm_fid == 20.0:
        assert best.startswith("Lowest FID: DDPM 1000") and best.endswith("overlapping it: none.")
        assert equals.endswith("below it (disjoint): none.")
    if ddpm_fid == 40.0:  # DDIM 50 [28, 32] and Heun [29, 33] tie; both lie below DDPM-1000
        assert "Lowest FID: DDIM 50" in best and "overlapping it: Heun (Karras) 18." in best
        assert equals == "Within DDPM-1000's interval: none; below it (disjoint): DDIM 50, Heun (Karras) 18."


def test_rows_of_one_sampler_with_other_options_are_told_apart_and_the_criterion_is_the_reports(
    data_dir: Path,
) -> None:
    """A clipped DDPM-1000 beside the report's: both labelled by what differs, and the criterion compares
    the report's own (beta_t, unclipped) with DDIM 50, whatever the clipped one scored."""
    checkpoint = Path("/runs/r/checkpoints/step-00000010.safetensors")
    specs = [SamplerSpec("ddim", 50), SamplerSpec("ddpm", clip_x0=True), SamplerSpec("ddpm")]
    for spec, fid in zip(specs, (30.0, 10.0, 40.0), strict=True):
        _stored(data_dir, spec, fid, 2.0)
    rows, _ = study_rows(list_results(data_dir), checkpoint, specs, 512, 0, metric_options(), {})
    assert sorted(r.label for r in rows) == ["DDIM 50", "DDPM 1000", "DDPM 1000 (clip_x0 True)"]
    criterion, best, _ = findings(rows)
    assert criterion.startswith("Criterion: DDPM 1000 is worse than DDIM 50 (40.00")
    assert best.startswith("Lowest FID: DDPM 1000 (clip_x0 True)")
