"""FID subcommands: fid (evaluate and store), fid-weights (build the Inception weights), fid-reference."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ddpm.fid.options import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_FID_INF_POINTS,
    DEFAULT_KID_SUBSETS,
    DEFAULT_N,
    METRICS,
    MetricOptions,
    parse_n_list,
    plan_metrics,
)
from ddpm.progress_bars import PhaseBars
from ddpm.sampler_cli import DefaultsHelp, add_sampler_arguments, spec_from_args
from ddpm.settings import data_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    fid = subparsers.add_parser(
        "fid",
        help="FID of a checkpoint's samples (pytorch-fid's numbers, offline), stored in the results table",
        formatter_class=DefaultsHelp,
    )
    source = fid.add_mutually_exclusive_group(required=True)
    source.add_argument("--arch", help="use the newest kept checkpoint of this variant")
    source.add_argument("--run", help="use the newest kept checkpoint of this run")
    source.add_argument("--checkpoint", type=Path, help="a checkpoint file")
    fid.add_argument(
        "--n",
        default=str(DEFAULT_N),
        help="samples, or a sweep from one sample set: 256,512,1024 (default 4096)",
    )
    fid.add_argument("--seed", type=int, default=0)
    add_sampler_arguments(fid)
    fid.add_argument(
        "--dataset", help="reference dataset: cifar10, digits, folder:<path> (default: the checkpoint's own)"
    )
    fid.add_argument(
        "--reference", type=Path, help="a pytorch-fid .npz (mu, sigma) to compare against instead"
    )
    fid.add_argument(
        "--batch-size", type=int, default=128, help="images per network call (sampling and Inception)"
    )
    fid.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    fid.add_argument(
        "--metrics",
        help=f"comma-separated, from {','.join(METRICS)} (default: all, each where N allows; FID always)",
    )
    fid.add_argument("--kid-subsets", type=int, default=DEFAULT_KID_SUBSETS, help="KID: subsets averaged")
    fid.add_argument(
        "--kid-subset-size", type=int, help="KID: rows per subset (default min(1000, N/2, reference rows/2))"
    )
    fid.add_argument(
        "--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="FID interval: bootstrap replicates"
    )
    fid.add_argument(
        "--fid-inf-points",
        type=int,
        default=DEFAULT_FID_INF_POINTS,
        help="FID-infinity: sample counts fitted",
    )
    fid.add_argument("--metrics-seed", type=int, default=0, help="seed of subsets, resamples and shuffles")
    fid.add_argument("--no-save", action="store_true", help="print only; do not store in the results table")
    fid.add_argument("--json", action="store_true", help="print the stored record as JSON")
    fid.set_defaults(handler=cmd_fid)

    weights = subparsers.add_parser(
        "fid-weights", help="put pytorch-fid's Inception weights where it looks (built offline if needed)"
    )
    weights.add_argument("--force", action="store_true", help="rebuild from the TorchScript even if present")
    weights.add_argument("--no-download", action="store_true", help="do not try the download first")
    weights.set_defaults(handler=cmd_fid_weights)

    reference = subparsers.add_parser(
        "fid-reference", help="compute and cache a dataset's reference statistics (pytorch-fid .npz)"
    )
    reference.add_argument("--dataset", default="cifar10", help="cifar10 (default), digits or folder:<path>")
    reference.add_argument(
        "--image-size",
        type=int,
        default=32,
        help="the checkpoints' image side, for digits (16 for the README's digits runs) and folders; cifar10 is 32",
    )
    reference.add_argument("--refresh", action="store_true", help="recompute even if cached")
    reference.add_argument("--batch-size", type=int, default=128, help="images per Inception call")
    reference.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    reference.set_defaults(handler=cmd_fid_reference)


def metric_options(args: argparse.Namespace) -> MetricOptions:
    names = None if args.metrics is None else tuple(m for m in args.metrics.replace(" ", "").split(",") if m)
    return MetricOptions(
        metrics=names,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        bootstrap=args.bootstrap,
        fid_inf_points=args.fid_inf_points,
        seed=args.metrics_seed,
    )


def cmd_fid(args: argparse.Namespace) -> int:
    from ddpm.checkpoints import read_meta
    from ddpm.commands import pick_checkpoint
    from ddpm.fid.evaluate import check_options, evaluate_checkpoint
    from ddpm.fid.results import markdown_table, save_result, table_rows

    counts = parse_n_list(args.n)
    spec = spec_from_args(args)
    check_options(counts, spec, batch_size=args.batch_size)
    metrics = metric_options(args)
    plan_metrics(metrics, counts)
    root = data_dir(args.data_dir)
    checkpoint = pick_checkpoint(root, args)
    dataset = args.dataset or read_meta(checkpoint).get("train_config", {}).get("dataset", "cifar10")
    bars = PhaseBars()
    try:
        result = evaluate_checkpoint(
            checkpoint,
            counts,
            args.seed,
            spec,
            None,
            None,
            dataset,
            root,
            args.device,
            args.batch_size,
            args.reference,
            progress=bars,
            metrics=metrics,
        )
    finally:
        bars.close()
    record = result.to_record()
    if not args.no_save:
        record["id"] = save_result(root, record)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    info = result.checkpoint
    print(
        f"{info['arch']} step {info['step']} (epoch {info['epoch']:.1f}, {info['weights']} weights), {checkpoint}"
    )
    print(f"sampler {spec.describe()}, seed {args.seed}")
    print(f"reference: {result.reference}")
    if result.reference_features:
        summary = result.reference_features
        print(
            f"reference features (KID, precision/recall): {summary['n']} of {summary['total']} ({summary['chosen']})"
        )
    print(markdown_table(table_rows([record])), end="")
    print("time: " + ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in result.timings.items()))
    if not args.no_save:
        print(f"stored as result {record['id']}")
    return 0


def cmd_fid_weights(args: argparse.Namespace) -> int:
    from ddpm.fid.weights import ensure_weights

    status = ensure_weights(
        download=False if args.no_download else None,
        force=args.force,
        log=lambda note: print(note, file=sys.stderr),
    )
    detail = "" if status.oracle_error is None else f", oracle relative error {status.oracle_error:.1e}"
    print(f"{status.source} in {status.seconds:.1f}s{detail}", file=sys.stderr)
    print(status.path)
    return 0


def cmd_fid_reference(args: argparse.Namespace) -> int:
    from ddpm.device import resolve_device
    from ddpm.fid.features import load_inception
    from ddpm.fid.reference import dataset_reference

    device = resolve_device(args.device)
    bars = PhaseBars()
    try:
        stats = dataset_reference(
            args.dataset,
            data_dir(args.data_dir),
            args.image_size,
            lambda: load_inception(device),
            device,
            args.batch_size,
            refresh=args.refresh,
            progress=lambda done, total: bars("reference", done, total),
        )
    finally:
        bars.close()
    print(f"{'computed' if stats.computed else 'cached'}: {stats.identity}", file=sys.stderr)
    print(stats.path)
    return 0
