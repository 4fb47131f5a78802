"""Shared fixtures: one tiny classifier and one tiny diffusion run on digits at their native 8x8, trained
once per session by the engines themselves (a few seconds of CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddpm.classifier.config import ClassifierConfig
from ddpm.runs import RunDir

CLASSIFIER = "tiny-digits-8px"
RUN = "tiny-ddpm"
IMAGE_SIZE = 8  # digits' own resolution: the smallest images the engines take, the fastest tests
# Enough to learn digits at 8px well above chance (about 0.94 held-out accuracy) in 4 short epochs.
TINY_CLASSIFIER = ClassifierConfig(
    "digits", image_size=IMAGE_SIZE, epochs=4, batch_size=64, lr=5e-3, width=8, blocks=1, crop_padding=1
)


@pytest.fixture(scope="session")
def study_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DATA_DIR holding a trained tiny classifier and a 2-step diffusion run, both on digits at 8px."""
    from ddpm.classifier.training import train_classifier
    from ddpm.training import TrainConfig, train

    root = tmp_path_factory.mktemp("study")
    train_classifier(TINY_CLASSIFIER, root, name=CLASSIFIER, device="cpu")
    config = TrainConfig(
        arch="baseline", dataset="digits", width=0.125, image_size=IMAGE_SIZE, batch_size=16, max_steps=2
    )
    train(config, root, run_id=RUN, device="cpu")
    return root


@pytest.fixture(scope="session")
def run_checkpoint(study_root: Path) -> Path:
    return RunDir.of(study_root, RUN).kept_checkpoints()[-1][1]
