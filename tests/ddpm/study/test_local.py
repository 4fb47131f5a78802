"""digits-smoke end to end in one process (`ddpm study --local`), cut to the least that still runs every
stage: two of its variants, 3 training steps each, N = 8 against 8 real digits, 2 sampler steps. Its time
goes mostly to the exact Frechet distance: scipy's sqrtm of a 2048 x 2048 matrix, about 30 s single-
threaded (docs/fid.md), once per member and once for the check, so about 2 minutes on 2 quiet cores."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from ddpm.cli import main
from ddpm.fid import evaluate_checkpoint, list_results
from ddpm.runs import RunDir, list_runs
from ddpm.sampling import grid_png, sample_checkpoint
from ddpm.study.results import final_checkpoint
from ddpm.study.spec import preset
from tests.ddpm.fid.conftest import write_pngs

REFERENCE = "folder:refdigits"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 3 sqrtm and the Inception weights' conversion: far past 600 s at load 18
def test_digits_smoke_local_end_to_end(torch_home: Path, data_dir: Path, tmp_path: Path) -> None:
    from ddpm.data import load_digits

    write_pngs(data_dir / "datasets" / "refdigits", load_digits(16).images[100:108])
    spec = preset(
        "digits-smoke",
        name="smoke e2e",
        variants=["baseline", "biggan"],
        train={"max_steps": 3},
        evaluation={
            "sampler": {"sampler": "dpmpp_2m", "steps": 2},
            "fid_n": [8],
            "grid_n": 8,
            "grid_nrow": 4,
            "fid_dataset": REFERENCE,
            "batch_size": 8,
        },
    )
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec.to_dict()))
    out = tmp_path / "out"
    assert main(["study", str(spec_path), "--local", "--device", "cpu", "--out", str(out)]) == 0

    # One run per member under DATA_DIR/runs, as the service writes them; one stored FID result each.
    runs = {record["run_id"]: record for record in list_runs(data_dir)}
    assert len(runs) == 2 and {r["arch"] for r in runs.values()} == {"baseline", "biggan"}
    assert all(r["status"] == "succeeded" and r["step"] == 3 for r in runs.values())
    assert len(list_results(data_dir)) == 2

    table = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert [row["member"] for row in table] == ["baseline@0", "biggan@0"]
    assert all(row["state"] == "done" and int(row["parameters"]) > 0 and row["steps"] == "3" for row in table)

    page = (out / "report.html").read_text()
    sources = re.findall(r"<img src='([^']*)'", page)
    assert len(sources) == 4  # two grids, the loss figure, FID against N
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)
    with zipfile.ZipFile(out / "report.zip") as archive:
        assert {"report.md", "loss.png", "fid_vs_n.png", "grids/biggan-seed0.png"} <= set(archive.namelist())

    # The study's FID is the evaluator's for the same checkpoint, sampler, seed and N; its grid is
    # `ddpm sample`'s pixels.
    row = table[1]
    checkpoint = final_checkpoint(RunDir.of(data_dir, row["run_id"]).path)
    assert checkpoint is not None
    evaluation = spec.evaluation
    again = evaluate_checkpoint(
        checkpoint,
        [8],
        evaluation.fid_seed,
        evaluation.sampler_spec(),
        dataset=REFERENCE,
        data_dir=data_dir,
        device="cpu",
        batch_size=8,
        metrics=evaluation.metric_options(),
    )
    assert float(row["fid_8"]) == again.fid[8]
    assert float(row["fid_low_8"]) == again.scores[8].fid_interval.low
    images, _ = sample_checkpoint(
        checkpoint, 8, evaluation.grid_seed, evaluation.sampler_spec(), device="cpu"
    )
    assert (out / "grids" / "biggan-seed0.png").read_bytes() == grid_png(images, 4)

    # Run again into the same folder: every member is done, nothing is trained or scored twice.
    assert main(["study", str(spec_path), "--local", "--device", "cpu", "--out", str(out)]) == 0
    # (the evaluator called above stores nothing: the table still holds the study's two results)
    assert len(list_runs(data_dir)) == 2 and len(list_results(data_dir)) == 2


def test_study_cli_refuses_bad_specs_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("preset: digits-smoke\ntrain:\n  image_size: 12\n")
    assert main(["study", str(path), "--local"]) == 2
    assert "train.image_size: 12 does not fit baseline" in capsys.readouterr().err
    path.write_text("name: x\nvariants: [baseline, nonet]\nevaluation: {fid_n: [4]}\n")
    assert main(["study", str(path), "--local"]) == 2
    assert "variants[1]: unknown arch 'nonet'" in capsys.readouterr().err
    assert main(["study", "--preset", "table2"]) == 2
    assert "unknown preset 'table2'" in capsys.readouterr().err
    assert main(["study", "--list-presets"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"report-table1", "digits-smoke"}
