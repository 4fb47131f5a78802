"""Whether a sampling job runs its network compiled (torch.compile), decided from the job's size; torch-free.

Compiling costs a fixed time up front and then makes every network call faster, so it pays only for
jobs with enough calls. The decision compares the time compiling would save, estimated from the job's
work (images x network calls x the network's GFLOP per call, counted by torch's flop counter) at the
device's assumed rate, with what compiling costs:

    eager seconds  = work / (ASSUMED_GFLOPS[device] x EAGER_FRACTION)
    saved seconds  = eager seconds x (1 - EAGER_FRACTION / COMPILED_FRACTION)
    compile when saved seconds >= COMPILE_COST_S[device]

It is a pure function of the request (its size, the network, the device type and DDPM_COMPILE), never of
timing or of what a host compiled before, so the same request on the same kind of machine takes the same
path and gives the same bytes. A compiled network's images are independent of their batch and of their
position in it, as eager ones are (tests/ddpm/test_compile_policy.py checks it on a tiny network), but
they are not bit-identical to the eager path's (a last-bit difference in eps, about 3e-6 at most, that
can flip a pixel): the job records which path it took (`CompileDecision.to_dict`).

Constants, and where they come from (docs/performance.md, "torch.compile"):
- EAGER_FRACTION, COMPILED_FRACTION: the baseline's sampling at batch 80 on this project's 2-core CPU ran
  at 0.75 of the matmul yardstick eager and 0.87 compiled (`ddpm bench --compile`); convnext went 0.49 ->
  0.65, so the baseline's 16% is the cautious figure. The same ratio is assumed on CUDA (not measured).
- ASSUMED_GFLOPS: "cpu" is that machine's quiet yardstick (203 GFLOP/s); "cuda" is the bench's assumed
  H200 rate (ddpm/bench/report.py GPU_ASSUMED_TFLOPS, 150 TFLOP/s). A faster CPU host overestimates
  eager time here, and compiles a little sooner than it should.
- COMPILE_COST_S: the baseline compiled in about 40 s on a quiet machine and 74 s on a contended one;
  60 s sits between. A warm compile cache (TORCHINDUCTOR_CACHE_DIR on the data volume: a tiny network
  took 136 s cold and 8 s warm on a busy machine) makes a host's later compiles of the same shape
  cheap, but the policy does not count on it: a choice that depended on the cache's state would give
  one request different bytes on different days.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ddpm.errors import InvalidOption

COMPILE_ENV = "DDPM_COMPILE"
CompileSetting = Literal["auto", "on", "off"]
SETTINGS: tuple[CompileSetting, ...] = ("auto", "on", "off")
LEGACY_VALUES: dict[str, CompileSetting] = {"1": "on", "0": "off", "": "auto"}  # DDPM_COMPILE=1 before auto

EAGER_FRACTION = 0.75
COMPILED_FRACTION = 0.87
SAVED_FRACTION = 1 - EAGER_FRACTION / COMPILED_FRACTION  # 0.138 of the eager time
ASSUMED_GFLOPS = {"cpu": 203.0, "cuda": 150_000.0}
COMPILE_COST_S = {"cpu": 60.0, "cuda": 60.0}
COMPILE_CACHE = ("cache", "compile")  # under DATA_DIR: the inductor cache, kept across jobs and restarts


def parse_setting(value: str) -> CompileSetting:
    """auto, on or off (1 and 0, the older spellings, mean on and off); InvalidOption names the valid ones."""
    text = value.strip().lower()
    if text in LEGACY_VALUES:
        return LEGACY_VALUES[text]
    if text in SETTINGS:
        return text  # type: ignore[return-value]
    raise InvalidOption(f"{COMPILE_ENV} must be one of {', '.join(SETTINGS)}, got {value!r}")


def compile_setting() -> CompileSetting:
    """This process's DDPM_COMPILE (default auto)."""
    return parse_setting(os.environ.get(COMPILE_ENV, "auto"))


def compile_cache_dir(data_dir: Path) -> Path:
    return data_dir.joinpath(*COMPILE_CACHE)


@dataclass(frozen=True)
class CompileDecision:
    """Whether a job's network is compiled, and why (recorded in the job's result)."""

    compiled: bool
    setting: CompileSetting
    reason: str
    image_calls: int | None = None  # images x network calls per image
    eager_s: float | None = None  # estimated sampling time without compiling
    saved_s: float | None = None  # estimated time compiling saves, before its own cost
    compile_cost_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        for key in ("eager_s", "saved_s"):
            if record[key] is not None:
                record[key] = round(record[key], 1)
        return record


def decide_compile(
    images: int,
    network_calls: int,
    gflop_per_call: float | None,
    device_type: str,
    setting: CompileSetting | None = None,
) -> CompileDecision:
    """The decision for a job of `images` x `network_calls` calls of a network of `gflop_per_call`."""
    setting = compile_setting() if setting is None else setting
    calls = images * network_calls
    if setting != "auto":
        return CompileDecision(setting == "on", setting, f"{COMPILE_ENV}={setting}", calls)
    if device_type not in ASSUMED_GFLOPS:
        return CompileDecision(False, setting, f"no compile figures for {device_type!r} devices", calls)
    if not gflop_per_call:
        return CompileDecision(False, setting, "the network's work per call is unknown", calls)
    eager_s = calls * gflop_per_call / (ASSUMED_GFLOPS[device_type] * EAGER_FRACTION)
    saved_s, cost_s = eager_s * SAVED_FRACTION, COMPILE_COST_S[device_type]
    compiled = saved_s >= cost_s
    reason = (
        f"{calls:,} image-calls: about {eager_s:,.0f} s eager, compiling saves about {saved_s:,.0f} s "
        f"{'>=' if compiled else '<'} its {cost_s:.0f} s cost"
    )
    return CompileDecision(compiled, setting, reason, calls, eager_s, saved_s, cost_s)
