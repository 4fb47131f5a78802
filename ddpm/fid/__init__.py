"""FID as pytorch-fid computes it, offline: weights, reference statistics, evaluator, results.

    >>> from ddpm.fid import evaluate_checkpoint
    >>> result = evaluate_checkpoint(Path("step-00001000.safetensors"), [2048, 4096], seed=0)
    >>> result.fid   # {2048: ..., 4096: ...} from one sample set of 4096 images

Importing this package does not import torch (the API imports `ddpm.fid.results`); the evaluator is
loaded on first use of `evaluate_checkpoint`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ddpm.fid.errors import FidUnavailable
from ddpm.fid.results import FidResult, list_results, save_result

if TYPE_CHECKING:
    from ddpm.fid.evaluate import evaluate_checkpoint

__all__ = ["FidResult", "FidUnavailable", "evaluate_checkpoint", "list_results", "save_result"]


def __getattr__(name: str) -> Any:
    if name == "evaluate_checkpoint":
        from ddpm.fid.evaluate import evaluate_checkpoint

        return evaluate_checkpoint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
