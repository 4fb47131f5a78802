"""The classifier study of report section 3.3: classifiers for a data set, and what a checkpoint's samples are.

    >>> from ddpm.classifier import ClassifierConfig, train_classifier, analyse_checkpoint, save_analysis
    >>> train_classifier(ClassifierConfig("digits"), data_dir)            # classifiers/resnet-digits-32px
    >>> result = analyse_checkpoint(checkpoint, "resnet-digits-32px", n=1000, seed=0, data_dir=data_dir)
    >>> save_analysis(data_dir, result.to_record(), result.grid_png)     # analysis/results/<id>.json + .png

Modules by role: config (training recipe, torch-free), options (request validation, torch-free), store
(classifier folders, torch-free), results (stored analyses, torch-free), split (held-out split), model
(networks), checkpoint (file format), training, torchvision_import, inference, stats, grid, analysis,
cli. Importing this package does not import torch; the engine functions load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ddpm.classifier.config import ClassifierConfig
from ddpm.classifier.options import (
    check_analysis_options,
    check_classifier_for,
    check_classifier_for_run,
    check_real_analysis,
    compatible_classifiers,
)
from ddpm.classifier.results import compare_records, grid_path, list_analyses, read_analysis, save_analysis
from ddpm.classifier.store import list_classifiers, read_classifier

if TYPE_CHECKING:
    from ddpm.classifier.analysis import analyse_checkpoint, analyse_real
    from ddpm.classifier.torchvision_import import import_torchvision
    from ddpm.classifier.training import train_classifier

__all__ = [
    "ClassifierConfig",
    "analyse_checkpoint",
    "analyse_real",
    "check_analysis_options",
    "check_classifier_for",
    "check_classifier_for_run",
    "check_real_analysis",
    "compare_records",
    "compatible_classifiers",
    "grid_path",
    "import_torchvision",
    "list_analyses",
    "list_classifiers",
    "read_analysis",
    "read_classifier",
    "save_analysis",
    "train_classifier",
]

_LAZY = {
    "analyse_checkpoint": "ddpm.classifier.analysis",
    "analyse_real": "ddpm.classifier.analysis",
    "import_torchvision": "ddpm.classifier.torchvision_import",
    "train_classifier": "ddpm.classifier.training",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
