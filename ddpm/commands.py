"""Engine subcommands: archs, train, sample, runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ddpm.errors import CheckpointError, InvalidOption
from ddpm.limits import GRID_SAMPLER
from ddpm.presets import TRAIN_PRESETS, preset_names, with_preset
from ddpm.progress_bars import new_bar
from ddpm.sampler_cli import DefaultsHelp, add_sampler_arguments, spec_from_args
from ddpm.settings import data_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    archs = subparsers.add_parser(
        "archs", help="list the variants: name, report name, parameters, report FID"
    )
    archs.add_argument("--json", action="store_true", help="machine-readable output")
    archs.set_defaults(handler=cmd_archs)

    train = subparsers.add_parser(
        "train",
        help="train a variant (defaults: the report's CIFAR-10 setup; --preset digits-quick: a first run)",
        formatter_class=DefaultsHelp,
    )
    train.add_argument(
        "--preset",
        choices=preset_names(),
        help=f"a named recipe ({', '.join(f'{k}: {_recipe(v)}' for k, v in TRAIN_PRESETS.items())}); "
        "options given beside it override its values",
    )
    train.add_argument(
        "--arch",
        help="variant or report name (biggan, DDPM_BigGAN), or presets joined by '+' (biggan+anti_aliasing); "
        "required unless --preset or --resume names it",
    )
    train.add_argument("--dataset", default="cifar10", help="cifar10, digits, or folder:<path>")
    train.add_argument("--epochs", type=int, default=100, help="passes over the data (--max-steps caps them)")
    train.add_argument(
        "--max-steps",
        type=int,
        help="stop after this many optimizer steps (default: none, the epochs decide); a run it cuts short "
        "keeps about eight checkpoints spaced over its steps",
    )
    train.add_argument("--batch-size", type=int, default=128, help="images per optimizer step")
    train.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate")
    train.add_argument("--seed", type=int, default=0, help="weight init, batch order, noise")
    train.add_argument(
        "--width", type=float, default=1.0, help="channel multiplier (1.0 = the report's sizes)"
    )
    train.add_argument(
        "--channels", help="explicit stage widths, comma separated (default: the arch's, scaled by --width)"
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=10,
        help="epochs between kept checkpoints (the final step is always kept; a run --max-steps cuts "
        "short is spaced by steps instead)",
    )
    train.add_argument("--ema", action="store_true", help="keep an EMA of the weights (decay --ema-decay)")
    train.add_argument("--ema-decay", type=float, default=0.9999, help="EMA decay per step")
    train.add_argument(
        "--ema-warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ramp the EMA decay as min(decay, (1+step)/(10+step)) (default: on)",
    )
    train.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast for the network on CUDA (loss and weights stay fp32)",
    )
    train.add_argument(
        "--image-size",
        type=int,
        default=32,
        help="side of the training images: digits (8x8 scans) are upscaled to it, 16 in the README's digits "
        "runs and digits-quick; folder images are resized to it; cifar10 is 32 only",
    )
    train.add_argument("--schedule", default="linear", choices=["linear", "cosine"], help="noise schedule")
    train.add_argument(
        "--grayscale",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one-channel network and images (default: the data set's own: grey for digits)",
    )
    train.add_argument(
        "--dropout", type=float, help="dropout rate (default: the arch's own; 0.1 for ddpm_original)"
    )
    train.add_argument("--run-id", help="name of the run folder (default: <arch>-<time>-<random>)")
    train.add_argument(
        "--resume", metavar="RUN_ID", help="continue an existing run from its latest checkpoint"
    )
    train.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    train.add_argument(
        "--download", action="store_true", help="allow downloading CIFAR-10 even if DDPM_DOWNLOAD=0"
    )
    train.add_argument(
        "--no-tensorboard", action="store_true", help="write no TensorBoard events (<run>/tensorboard)"
    )
    train.add_argument(
        "--tensorboard-samples",
        type=int,
        default=16,
        help="images in the TensorBoard grid sampled at each kept checkpoint (0: none)",
    )
    # What each option is when not given: options that differ from these override a --preset's values.
    train.set_defaults(handler=cmd_train, train_defaults={a.dest: a.default for a in train._actions})

    sample = subparsers.add_parser(
        "sample",
        help="write a seeded PNG grid from a checkpoint",
        formatter_class=DefaultsHelp,
    )
    source = sample.add_mutually_exclusive_group(required=True)
    source.add_argument("--arch", help="use the newest kept checkpoint of this variant")
    source.add_argument("--run", help="use the newest kept checkpoint of this run")
    source.add_argument("--checkpoint", type=Path, help="a checkpoint file")
    sample.add_argument("--seed", type=int, default=0, help="image i's noise depends on (seed, i) only")
    sample.add_argument("--n", type=int, default=80, help="number of images (80 = the report's grid)")
    sample.add_argument("--nrow", type=int, default=10, help="images per row")
    add_sampler_arguments(sample, default=GRID_SAMPLER)
    sample.add_argument("--batch-size", type=int, default=128, help="images per network call")
    sample.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights exist")
    sample.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    sample.add_argument("--out", type=Path, required=True, help="PNG file to write")
    sample.set_defaults(handler=cmd_sample)

    runs = subparsers.add_parser("runs", help="list training runs and their checkpoints")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=cmd_runs)


def cmd_archs(args: argparse.Namespace) -> int:
    from models import list_archs

    archs = list_archs()
    if args.json:
        print(json.dumps(archs, indent=2))
        return 0
    rows = [
        (
            a["name"],
            a["report_name"],
            f"{a['params'] / 1e6:.2f}M",
            "-" if a["report_fid"] is None else f"{a['report_fid']:.3f}",
        )
        for a in archs
    ]
    _print_table(("name", "report name", "params", "report FID"), rows)
    return 0


# `ddpm train` options that are TrainConfig fields of the same name.
TRAIN_OPTIONS = (
    "arch", "dataset", "epochs", "max_steps", "batch_size", "lr", "seed", "width", "channels",
    "checkpoint_every", "ema", "ema_decay", "ema_warmup", "bf16", "image_size", "schedule", "dropout", "grayscale",
)  # fmt: skip


def _recipe(options: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in options.items())


def cmd_train(args: argparse.Namespace) -> int:
    import os

    from ddpm.runs import RunDir
    from ddpm.tensorboard_log import TensorBoardLog, TensorBoardOptions
    from ddpm.training import TrainConfig, TrainHooks, train

    root = data_dir(args.data_dir)
    if args.download:
        os.environ["DDPM_DOWNLOAD"] = "1"
    if args.resume:
        run = _existing_run(root, args.resume)
        stored = dict(run.read()["train_config"])
        stored.update(epochs=args.epochs, max_steps=args.max_steps, checkpoint_every=args.checkpoint_every)
        config = TrainConfig.from_dict(stored)
        run_id = args.resume
    else:
        options = {name: getattr(args, name) for name in TRAIN_OPTIONS}
        given = {k: v for k, v in options.items() if v != args.train_defaults.get(k)}
        if args.preset is None and args.arch is None:
            raise InvalidOption(
                f"give --arch (`ddpm archs` lists them) or --preset ({', '.join(preset_names())})"
            )
        merged = with_preset(args.preset, given)
        config = TrainConfig(**{**options, **merged, "channels": _parse_channels(merged.get("channels"))})
        run_id = args.run_id
        if run_id and RunDir.of(root, run_id).exists():
            raise InvalidOption(f"run {run_id!r} already exists; pass --resume {run_id} to continue it")

    bars: list[Any] = []  # created on the first step, so data-loading errors print cleanly

    def show(progress: Any) -> None:
        if not bars:
            bars.append(new_bar(total=progress.total_steps, initial=progress.step - 1, unit="step"))
        bar = bars[0]
        bar.n = progress.step
        bar.set_postfix(loss=f"{progress.loss:.4f}", epoch=progress.epoch, refresh=False)
        bar.refresh()

    tensorboard = TensorBoardLog(
        root,
        TensorBoardOptions(enabled=not args.no_tensorboard, samples=args.tensorboard_samples),
        device=args.device,
    )
    try:
        hooks = tensorboard.attach(TrainHooks(on_progress=[show]))
        result = train(config, root, run_id=run_id, device=args.device, hooks=hooks)
    finally:
        tensorboard.close()
        for bar in bars:
            bar.close()
    run = RunDir.of(root, result.run_id)
    print(
        f"run {result.run_id}: {result.status} at step {result.step}/{result.total_steps}, final loss {result.final_loss}"
    )
    for entry in result.checkpoints:
        print(f"  checkpoint {run.checkpoints_dir / entry['file']}")
    print(f"  loss history {run.loss_path}")
    if not args.no_tensorboard:
        print(f"  TensorBoard  tensorboard --logdir {run.path / 'tensorboard'}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from ddpm.sampling import check_sample_options, sample_checkpoint, write_grid

    spec = check_sample_options(args.n, spec_from_args(args), nrow=args.nrow)
    checkpoint = pick_checkpoint(data_dir(args.data_dir), args)
    bar = new_bar(unit="call", desc="sampling")  # no frame until the first network call is counted

    def show(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        images, meta = sample_checkpoint(
            checkpoint,
            args.n,
            args.seed,
            spec,
            device=args.device,
            batch_size=args.batch_size,
            prefer_ema=not args.no_ema,
            progress=show,
        )
    finally:
        bar.close()
    write_grid(args.out, images, args.nrow)
    print(
        f"wrote {args.out} ({args.n} images, {meta['arch']} step {meta['step']}, {meta['weights']} weights, from {checkpoint})"
    )
    print(f"sampler: {spec.describe()}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from ddpm.runs import list_runs

    records = list_runs(data_dir(args.data_dir))
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    rows = [
        (
            r["run_id"],
            r["arch"],
            r["status"],
            f"{r['step']}/{r['total_steps']}",
            str(len(r.get("checkpoints", []))),
        )
        for r in records
    ]
    _print_table(("run", "arch", "status", "step", "checkpoints"), rows)
    return 0


def pick_checkpoint(root: Path, args: argparse.Namespace) -> Path:
    from ddpm.runs import newest_checkpoint
    from models import resolve_arch

    if args.checkpoint:
        return args.checkpoint
    if args.run:
        kept = _existing_run(root, args.run).kept_checkpoints()
        if not kept:
            raise CheckpointError(f"run {args.run!r} has no kept checkpoint yet")
        return kept[-1][1]
    arch = resolve_arch(args.arch)
    found = newest_checkpoint(root, arch)
    if found is None:
        raise CheckpointError(
            f"no checkpoint of {arch} under {root / 'runs'}; train one first, e.g. "
            f"`ddpm train --arch {arch} --dataset digits --width 0.25 --max-steps 500`"
        )
    return found[2]


def _existing_run(root: Path, run_id: str) -> Any:
    from ddpm.runs import RunDir

    run = RunDir.of(root, run_id)
    if not run.exists():
        raise InvalidOption(f"no run {run_id!r} under {root / 'runs'}; `ddpm runs` lists them")
    return run


def _parse_channels(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError as err:
        raise InvalidOption(f"--channels must be comma-separated integers, got {text!r}") from err


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())
