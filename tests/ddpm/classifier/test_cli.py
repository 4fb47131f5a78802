"""The commands: classifier train|list|import, analyse (samples and --real), analyses, and clean errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ddpm.classifier.results import grid_path
from ddpm.cli import main
from tests.ddpm.classifier.conftest import CLASSIFIER, RUN


def _run(capsys: pytest.CaptureFixture[str], root: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(root), *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def root(study_root: Path, tmp_path: Path) -> Path:
    """A copy of the session's study, so stored analyses here stay out of other tests' listings."""
    copy = tmp_path / "data"
    for part in ("classifiers", "runs"):
        shutil.copytree(study_root / part, copy / part)
    return copy


def test_train_list_resume(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = (
        "classifier",
        "train",
        "--dataset",
        "digits",
        "--image-size",
        "8",
        "--width",
        "4",
        "--blocks",
        "1",
    )
    code, out, err = _run(capsys, root, *argv, "--batch-size", "64", "--epochs", "1", "--name", "cli")
    assert code == 0, err
    assert out.startswith("classifier cli: held-out accuracy ") and "(95% CI " in out and "359 images" in out
    assert "step/s" in err or "s/step" in err, "a progress bar on stderr"
    code, _, err = _run(capsys, root, *argv, "--name", "cli")
    assert code == 2 and "classifier 'cli' already exists; pass --resume cli to continue it" in err
    code, out, err = _run(capsys, root, "classifier", "train", "--resume", "cli", "--epochs", "2")
    assert code == 0, err
    assert "after 2 epochs" in out
    code, out, _ = _run(capsys, root, "classifier", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "arch", "dataset", "size", "held-out", "acc", "held-out", "status"]
    assert any(line.startswith("cli ") and "digits" in line and "succeeded" in line for line in lines)
    code, out, _ = _run(capsys, root, "classifier", "list", "--json")
    assert {r["name"] for r in json.loads(out)} == {"cli", CLASSIFIER}


def test_analyse_samples_and_real_then_compare(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_png = tmp_path / "grid.png"
    sampling = ("--n", "12", "--sampler", "ddim", "--steps", "2", "--device", "cpu")
    code, out, err = _run(
        capsys,
        root,
        "analyse",
        "--run",
        RUN,
        "--step",
        "2",
        "--classifier",
        CLASSIFIER,
        *sampling,
        "--out",
        str(out_png),
    )
    assert code == 0, err
    assert out.startswith("baseline step 2 (epoch ") and "12 samples, seed 0, ddim 2 steps" in out
    assert "class  count  share (95% CI)" in out and "total variation from the data set" in out
    samples_id = out.strip().splitlines()[-1].split()[3]
    assert out_png.read_bytes() == grid_path(root, samples_id).read_bytes()
    assert "sampling" in err and "classifying" in err

    code, out, err = _run(
        capsys, root, "analyse", "--real", "--classifier", CLASSIFIER, "--n", "50", "--json"
    )
    assert code == 0, err
    record = json.loads(out)
    assert record["kind"] == "real" and record["n"] == 50 and sum(record["counts"]) == 50

    code, out, _ = _run(capsys, root, "analyses")
    assert code == 0 and samples_id in out and record["id"] in out
    code, out, _ = _run(capsys, root, "analyses", "--compare", samples_id, record["id"])
    assert code == 0 and f"{samples_id} vs {record['id']}: total variation " in out and "p = " in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["analyse", "--run", RUN, "--step", "7"],
            "run 'tiny-ddpm' has no kept checkpoint at step 7; kept steps: [1, 2]",  # a cut 2-step run keeps both
        ),
        (["analyse", "--arch", "biggan", "--step", "2"], "--step needs --run: a step is per run"),
        (["analyse", "--real"], "--real needs --classifier"),
        (["analyse", "--run", RUN, "--n", "5"], "n must be an integer in [10, 50000], got 5"),
        (["analyse", "--run", RUN, "--threshold", "1.5"], "threshold must be a probability in (0, 1)"),
        (["analyse", "--run", RUN, "--classifier", "nope"], f"no classifier 'nope'; valid: {CLASSIFIER}"),
        (
            ["analyse", "--real", "--classifier", CLASSIFIER, "--n", "400"],
            "n must be an integer in [10, 359]",
        ),
        (["classifier", "train"], "--dataset is required"),
        (["classifier", "train", "--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["classifier", "train", "--resume", "nope"], "no classifier 'nope'"),
        (
            ["classifier", "import", "--arch", "resnet18", "--weights", "missing.pth", "--dataset", "digits"],
            "does not exist",
        ),
        (["analyses", "--compare", "x", "y"], "invalid analysis id 'x'"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    root: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = _run(capsys, root, *argv)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
