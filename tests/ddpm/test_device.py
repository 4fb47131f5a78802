"""The device story: `auto` says what it chose, a CUDA request that cannot be met fails loudly, saying
which NVIDIA driver was found and which this torch build needs."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddpm.device import (
    DeviceUnavailable,
    check_device_name,
    diagnose,
    nvidia_driver_version,
    probe,
    probe_in_subprocess,
    required_driver,
    resolve_device,
)
from ddpm.errors import InvalidOption

ROOT = Path(__file__).resolve().parents[2]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure on a machine without CUDA")


def test_a_driver_too_old_for_the_build_names_both_versions() -> None:
    message = diagnose("2.14.1+cu130", "13.0", "535.104.05", "12.2", None)
    assert "NVIDIA driver 535.104.05" in message and "supports CUDA up to 12.2" in message
    assert "needs NVIDIA driver >= 580.65.06" in message and "too old" in message
    assert "TORCH_CUDA=cu126" in message  # the way out without a new driver
    # Within a CUDA major version, an older driver still runs the build (minor version compatibility).
    assert "too old" not in diagnose("2.14.1+cu126", "12.6", "535.104.05", "12.2", None)
    assert "needs NVIDIA driver >= 525.60.13" in diagnose("2.14.1+cu126", "12.6", "470.82.01", None, None)


def test_other_reasons_cuda_is_missing() -> None:
    assert "has no CUDA support" in diagnose("2.14.1+cpu", None, "580.65.06", "13.0", None)
    none = diagnose("2.14.1+cu130", "13.0", None, None, None)
    assert "no NVIDIA driver found" in none and ">= 580.65.06" in none and "Container Toolkit" in none
    assert "hides every GPU" in diagnose("2.14.1+cu130", "13.0", "580.65.06", "13.0", "")
    assert required_driver("12.6") == "525.60.13" and required_driver(None) is None


def test_the_driver_version_is_read_from_the_kernel_module(tmp_path: Path) -> None:
    version = tmp_path / "version"
    version.write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    assert nvidia_driver_version(version) == "535.104.05"
    version.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build\n")
    assert nvidia_driver_version(version) == "580.65.06"
    assert nvidia_driver_version(tmp_path / "absent") is None


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cuda:", "mps", "CPU", ""])
def test_bad_device_names_are_refused_with_the_valid_ones(bad: str) -> None:
    with pytest.raises(InvalidOption, match="use auto, cpu or cuda"):
        check_device_name(bad)
    with pytest.raises(InvalidOption, match="use auto, cpu or cuda"):
        resolve_device(bad)


@no_cuda
def test_auto_logs_the_cpu_and_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ddpm"):
        assert resolve_device("auto") == torch.device("cpu")
    assert "device auto: using the CPU, since CUDA is not available" in caplog.text
    assert "needs NVIDIA driver >=" in caplog.text or "no CUDA support" in caplog.text
    report = probe("auto")
    assert report.device == "cpu" and report.note  # the reason travels with the report


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_requested_without_cuda_fails_loudly(device: str) -> None:
    with pytest.raises(DeviceUnavailable, match=f"device '{device}' requested but CUDA is not available"):
        resolve_device(device)


@no_cuda
def test_the_device_check_in_a_child_process() -> None:
    """The worker's check: the child's message comes back as the error; `cpu` comes back as a report."""
    with pytest.raises(DeviceUnavailable, match="requested but CUDA is not available: .*driver"):
        probe_in_subprocess("cuda")
    assert probe_in_subprocess("cpu").device == "cpu"
    result = subprocess.run(
        [sys.executable, "-m", "ddpm.device", "cuda"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2 and result.stderr.startswith("error: device 'cuda' requested")
