"""scripts/gpu_bench.sh, the GPU benchmark in steps: every step's options are ones `ddpm bench` takes,
the most important figures come first, and each step says how long it takes and fits a 10-minute call.

The script itself ran end to end on CPU (`DEVICE=cpu QUICK=1 scripts/gpu_bench.sh`, docs/performance.md);
that takes minutes (torch.compile, DDPM-1000), so the suite checks the steps' arguments instead, runs
the device step (quick), and tests/ddpm/test_bench.py runs the bench itself.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddpm.bench.cli import register

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_bench.sh"
ORDER = [
    "device",
    "equality",
    "baseline",
    "bf16",
    "graphs",
    "layout-nchw",
    "layout-nhwc",
    "all-a",
    "all-b",
    "compile-a",
    "compile-b",
    "compile-train",
    "ratio",
]
CALL_LIMIT_S = 600  # what one call to a lent GPU machine may take


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    register(parser.add_subparsers(dest="command"))
    return parser


def _variables(quick: bool) -> dict[str, str]:
    """The script's own variable assignments for one branch (QUICK or full), e.g. ARCHS_A=..."""
    text = SCRIPT.read_text()
    branch = text.split('if [[ -n "${QUICK:-}" ]]; then', 1)[1].split("\nfi\n", 1)[0]
    body = branch.split("\nelse\n")[0 if quick else 1]
    found = dict(re.findall(r"\b([A-Z_]+)=([^\s(][^\s]*)", body))
    found["RATIO"] = re.search(r"RATIO=\(([^)]*)\)", body).group(1)
    return found


def _steps(quick: bool) -> list[tuple[str, int, list[str]]]:
    """(name, minutes, bench arguments) of every `step` line, with the branch's variables filled in."""
    values = _variables(quick)
    lines = SCRIPT.read_text().replace("\\\n", " ").splitlines()
    steps = []
    for line in lines:
        if not line.startswith("step "):
            continue
        text = line.replace('"${RATIO[@]}"', values["RATIO"])
        text = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), text)
        words = shlex.split(text)
        separator = words.index("--")
        steps.append((words[1], int(words[2]), words[separator + 1 :]))
    return steps


def test_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_steps_come_most_important_first_and_each_fits_a_call() -> None:
    listing = subprocess.run(["bash", str(SCRIPT), "--list"], capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert names == ORDER
    assert ["device"] + [name for name, _, _ in _steps(quick=False)] == ORDER
    for name, minutes, _ in _steps(quick=False):
        assert 1 <= minutes <= 8, name  # an estimate, with room under the 10-minute call
    timeout = re.search(r"STEP_TIMEOUT:-(\d+)", SCRIPT.read_text())
    assert timeout is not None and int(timeout.group(1)) < CALL_LIMIT_S


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_every_step_parses_as_ddpm_bench_options(quick: bool) -> None:
    parser = _parser()
    steps = _steps(quick)
    for name, _, words in steps:
        args = parser.parse_args(["bench", "--device", "cpu", "--width", "0.125", "--json", "x.json", *words])
        assert args.handler.__name__ == "cmd_bench", name
    by_name = {name: parser.parse_args(["bench", *words]) for name, _, words in steps}
    assert by_name["equality"].check_batch_invariance and not by_name["equality"].fast_only
    assert by_name["baseline"].archs == "baseline" and not by_name["baseline"].bf16
    assert by_name["bf16"].bf16 and by_name["graphs"].cuda_graphs
    assert (by_name["layout-nchw"].channels_last, by_name["layout-nhwc"].channels_last) == ("off", "on")
    assert by_name["compile-a"].compile and by_name["compile-a"].check_batch_invariance
    assert by_name["compile-a"].modes == "sample" and by_name["compile-train"].modes == "train"
    assert by_name["ratio"].sampler_ratio
    if not quick:  # the two halves are every variant, once
        import models

        halves = by_name["all-a"].archs.split(",") + by_name["all-b"].archs.split(",")
        assert sorted(halves) == sorted(a["name"] for a in models.list_archs())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure on a machine without CUDA")
def test_without_a_gpu_the_script_stops_at_the_device_step(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "DEVICE": "cuda"}
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "requested but CUDA is not available" in result.stdout + result.stderr
    assert "== equality" not in result.stdout  # nothing after it ran
