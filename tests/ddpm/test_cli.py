"""The `ddpm` command: archs, a real (tiny) train -> sample round trip, and clean errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import models
from ddpm.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_archs_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "archs")
    assert code == 0
    for spec in models.ARCHS.values():
        assert spec.name in out and spec.report_name in out
    assert "53.096" in out and "23.33M" in out
    code, out, _ = _run(capsys, "archs", "--json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == models.arch_names()
    assert rows[0] == models.list_archs()[0] and rows[0]["params"] == 23_332_739


def test_train_then_sample_on_digits(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys,
        *("train", "--arch", "DDPM_PureUNet", "--dataset", "digits", "--width", "0.125"),
        *("--max-steps", "3", "--batch-size", "8", "--run-id", "cli-run"),
    )
    assert code == 0, err
    assert "run cli-run: succeeded at step 3/3" in out
    assert "| 0/" not in err and "| 3/3" in err  # the bar's first frame is its first step, not an empty bar
    assert (data_dir / "runs" / "cli-run" / "checkpoints" / "step-00000003.safetensors").is_file()
    assert any((data_dir / "runs" / "cli-run" / "tensorboard").glob("events.out.tfevents.*"))

    out_png = data_dir / "grid.png"
    argv = ("sample", "--arch", "pure_unet", "--seed", "0", "--n", "12", "--nrow", "4")
    code, out, err = _run(capsys, *argv, "--sampler", "ddim", "--steps", "4", "--out", str(out_png))
    assert code == 0, err
    assert "| 0/" not in err and "| 4/4" in err
    with Image.open(out_png) as image:
        assert image.size == (4 * 34 + 2, 3 * 34 + 2)
    first = out_png.read_bytes()
    _run(capsys, *argv, "--sampler", "ddim", "--steps", "4", "--out", str(out_png))
    assert out_png.read_bytes() == first, "same seed and checkpoint: identical bytes"

    code, out, _ = _run(capsys, "runs")
    assert code == 0 and "cli-run" in out and "succeeded" in out and "3/3" in out

    code, _, err = _run(capsys, "train", "--arch", "pure_unet", "--dataset", "digits", "--run-id", "cli-run")
    assert code == 2 and "already exists; pass --resume cli-run" in err
    code, out, err = _run(capsys, "train", "--arch", "pure_unet", "--resume", "cli-run", "--max-steps", "4")
    assert code == 0, err
    assert "succeeded at step 4/4" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--arch", "unet9"], "unknown arch 'unet9'; valid: baseline (DDPM_Baseline)"),
        (["train", "--arch", "baseline", "--width", "0"], "width must be in (0, 4.0]"),
        (
            ["train", "--arch", "baseline", "--dataset", "mnist"],
            "unknown dataset 'mnist'; valid: cifar10, digits",
        ),
        (["train", "--arch", "baseline", "--max-steps", "1"], "CIFAR-10 is not in"),
        (
            ["train", "--dataset", "digits"],
            "give --arch (`ddpm archs` lists them) or --preset (digits-quick)",
        ),
        (["sample", "--arch", "biggan", "--out", "x.png"], "no checkpoint of biggan"),
        (["sample", "--arch", "biggan", "--n", "0", "--out", "x.png"], "n must be an integer in [1, 50000]"),
        (["sample", "--arch", "nope", "--out", "x.png"], "unknown arch 'nope'"),
        (["sample", "--run", "missing", "--out", "x.png"], "no run 'missing'"),
        (["sample", "--run", "../etc", "--out", "x.png"], "invalid run id"),
        (
            ["sample", "--arch", "biggan", "--sampler", "ddpm", "--steps", "50", "--out", "x.png"],
            "always runs 1000 steps, got steps=50",
        ),
        (
            ["sample", "--arch", "biggan", "--sampler", "heun", "--eta", "0.5", "--out", "x.png"],
            "eta=0.5 does not apply to the heun sampler; it applies to ['ddim'] only",
        ),
        (
            ["sample", "--arch", "biggan", "--sampler", "dpmpp_2m", "--steps", "501", "--out", "x.png"],
            "steps must be an integer in [1, 500] for dpmpp_2m, got 501",
        ),
    ],
)
def test_bad_input_gives_one_clear_error(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert message in err and err.startswith("error: ")
    assert "Traceback" not in err


def test_corrupt_checkpoint_gives_one_clear_error(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = data_dir / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    code, _, err = _run(capsys, "sample", "--checkpoint", str(bad), "--out", str(data_dir / "x.png"))
    assert code == 2 and "is corrupt or truncated" in err and "Traceback" not in err
    assert not (data_dir / "x.png").exists()


def test_the_installed_command_prints_no_traceback(data_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ddpm.cli", "train", "--arch", "DDPM_Nope"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown arch 'DDPM_Nope'") and "Traceback" not in result.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "ddpm.cli", "--help"], capture_output=True, text=True
    ).stdout
    for command in ("archs", "train", "sample", "runs"):
        assert command in help_text


def test_png_is_a_real_png(data_dir: Path) -> None:
    import torch

    from ddpm.sampling import grid_png

    data = grid_png(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), nrow=3)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        image.verify()


def test_preset_trains_its_recipe_with_given_options_on_top(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ddpm.presets import TRAIN_PRESETS
    from ddpm.runs import RunDir

    argv = ("train", "--preset", "digits-quick", "--width", "0.125", "--max-steps", "2", "--run-id", "quick")
    code, out, err = _run(capsys, *argv, "--no-tensorboard")
    assert code == 0, err
    config = RunDir.of(data_dir, "quick").read()["train_config"]
    recipe = TRAIN_PRESETS["digits-quick"]
    assert {k: config[k] for k in recipe if k != "width"} == {k: v for k, v in recipe.items() if k != "width"}
    assert config["width"] == 0.125 and config["max_steps"] == 2 and config["grayscale"] is True

    # --help names every default; sample's sampler is the grids' default (DDIM 50), not the report's 1000.
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "(default: ddim)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    assert "digits-quick" in shown and "AdamW learning rate (default: 0.0002)" in " ".join(shown.split())


def test_global_options_are_accepted_after_the_subcommand_too(tmp_path: Path) -> None:
    from ddpm.cli import build_parser

    parser = build_parser()
    before = parser.parse_args(["--data-dir", str(tmp_path), "train", "--preset", "digits-quick"])
    after = parser.parse_args(["train", "--preset", "digits-quick", "--data-dir", str(tmp_path)])
    nested = parser.parse_args(["classifier", "list", "--data-dir", str(tmp_path)])
    assert before.data_dir == after.data_dir == nested.data_dir == str(tmp_path)
    assert parser.parse_args(["runs"]).data_dir is None  # absent: DATA_DIR, then ./data


def test_every_subcommand_s_help_shows_every_default() -> None:
    """Each option with a default says it in --help (the formatter appends it, or the help names it)."""
    import argparse

    from ddpm.cli import build_parser

    def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in dict.fromkeys(action.choices.values()):
                    found += parsers(sub)
        return found

    missing = []
    for parser in parsers(build_parser()):
        help_text = " ".join(parser.format_help().split("\noptions:", 1)[-1].split())  # past the usage lines
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default in (None, argparse.SUPPRESS) or isinstance(default, bool):
                continue
            entry = help_text.split(action.option_strings[-1], 1)[-1][:600]
            if "default" not in entry:
                missing.append(f"{parser.prog} {action.option_strings[-1]} (default {default!r})")
    assert not missing, missing


def test_phase_bars_draw_no_empty_frame(capsys: pytest.CaptureFixture[str]) -> None:
    from ddpm.progress_bars import PhaseBars

    bars = PhaseBars()
    bars("reference", 0, 8)  # a phase that has only started draws nothing yet
    assert capsys.readouterr().err == ""
    bars("reference", 4, 8)
    bars("reference", 8, 8)
    bars("sampling", 0, 20)
    bars("sampling", 20, 20)
    bars.close()
    err = capsys.readouterr().err
    assert "| 0/" not in err and "| 8/8" in err and "| 20/20" in err
