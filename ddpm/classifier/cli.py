"""Classifier-study subcommands: classifier train|list|import, analyse, analyses."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ddpm.errors import CheckpointError, InvalidOption
from ddpm.limits import DEFAULT_ANALYSIS_SAMPLES, DEFAULT_CONFIDENCE, DEFAULT_GRID_PER_CLASS
from ddpm.progress_bars import PhaseBars, new_bar
from ddpm.sampler_cli import add_sampler_arguments, spec_from_args
from ddpm.settings import data_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    classifier = subparsers.add_parser(
        "classifier", help="classifiers for the classifier study: train, list, import"
    )
    commands = classifier.add_subparsers(dest="classifier_command", required=True, metavar="ACTION")

    train = commands.add_parser("train", help="train a small seeded ResNet on a data set (resumable)")
    train.add_argument("--dataset", help="cifar10, digits, or folder:<path> with one subfolder per class")
    train.add_argument(
        "--image-size",
        type=int,
        default=32,
        help="the images' side, as the diffusion runs it judges were trained (16 for the README's digits runs); "
        "cifar10 is 32",
    )
    train.add_argument("--epochs", type=int, help="default 30; with --resume, the stored number")
    train.add_argument("--batch-size", type=int, default=128, help="images per optimizer step")
    train.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (cosine decay to 0)")
    train.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay")
    train.add_argument("--seed", type=int, default=0, help="weight init, batch order, augmentation, split")
    train.add_argument("--width", type=int, default=32, help="channels of the first stage (then x2, x4)")
    train.add_argument("--blocks", type=int, default=2, help="residual blocks per stage")
    train.add_argument("--holdout", type=float, default=0.2, help="share of each class held out (0, 0.5]")
    train.add_argument("--crop-padding", type=int, default=4, help="random-crop shift in pixels (0: none)")
    train.add_argument("--name", help="classifier name (default resnet-<dataset>-<size>px)")
    train.add_argument("--resume", metavar="NAME", help="continue a classifier from its latest state")
    train.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    train.add_argument(
        "--download", action="store_true", help="allow downloading CIFAR-10 even if DDPM_DOWNLOAD=0"
    )
    train.set_defaults(handler=cmd_train)

    listing = commands.add_parser("list", help="classifiers, their data set, accuracy and status")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)

    imported = commands.add_parser(
        "import", help="a torchvision architecture's weights file (safetensors or torch.save state dict)"
    )
    imported.add_argument(
        "--arch", required=True, help="torchvision architecture: densenet121, resnet18, ..."
    )
    imported.add_argument("--weights", type=Path, required=True, help=".safetensors, .pth or .pt state dict")
    imported.add_argument("--dataset", required=True, help="the data set it classifies (its class order)")
    imported.add_argument("--name", help="classifier name (default <arch>-<dataset>)")
    imported.add_argument("--image-size", type=int, default=32, help="the size of the images it judges")
    imported.add_argument(
        "--mean", default="0.485,0.456,0.406", help="per-channel normalisation mean of [0, 1] pixels"
    )
    imported.add_argument("--std", default="0.229,0.224,0.225", help="per-channel normalisation std")
    imported.add_argument(
        "--input-size", type=int, help="resize images to this before the network (e.g. 224)"
    )
    imported.add_argument(
        "--stem",
        default="auto",
        choices=["auto", "imagenet", "cifar"],
        help="first conv: from the weights (auto)",
    )
    imported.add_argument(
        "--holdout", type=float, default=0.2, help="share of each class in the held-out split"
    )
    imported.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    imported.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    imported.set_defaults(handler=cmd_import)

    analyse = subparsers.add_parser(
        "analyse", help="classify a checkpoint's samples (or held-out real images): class histogram and more"
    )
    source = analyse.add_mutually_exclusive_group(required=True)
    source.add_argument("--arch", help="use the newest kept checkpoint of this variant")
    source.add_argument("--run", help="use a kept checkpoint of this run (the newest, or --step)")
    source.add_argument("--checkpoint", type=Path, help="a checkpoint file")
    source.add_argument("--real", action="store_true", help="the classifier's held-out real images instead")
    analyse.add_argument("--step", type=int, help="with --run: the kept checkpoint of this step")
    analyse.add_argument("--classifier", help="classifier name (default: the only one for the data set)")
    analyse.add_argument(
        "--n", type=int, default=DEFAULT_ANALYSIS_SAMPLES, help="images (default 1000, as the report)"
    )
    analyse.add_argument("--seed", type=int, default=0, help="sampling seed, as for `ddpm sample`")
    add_sampler_arguments(analyse)
    analyse.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_CONFIDENCE,
        help=f"a sample is confident (recognisable) when its top class probability is at least this "
        f"(default {DEFAULT_CONFIDENCE})",
    )
    analyse.add_argument(
        "--per-class",
        type=int,
        default=DEFAULT_GRID_PER_CLASS,
        help="most confident images per class in the grid",
    )
    analyse.add_argument("--batch-size", type=int, default=128, help="images per network call")
    analyse.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    analyse.add_argument("--out", type=Path, help="also write the grid PNG here")
    analyse.add_argument("--no-save", action="store_true", help="print only; store no result")
    analyse.add_argument("--json", action="store_true", help="print the record as JSON")
    analyse.set_defaults(handler=cmd_analyse)

    analyses = subparsers.add_parser("analyses", help="stored analyses, newest first; --compare two of them")
    analyses.add_argument("--compare", nargs=2, metavar="ID", help="how two analyses' histograms differ")
    analyses.add_argument("--json", action="store_true")
    analyses.set_defaults(handler=cmd_analyses)


def cmd_train(args: argparse.Namespace) -> int:
    import os

    from ddpm.classifier.config import ClassifierConfig
    from ddpm.classifier.store import ClassifierDir, read_classifier
    from ddpm.classifier.training import ClassifierHooks, train_classifier

    root = data_dir(args.data_dir)
    if args.download:
        os.environ["DDPM_DOWNLOAD"] = "1"
    if args.resume:
        stored = dict(read_classifier(root, args.resume).get("config") or {})
        if not stored:
            raise InvalidOption(f"classifier {args.resume!r} was not trained by `ddpm classifier train`")
        if args.epochs is not None:
            stored["epochs"] = args.epochs
        config = ClassifierConfig.from_dict(stored)
        name = args.resume
    else:
        if not args.dataset:
            raise InvalidOption("--dataset is required (cifar10, digits or folder:<path>), or --resume NAME")
        config = ClassifierConfig(
            dataset=args.dataset,
            image_size=args.image_size,
            epochs=30 if args.epochs is None else args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            seed=args.seed,
            width=args.width,
            blocks=args.blocks,
            holdout=args.holdout,
            crop_padding=args.crop_padding,
        )
        name = args.name or config.default_name()
        if ClassifierDir.of(root, name).exists():
            raise InvalidOption(
                f"classifier {name!r} already exists; pass --resume {name} to continue it, or --name another"
            )

    bars: list[Any] = []

    def show(progress: Any) -> None:
        if not bars:
            bars.append(new_bar(total=progress.total_steps, initial=progress.step - 1, unit="step"))
        bar = bars[0]
        bar.n = progress.step
        accuracy = "-" if progress.holdout_accuracy is None else f"{progress.holdout_accuracy:.3f}"
        bar.set_postfix(loss=f"{progress.loss:.4f}", epoch=progress.epoch, heldout=accuracy, refresh=False)
        bar.refresh()

    try:
        result = train_classifier(config, root, name, args.device, ClassifierHooks(on_progress=[show]))
    finally:
        for bar in bars:
            bar.close()
    record = read_classifier(root, result.name)
    if result.status != "succeeded":
        print(f"classifier {result.name}: {result.status} at step {result.step}/{result.total_steps}")
        print(f"  resume with `ddpm classifier train --resume {result.name}`")
        return 0
    low, high = record["accuracy_ci95"]
    split = record["split"]
    print(
        f"classifier {result.name}: held-out accuracy {result.accuracy:.4f} (95% CI {low:.4f}-{high:.4f}, "
        f"{split['n_holdout']} images) after {result.epoch} epochs"
    )
    print(f"  {result.path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ddpm.classifier.store import list_classifiers

    records = list_classifiers(data_dir(args.data_dir))
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    rows = [
        (
            str(r.get("name")),
            str(r.get("arch")),
            str(r.get("dataset")),
            f"{r.get('image_size')}px",
            "-" if r.get("accuracy") is None else f"{r['accuracy']:.4f}",
            str((r.get("split") or {}).get("n_holdout", "-")),
            str(r.get("status")),
        )
        for r in records
    ]
    _print_table(("name", "arch", "dataset", "size", "held-out acc", "held-out", "status"), rows)
    return 0


def _floats(option: str, text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError as err:
        raise InvalidOption(f"{option} must be comma-separated numbers, got {text!r}") from err


def cmd_import(args: argparse.Namespace) -> int:
    from ddpm.classifier.torchvision_import import import_torchvision

    record = import_torchvision(
        data_dir(args.data_dir),
        args.arch,
        args.weights,
        args.dataset,
        name=args.name,
        image_size=args.image_size,
        mean=_floats("--mean", args.mean),
        std=_floats("--std", args.std),
        input_size=args.input_size,
        stem=args.stem,
        holdout=args.holdout,
        seed=args.seed,
        device=args.device,
    )
    accuracy = "not measured" if record["accuracy"] is None else f"{record['accuracy']:.4f}"
    print(
        f"classifier {record['name']}: torchvision {record['arch']} ({record['network']['stem']} stem), "
        f"{record['dataset']}, held-out accuracy {accuracy}"
    )
    for note in record.get("notes", []):
        print(f"note: {note}")
    return 0


def pick_analysed_checkpoint(root: Path, args: argparse.Namespace) -> Path:
    """--checkpoint, --arch (newest), --run (newest, or --step's)."""
    from ddpm.commands import pick_checkpoint
    from ddpm.runs import RunDir

    if args.step is None:
        return pick_checkpoint(root, args)
    if not args.run:
        raise InvalidOption("--step needs --run: a step is per run")
    run = RunDir.of(root, args.run)
    kept = dict(run.kept_checkpoints())
    if args.step not in kept:
        raise CheckpointError(
            f"run {args.run!r} has no kept checkpoint at step {args.step}; kept steps: {sorted(kept)}"
        )
    return kept[args.step]


def cmd_analyse(args: argparse.Namespace) -> int:
    from ddpm.classifier.analysis import analyse_checkpoint, analyse_real
    from ddpm.classifier.options import check_analysis_options
    from ddpm.classifier.results import save_analysis
    from ddpm.storage import atomic_write_bytes

    check_analysis_options(args.n, args.threshold, args.per_class)
    root = data_dir(args.data_dir)
    bars = PhaseBars()
    try:
        if args.real:
            if args.step is not None:
                raise InvalidOption("--step is for --run; --real analyses held-out images")
            if not args.classifier:
                raise InvalidOption("--real needs --classifier (whose held-out images to analyse)")
            result = analyse_real(
                args.classifier,
                args.n,
                args.seed,
                args.threshold,
                args.per_class,
                root,
                args.device,
                args.batch_size,
                progress=bars,
            )
        else:
            checkpoint = pick_analysed_checkpoint(root, args)
            result = analyse_checkpoint(
                checkpoint,
                args.classifier,
                args.n,
                args.seed,
                spec_from_args(args),
                None,
                None,
                args.threshold,
                args.per_class,
                root,
                args.device,
                args.batch_size,
                progress=bars,
            )
    finally:
        bars.close()
    record = result.to_record()
    if not args.no_save:
        record["id"] = save_analysis(root, record, result.grid_png)
    if args.out:
        atomic_write_bytes(args.out, result.grid_png)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print_analysis(record)
    if not args.no_save:
        from ddpm.classifier.results import grid_path

        print(f"stored as analysis {record['id']} (grid {grid_path(root, record['id'])})")
    return 0


def print_analysis(record: dict[str, Any]) -> None:
    if record["kind"] == "real":
        print(
            f"real {record['dataset']} held-out images: {record['n']} of {record['n_available']} (seed {record['seed']})"
        )
    else:
        print(
            f"{record['arch']} step {record['step']} (epoch {record['epoch']:.1f}, {record['weights']} weights), "
            f"{record['n']} samples, seed {record['seed']}, {record['sampler']} {record['steps']} steps "
            f"({record['nfe']} network calls)"
        )
    info = record["classifier_info"]
    accuracy = "-" if info.get("accuracy") is None else f"{info['accuracy']:.4f}"
    print(
        f"classifier {record['classifier']} ({info['arch']}, held-out accuracy {accuracy}), threshold {record['threshold']}"
    )
    rows = []
    for entry in record["classes"]:
        low, high = entry["share_ci95"]
        rows.append(
            (
                entry["name"],
                str(entry["count"]),
                f"{entry['share']:.3f} ({low:.3f}-{high:.3f})",
                f"{entry['dataset_share']:.3f}",
                "-" if entry["mean_confidence"] is None else f"{entry['mean_confidence']:.3f}",
                "-" if entry["confident_share"] is None else f"{entry['confident_share']:.3f}",
            )
        )
    _print_table(("class", "count", "share (95% CI)", "data set", "mean conf.", "confident"), rows)
    entropy, divergence = record["entropy"], record["divergence"]
    low, high = record["confident_share_ci95"]
    print(
        f"confident share {record['confident_share']:.3f} (95% CI {low:.3f}-{high:.3f}), "
        f"mean confidence {record['mean_confidence']:.3f}"
    )
    print(
        f"entropy {entropy['nats']:.4f} nats = {entropy['normalised']:.4f} of log K "
        f"(data set {entropy['dataset_normalised']:.4f}), {entropy['classes_present']} classes present"
    )
    print(
        f"total variation from the data set {divergence['total_variation']:.4f} (sampling noise alone at this N: "
        f"mean {divergence['null_total_variation_mean']:.4f}, 95th percentile {divergence['null_total_variation_p95']:.4f}); "
        f"chi-square {divergence['chi_square']:.2f}, dof {divergence['dof']}, p = {divergence['p_value']:.3g}"
    )
    if record["kind"] == "real":
        print(f"accuracy against the true labels {record['label_accuracy']:.4f}")
    for warning in record["warnings"]:
        print(f"warning: {warning}")


def cmd_analyses(args: argparse.Namespace) -> int:
    from ddpm.classifier.results import compare_records, list_analyses, read_analysis

    root = data_dir(args.data_dir)
    if args.compare:
        first, second = (read_analysis(root, result_id) for result_id in args.compare)
        comparison = compare_records(first, second)
        if args.json:
            print(json.dumps(comparison, indent=2))
        else:
            print(
                f"{comparison['first']} vs {comparison['second']}: total variation {comparison['total_variation']:.4f}, "
                f"chi-square {comparison['chi_square']:.2f}, dof {comparison['dof']}, p = {comparison['p_value']:.3g}"
            )
        return 0
    records = list_analyses(root)
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    rows = [
        (
            str(r.get("id")),
            str(r.get("kind")),
            "held-out" if r.get("kind") == "real" else f"{r.get('arch')} {r.get('run_id')} @{r.get('step')}",
            str(r.get("classifier")),
            str(r.get("n")),
            f"{r['entropy']['normalised']:.3f}",
            f"{r['confident_share']:.3f}",
            f"{r['divergence']['total_variation']:.3f}",
        )
        for r in records
    ]
    _print_table(("id", "kind", "source", "classifier", "N", "entropy/logK", "confident", "TV"), rows)
    return 0


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip())
