"""`ddpm bench`: the speed table of docs/performance.md (see ddpm/bench/measure.py for the method)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ddpm.fastpath import FastPath


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="throughput per variant as a fraction of this machine's matmul rate, fast path vs eager",
    )
    bench.add_argument("--archs", default="all", help="comma-separated variants (default: all)")
    bench.add_argument("--batches", default="1,80", help="comma-separated batch sizes (default 1,80)")
    bench.add_argument("--modes", default="sample,train", help="sample, train or both (default both)")
    bench.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0 = report sizes)")
    bench.add_argument("--image-size", type=int, default=32, help="image side of the benchmarked networks")
    bench.add_argument("--pairs", type=int, default=3, help="timed (matmul, call) pairs per figure")
    bench.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    bench.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    bench.add_argument(
        "--channels-last",
        choices=["auto", "on", "off"],
        default="auto",
        help="NHWC layout on the fast paths (auto: what sampling and training use on this device)",
    )
    bench.add_argument("--compile", action="store_true", help="torch.compile the fast path (time reported)")
    bench.add_argument("--bf16", action="store_true", help="bf16 autocast on the fast path (CUDA only)")
    bench.add_argument("--cuda-graphs", action="store_true", help="CUDA graphs for sampling calls (CUDA)")
    bench.add_argument(
        "--tf32",
        choices=["on", "off"],
        default="on",
        help="TF32 convolutions and matmuls on the fast paths (CUDA; on is the engine's default). The "
        "equality check against eager always runs with TF32 off",
    )
    bench.add_argument("--fast-only", action="store_true", help="skip the eager reference rows")
    bench.add_argument("--estimates", action="store_true", help="print hours for the report's workloads")
    bench.add_argument(
        "--fid-samplers",
        help="also print the hours of a 4096-sample FID per arch for these samplers, name[:steps] "
        "comma-separated (e.g. ddpm,ddim:50,dpmpp_2m:20,heun:18); needs --modes sample",
    )
    bench.add_argument(
        "--features-per-s",
        type=float,
        help="Inception images/s on this machine, to add features to --fid-samplers",
    )
    bench.add_argument(
        "--gpu-tflops",
        type=float,
        help="sustained TFLOP/s assumed for the GPU column of --fid-samplers (default: ddpm/bench/report.py's)",
    )
    bench.add_argument(
        "--sampler-ratio",
        action="store_true",
        help="also time DDIM-50 against DDPM-1000 end to end (at --ratio-width, batch --ratio-batch)",
    )
    bench.add_argument(
        "--ratio-width", type=float, default=0.25, help="width multiplier of the ratio experiment's networks"
    )
    bench.add_argument("--ratio-batch", type=int, default=16, help="batch size of the ratio experiment")
    bench.add_argument(
        "--check-batch-invariance",
        action="store_true",
        help="check each arch's images are the same bits in a batch of 8 as in a batch of 80",
    )
    fid = bench.add_argument_group("FID job (--fid: this instead of the variant table)")
    fid.add_argument(
        "--fid",
        action="store_true",
        help="Inception standalone (eager and fast path) and each phase of an FID job, as images/s and "
        "fractions of the rate (ddpm/bench/fid_phases.py)",
    )
    fid.add_argument("--fid-n", type=int, default=64, help="images generated and reference images (64)")
    fid.add_argument("--fid-sampler", default="ddim:50", help="name[:steps] (default ddim:50)")
    fid.add_argument("--fid-dataset", default="digits", help="the reference images' data set (digits)")
    fid.add_argument("--fid-batch", type=int, default=50, help="batch of sampling and Inception (50)")
    fid.add_argument(
        "--fid-inception",
        choices=["fast", "eager"],
        default="fast",
        help="the network of the job's feature phases: the FID fast path (what jobs run) or pytorch-fid's "
        "module as it is (the figures before the fast path)",
    )
    fid.add_argument(
        "--fid-checkpoint",
        type=Path,
        help="a checkpoint to sample (default: an untrained one of the first --archs at --width)",
    )
    bench.add_argument("--json", type=Path, help="also write the rows here")
    bench.set_defaults(handler=cmd_bench)


def _ints(text: str, name: str) -> list[int]:
    from ddpm.errors import InvalidOption

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise InvalidOption(f"--{name} takes comma-separated integers, got {text!r}") from err
    if not values or any(v < 1 for v in values):
        raise InvalidOption(f"--{name} needs positive integers, got {text!r}")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    import models
    from ddpm.bench import measure, report
    from ddpm.bench.sampler_ratio import format_sampler_ratio, sampler_ratio
    from ddpm.device import resolve_device
    from ddpm.errors import InvalidOption
    from ddpm.fastpath import sampling_path, training_path
    from ddpm.sampler_cli import parse_sampler_list

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.fid:
        return _bench_fid(args, device)
    names = [a["name"] for a in models.list_archs()]
    archs = names if args.archs == "all" else [models.resolve_arch(a) for a in args.archs.split(",")]
    modes = [m.strip() for m in args.modes.split(",")]
    if not set(modes) <= {"sample", "train"}:
        raise InvalidOption(f"--modes takes sample and/or train, got {args.modes!r}")
    batches = _ints(args.batches, "batches")
    fid_specs = parse_sampler_list(args.fid_samplers) if args.fid_samplers else []
    cuda = device.type == "cuda"
    if not cuda and (args.bf16 or args.cuda_graphs):
        print("note: --bf16 and --cuda-graphs apply on CUDA only; this run keeps fp32 eager calls")
    layout = {"auto": None, "on": True, "off": False}[args.channels_last]
    # The engine's own paths for this device (fixed batch, TF32, layout), with the options asked for.
    fast: dict[str, FastPath] = {}
    for mode, default in (
        ("sample", sampling_path(device, compile=args.compile)),
        ("train", training_path(device)),
    ):
        fast[mode] = replace(
            default,
            channels_last=default.channels_last if layout is None else layout,
            bf16=args.bf16 and cuda,
            compile=args.compile,
            cuda_graphs=(args.cuda_graphs or default.cuda_graphs) and cuda and mode == "sample",
            tf32=cuda and args.tf32 == "on",
        )
    yardstick = measure.MatmulYardstick(device)
    print(
        f"device {device}, {torch.get_num_threads()} threads, yardstick {yardstick.size}^2 "
        f"{str(yardstick.dtype).removeprefix('torch.')} product by {yardstick.kernel_name} ("
        + ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in yardstick.rates.items())
        + f"), fast paths: sample {fast['sample'].describe()}, train {fast['train'].describe()}",
        flush=True,
    )
    rows = []
    failures = []
    for arch in archs:
        started = time.perf_counter()
        arch_rows = measure.bench_arch(
            arch,
            batches,
            modes,
            fast,
            device,
            yardstick,
            pairs=args.pairs,
            width=args.width,
            image_size=args.image_size,
            compare_eager=not args.fast_only,
        )
        rows.extend(arch_rows)
        print(report.format_table(arch_rows).split("\n", 2)[2], f"  ({time.perf_counter() - started:.0f} s)")
        for row in arch_rows:
            if row.max_rel_error is not None and row.max_rel_error > _tolerance(fast[row.mode]):
                failures.append(
                    f"{row.arch} {row.mode} batch {row.batch}: rel. error {row.max_rel_error:.1e}"
                )
        if args.check_batch_invariance and "sample" in modes:
            invariant = measure.batch_invariant(arch, fast["sample"], device, args.width, args.image_size)
            print(f"  {arch}: batch 8 rows {'equal' if invariant else 'DIFFER FROM'} batch 80 rows")
            if not invariant:
                failures.append(f"{arch}: images depend on the batch they are computed in")
    print()
    print(report.format_table(rows))
    print()
    print("fraction of the yardstick rate, eager -> fast path:")
    print(report.format_summary(rows))
    if args.estimates:
        print()
        print(report.format_estimates(rows))
    fid_costs = None
    if fid_specs:
        fid_costs = report.fid_cost_estimates(
            rows,
            fid_specs,
            features_per_s=args.features_per_s,
            gpu_tflops=args.gpu_tflops or report.GPU_ASSUMED_TFLOPS,
        )
        print()
        print(report.format_fid_costs(fid_costs, str(device)))
        print()
        print(report.format_fid_cost_matrix(fid_costs, str(device)))
    ratio = (
        sampler_ratio(device, fast["sample"], args.ratio_width, args.ratio_batch)
        if args.sampler_ratio
        else None
    )
    if ratio is not None:
        print()
        print(format_sampler_ratio(ratio))
    compiled = _compilations() if args.compile else None
    if compiled is not None:
        print()
        print(f"torch.compile: {compiled} graphs compiled in this run (one per variant and mode expected)")
    if args.json:
        payload = {
            "device": str(device),
            "fast_paths": {mode: path.describe() for mode, path in fast.items()},
            "rows": [r.as_dict() for r in rows],
            "compiled_graphs": compiled,
        }
        if ratio is not None:
            payload["sampler_ratio"] = ratio
        if fid_costs is not None:
            payload["fid_costs"] = fid_costs
        args.json.write_text(json.dumps(payload, indent=2))
    if failures:
        print("fast path differs from eager beyond tolerance:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m ddpm.bench.cli ...`: the bench alone, for machines with torch but not the service's
    dependencies (the GPU script uses it)."""
    from ddpm.errors import DdpmError
    from models.config import ConfigError

    parser = argparse.ArgumentParser(prog="python -m ddpm.bench.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.handler(args))
    except (DdpmError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _bench_fid(args: argparse.Namespace, device: torch.device) -> int:
    import torch

    import models
    from ddpm.bench import measure
    from ddpm.bench.fid_phases import format_job, run_fid_bench
    from ddpm.errors import InvalidOption
    from ddpm.sampler_cli import parse_sampler_list
    from ddpm.settings import data_dir

    if args.fid_n < 2 or args.fid_batch < 1:
        raise InvalidOption(
            f"--fid-n needs at least 2 images and --fid-batch 1, got {args.fid_n}, {args.fid_batch}"
        )
    (spec,) = parse_sampler_list(args.fid_sampler)[:1]
    arch = models.resolve_arch("baseline" if args.archs == "all" else args.archs.split(",")[0])
    yardstick = measure.MatmulYardstick(device)
    print(
        f"device {device}, {torch.get_num_threads()} threads, yardstick {yardstick.kernel_name}", flush=True
    )
    result = run_fid_bench(
        device,
        yardstick,
        args.fid_checkpoint,
        arch,
        args.width,
        args.image_size,
        args.fid_n,
        spec,
        args.fid_dataset,
        data_dir(),
        args.fid_batch,
        args.pairs,
        fast_inception=args.fid_inception == "fast",
    )
    print(format_job(result["job"]))
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), **result}, indent=2))
    error = result["inception"][-1]["max_rel_error"]
    if error is not None and error > FID_FEATURE_TOLERANCE:
        print(f"fast Inception differs from pytorch-fid's by {error:.1e} (> 1e-5)", file=sys.stderr)
        return 1
    return 0


FID_FEATURE_TOLERANCE = 1e-5  # relative, per feature row (docs/fid.md)


def _compilations() -> int:
    """Graphs Dynamo has compiled in this process (each recompile counts once)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _tolerance(fast: FastPath) -> float:
    from ddpm.bench.measure import EQUALITY_TOLERANCE

    # bf16 changes the arithmetic on purpose (8-bit mantissa): its error is reported and only checked
    # against a sanity bound that catches a wrong result, not rounding.
    return 5e-2 if fast.bf16 else EQUALITY_TOLERANCE


if __name__ == "__main__":
    sys.exit(main())
