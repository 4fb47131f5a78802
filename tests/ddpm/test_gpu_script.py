"""scripts/gpu_bench.sh, the one-go GPU benchmark: every step's options are ones `ddpm bench` takes.

The script itself ran end to end on CPU (`DEVICE=cpu QUICK=1 scripts/gpu_bench.sh`, docs/performance.md);
that takes minutes (torch.compile, DDPM-1000), so the suite checks the steps' arguments instead, and
tests/ddpm/test_bench.py runs the bench itself.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
from pathlib import Path

from ddpm.bench.cli import register

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_bench.sh"
QUICK = {"ARCHS": "pure_unet,convnext", "BIG": "8", "COMPILED": "pure_unet", "COMPILE_BATCHES": "4"}
RATIO = ["--ratio-width", "0.125", "--ratio-batch", "2"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    register(parser.add_subparsers(dest="command"))
    return parser


def test_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_every_step_parses_as_ddpm_bench_options() -> None:
    steps = [line for line in SCRIPT.read_text().splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["fp32", "bf16", "compile", "ratio"]
    parser = _parser()
    for line in steps:
        text = re.sub(r"\$\{?(\w+)\}?", lambda m: QUICK.get(m.group(1), m.group(0)), line)
        words = shlex.split(text.replace('"${RATIO[@]}"', " ".join(RATIO)))[2:]
        args = parser.parse_args(["bench", "--device", "cpu", "--width", "0.125", "--json", "x.json", *words])
        assert args.handler.__name__ == "cmd_bench"
    ratio = parser.parse_args(
        ["bench", *shlex.split(steps[-1].split(" ", 2)[2].replace('"${RATIO[@]}"', ""))]
    )
    assert ratio.sampler_ratio and ratio.bf16 and ratio.cuda_graphs
