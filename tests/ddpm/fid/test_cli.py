"""`ddpm fid-weights` and `ddpm fid-reference` print the paths they made sure of."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddpm.cli import main
from ddpm.fid.reference import load_npz
from ddpm.fid.weights import weights_path
from tests.ddpm.fid.conftest import write_pngs


def test_fid_weights_prints_the_path(torch_home: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["fid-weights", "--no-download"]) == 0
    out, err = capsys.readouterr()
    assert Path(out.strip()) == weights_path() and "cached" in err


def test_fid_reference_computes_then_reuses(
    torch_home: Path, data_dir: Path, digits: torch.Tensor, capsys: pytest.CaptureFixture
) -> None:
    write_pngs(data_dir / "datasets" / "three", digits[:3])
    argv = ["fid-reference", "--dataset", "folder:three", "--device", "cpu", "--batch-size", "3"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    path = Path(out.strip())
    assert path.parent == data_dir / "fid" / "reference" and "computed" in err
    mu, sigma, extra = load_npz(path)
    assert extra["n"] == 3 and "folder:three" in extra["identity"] and sigma.shape == (2048, 2048)
    assert main(argv) == 0
    assert "cached" in capsys.readouterr().err


def test_fid_reference_rejects_a_bad_size(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["fid-reference", "--dataset", "digits", "--image-size", "0"]) == 2
    assert "image size" in capsys.readouterr().err
