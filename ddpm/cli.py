"""The `ddpm` command. Each command module adds its subcommands through `register(subparsers)`.

User errors (bad options, missing data, corrupt checkpoints) print one line and exit 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

# The engine's modules that contribute subcommands; each defines register(subparsers) and keeps heavy
# imports (torch, the service) inside its handlers so `ddpm --help` stays fast.
COMMAND_MODULES = ("ddpm.commands", "ddpm.bench.cli", "ddpm.fid.cli", "ddpm.classifier.cli", "ddpm.study.cli")
# Packages above the engine (the service: serve, worker, jobs) register theirs under this entry-point
# group in pyproject.toml, so the engine never names them.
COMMAND_GROUP = "ddpm.commands"
DATA_DIR_HELP = "where datasets, runs, samples and FID files live (env DATA_DIR, default ./data)"


def command_modules() -> list[str]:
    plugins = sorted(entry.value for entry in entry_points(group=COMMAND_GROUP))
    return [*COMMAND_MODULES, *(name for name in plugins if name not in COMMAND_MODULES)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddpm",
        description="Train, sample and score DDPM UNet variants (the report's architectures and ours).",
    )
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in command_modules():
        importlib.import_module(module).register(subparsers)
    _accept_global_options(subparsers)
    _defaults_in_help(subparsers)
    return parser


def _defaults_in_help(subparsers: argparse._SubParsersAction) -> None:
    """Every subcommand's --help shows each option's default (nested ones too), as train's does."""
    from ddpm.sampler_cli import DefaultsHelp

    for sub in set(subparsers.choices.values()):
        sub.formatter_class = DefaultsHelp
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                _defaults_in_help(action)


def _accept_global_options(subparsers: argparse._SubParsersAction) -> None:
    """`ddpm train --data-dir X` as well as `ddpm --data-dir X train`: every subcommand (nested ones too)
    takes the global options; SUPPRESS leaves the value given before the subcommand when absent."""
    for sub in set(subparsers.choices.values()):
        if "--data-dir" not in sub._option_string_actions:
            sub.add_argument("--data-dir", default=argparse.SUPPRESS, help=DATA_DIR_HELP)
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                _accept_global_options(action)


def main(argv: Sequence[str] | None = None) -> int:
    from ddpm.errors import DdpmError
    from models.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (DdpmError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
