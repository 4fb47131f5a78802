"""Which torch device a job runs on, and, when CUDA is asked for and cannot be had, why.

`resolve_device` is what the engine calls: `auto` takes CUDA when torch can use it, else the CPU, and logs
which it chose and why; `cpu` or `cuda[:N]` is used as asked or refused with a `DeviceUnavailable`
naming what was found (the NVIDIA driver's version, or none) and what this torch build needs.

`probe_in_subprocess` answers the same question in a child process. A Celery worker's parent process
forks the processes that run jobs, and a process that has initialised CUDA cannot hand it to a forked
child (`torch.cuda.is_available()` itself calls cuInit), so the worker asks a child instead
(workers/app.py). The module imports torch only inside the functions that need it, so the worker's
health probe (workers/health.py) can use the driver checks without loading torch.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddpm.errors import InvalidOption

if TYPE_CHECKING:
    import torch

log = logging.getLogger("ddpm")

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
# The oldest Linux driver that runs each CUDA major version's toolkit (NVIDIA's "minor version
# compatibility": any 12.x build runs on >= 525.60.13, any 13.x build on >= 580.65.06).
MINIMUM_DRIVER = {12: "525.60.13", 13: "580.65.06"}
DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")
# Device nodes the NVIDIA Container Toolkit creates in a container for each GPU it was given.
GPU_DEVICE_NODES = "/dev/nvidia[0-9]*"
PROBE_TIMEOUT_S = 180.0  # importing torch and creating a CUDA context, on a cold, busy host


class DeviceUnavailable(InvalidOption):
    """The device asked for cannot be used here; the message says what was found and what is needed."""


@dataclass(frozen=True)
class DeviceReport:
    """What a process resolved a device request to (the worker's heartbeat carries it)."""

    requested: str  # as configured: auto, cpu, cuda, cuda:1
    device: str  # what jobs run on: cpu, cuda:0
    name: str  # the GPU's name, or "cpu"
    torch: str  # torch's version, e.g. 2.14.1+cu126
    torch_cuda: str | None  # the CUDA version torch was built with (None: a CPU-only build)
    driver: str | None  # the NVIDIA driver's version when one is installed
    note: str = ""  # why `auto` chose the CPU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_device_name(device: str) -> str:
    """The device string, if it is one of auto, cpu, cuda, cuda:N (checked without importing torch)."""
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise InvalidOption(f"device {device!r} is not valid; use auto, cpu or cuda[:N]")
    return device


def wants_cuda(device: str) -> bool:
    return device == "cuda" or device.startswith("cuda:")


def nvidia_driver_version(version_file: Path = DRIVER_VERSION_FILE) -> str | None:
    """The kernel module's version ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05 ..."),
    readable without initialising CUDA; None when no NVIDIA driver is loaded (or visible here)."""
    try:
        text = version_file.read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else None


def driver_cuda_version(library: str = "libcuda.so.1") -> str | None:
    """The newest CUDA version the installed driver supports ("12.2"), from the driver library's
    cuDriverGetVersion, which may be called before cuInit; None when there is no driver library."""
    try:
        libcuda = ctypes.CDLL(library)
    except OSError:
        return None
    version = ctypes.c_int(0)
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def gpu_device_nodes(pattern: str = GPU_DEVICE_NODES) -> list[str]:
    """The GPU device files this process can see (none in a container started without a GPU)."""
    from glob import glob

    return sorted(glob(pattern))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def required_driver(torch_cuda: str | None) -> str | None:
    """The oldest driver that runs a torch built with CUDA `torch_cuda` (None when unknown)."""
    if not torch_cuda:
        return None
    return MINIMUM_DRIVER.get(_version(torch_cuda)[0])


def diagnose(
    torch_version: str,
    torch_cuda: str | None,
    driver: str | None,
    driver_cuda: str | None,
    visible_devices: str | None,
) -> str:
    """Why torch cannot use CUDA here, from what was found: the build, the driver, the visible GPUs."""
    build = f"torch {torch_version}" + (f", built for CUDA {torch_cuda}" if torch_cuda else "")
    if not torch_cuda:
        return f"this torch build has no CUDA support ({build}); install a CUDA build of torch"
    needed = required_driver(torch_cuda)
    needs = f"this build ({build}) needs NVIDIA driver >= {needed}" if needed else f"this build is {build}"
    older_build = "or use an image built for an older CUDA (docker build --build-arg TORCH_CUDA=cu126)"
    if driver is None and driver_cuda is None:
        return (
            f"no NVIDIA driver found (no {DRIVER_VERSION_FILE}, no libcuda); {needs}. In Docker, the host "
            f"needs the NVIDIA Container Toolkit and the service a GPU reservation"
        )
    found = f"NVIDIA driver {driver or 'of unknown version'}" + (
        f" (supports CUDA up to {driver_cuda})" if driver_cuda else ""
    )
    too_old = (driver is not None and needed is not None and _version(driver) < _version(needed)) or (
        driver_cuda is not None and _version(driver_cuda)[0] < _version(torch_cuda)[0]
    )
    if too_old:
        return f"{found} is too old: {needs}; upgrade the driver {older_build}"
    if visible_devices is not None and visible_devices.strip() in ("", "-1", "none", "void"):
        return f"{found}, but CUDA_VISIBLE_DEVICES={visible_devices!r} hides every GPU"
    return f"{found}, but torch sees no usable GPU; {needs}"


def cuda_diagnosis() -> str:
    """`diagnose` for this process."""
    import torch

    return diagnose(
        torch.__version__,
        torch.version.cuda,
        nvidia_driver_version(),
        driver_cuda_version(),
        os.environ.get("CUDA_VISIBLE_DEVICES"),
    )


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` is CUDA when torch can use it, else the CPU (logged, with the reason); `cpu` and
    `cuda[:N]` are used as asked, or refused with what was found and what is needed."""
    import torch

    check_device_name(device)
    if device == "auto":
        if torch.cuda.is_available():
            chosen = torch.device("cuda", torch.cuda.current_device())
            log.info("device auto: using %s (%s)", chosen, torch.cuda.get_device_name(chosen))
            return chosen
        log.info("device auto: using the CPU, since CUDA is not available: %s", cuda_diagnosis())
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"device {device!r} requested but CUDA is not available: {cuda_diagnosis()}"
            )
        count = torch.cuda.device_count()
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        if index >= count:
            raise DeviceUnavailable(
                f"device {device!r} requested but this process sees {count} GPU(s) (cuda:0 to "
                f"cuda:{count - 1}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
            )
        resolved = torch.device("cuda", index)
    return resolved


def probe(requested: str = "auto") -> DeviceReport:
    """Resolve `requested` and put a tensor on the device (the first CUDA call is where a driver
    that is too old or a GPU in a bad state shows itself)."""
    import torch

    device = resolve_device(requested)
    note = "" if device.type == "cuda" or requested != "auto" else cuda_diagnosis()
    name = "cpu"
    if device.type == "cuda":
        try:
            torch.ones(1, device=device).add_(1).item()
        except RuntimeError as err:
            raise DeviceUnavailable(f"device {requested!r} ({device}) cannot run: {err}") from err
        name = torch.cuda.get_device_name(device)
    return DeviceReport(
        requested, str(device), name, torch.__version__, torch.version.cuda, nvidia_driver_version(), note
    )


def cpu_report(requested: str = "cpu") -> DeviceReport:
    """The report for `cpu` without importing torch (a CPU needs no probe)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "unknown"
    return DeviceReport(requested, "cpu", "cpu", torch_version, None, nvidia_driver_version())


def probe_in_subprocess(requested: str, timeout_s: float = PROBE_TIMEOUT_S) -> DeviceReport:
    """`probe` run by `python -m ddpm.device --json` in a child process, so this process never
    initialises CUDA. Raises DeviceUnavailable with the child's message when the device cannot be had."""
    check_device_name(requested)
    command = [sys.executable, "-m", "ddpm.device", "--json", requested]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise DeviceUnavailable(
            f"device {requested!r}: the device check did not finish in {timeout_s:.0f} s"
        ) from err
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1].removeprefix("error: ") if lines else f"exit code {result.returncode}"
        raise DeviceUnavailable(reason)
    return DeviceReport(**json.loads(result.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    """`python -m ddpm.device [--json] [DEVICE]`: what DEVICE resolves to here, or why it cannot be had
    (exit 2)."""
    parser = argparse.ArgumentParser(prog="python -m ddpm.device", description=main.__doc__)
    parser.add_argument("device", nargs="?", default="auto", help="auto (default), cpu or cuda[:N]")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        report = probe(args.device)
    except InvalidOption as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        for key, value in report.to_dict().items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
