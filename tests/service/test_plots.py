"""Loss and FID figures as PNG, the loss log as CSV: from files laid out on a fresh volume (no training)."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ddpm.fid.results import save_result
from ddpm.runs import LOSS_HEADER, RunDir
from jobs.settings import Settings
from service import plots
from service.app import create_app
from service.figures import fid_curves, report_figures

RAW_BLUE = (31, 119, 180)  # matplotlib's C0, the loss curve's colour
SECOND_ORANGE = (255, 127, 14)  # C1: the second run compared


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def plot_client(idle_settings: Settings, volume: Path) -> Iterator[TestClient]:
    with TestClient(create_app(idle_settings.model_copy(update={"data_dir": volume}))) as client:
        yield client


def make_run(volume: Path, run_id: str, losses: list[float], steps_per_epoch: int = 10) -> RunDir:
    run = RunDir.of(volume, run_id)
    run.path.mkdir(parents=True)
    run.write({"run_id": run_id, "arch": "biggan", "status": "running", "steps_per_epoch": steps_per_epoch})
    rows = [
        f"{i},{(i - 1) // steps_per_epoch},{loss},0.0002,{i * 0.1:.3f}" for i, loss in enumerate(losses, 1)
    ]
    run.loss_path.write_text("\n".join([",".join(LOSS_HEADER), *rows]) + ("\n" if rows else ""))
    return run


def png(response) -> Image.Image:  # noqa: ANN001
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def has_colour(image: Image.Image, rgb: tuple[int, int, int]) -> bool:
    return any(pixel == rgb for _, pixel in image.getcolors(maxcolors=1 << 20))


def test_loss_png_draws_the_curve_and_revalidates(plot_client: TestClient, volume: Path) -> None:
    run = make_run(volume, "biggan-plot", [1.0 / (1 + 0.1 * i) + 0.05 * (i % 3) for i in range(60)])
    first = plot_client.get(f"/runs/{run.run_id}/loss.png")
    image = png(first)
    assert image.size == (800, 450) and has_colour(image, RAW_BLUE)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "no-cache"

    again = plot_client.get(f"/runs/{run.run_id}/loss.png", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content

    with run.loss_path.open("a") as handle:  # training goes on: a new step, a new figure
        handle.write("61,6,0.01,0.0002,6.1\n")
    grown = plot_client.get(f"/runs/{run.run_id}/loss.png", headers={"If-None-Match": etag})
    assert png(grown) and grown.headers["etag"] != etag

    links = plot_client.get(f"/runs/{run.run_id}").json()["links"]
    assert (
        plot_client.get(links["loss_plot"]).status_code
        == plot_client.get(links["loss_csv"]).status_code
        == 200
    )

    small = plot_client.get(
        f"/runs/{run.run_id}/loss.png", params={"smooth": 0, "log": True, "width": 400, "height": 300}
    )
    assert png(small).size == (400, 300) and small.headers["etag"] != grown.headers["etag"]


def test_loss_png_compares_runs_on_one_axis(plot_client: TestClient, volume: Path) -> None:
    make_run(volume, "run-a", [0.5, 0.4, 0.3, 0.2])
    make_run(volume, "run-b", [0.6, 0.5, 0.45, 0.4, 0.35, 0.3])
    single = plot_client.get("/runs/run-a/loss.png")
    both = plot_client.get("/runs/run-a/loss.png", params={"compare": ["run-b", "run-a"]})
    image = png(both)
    assert has_colour(image, RAW_BLUE) and has_colour(image, SECOND_ORANGE)
    assert not has_colour(png(single), SECOND_ORANGE)
    assert both.headers["etag"] != single.headers["etag"]
    with (volume / "runs" / "run-b" / "loss.csv").open("a") as handle:  # the other run moves on
        handle.write("7,0,0.25,0.0002,0.7\n")
    moved = plot_client.get("/runs/run-a/loss.png", params={"compare": "run-b"})
    assert moved.headers["etag"] != both.headers["etag"]
    missing = plot_client.get("/runs/run-a/loss.png", params={"compare": "no-such-run"})
    assert missing.status_code == 404 and "no-such-run" in missing.json()["detail"]


def test_loss_png_bad_options_unknown_run_and_no_loss_yet(plot_client: TestClient, volume: Path) -> None:
    assert plot_client.get("/runs/biggan-plot/loss.png", params={"smooth": 1}).status_code == 422
    missing = plot_client.get("/runs/no-such-run/loss.png")
    assert missing.status_code == 404 and "no run 'no-such-run'" in missing.json()["detail"]
    assert plot_client.get("/runs/no-such-run/loss.csv").status_code == 404

    make_run(volume, "queued-run", [])
    empty = png(plot_client.get("/runs/queued-run/loss.png"))
    assert empty.size == (800, 450) and not has_colour(empty, RAW_BLUE)


def test_loss_csv_serves_complete_rows_only(plot_client: TestClient, volume: Path) -> None:
    run = make_run(volume, "csv-run", [0.5, 0.4, 0.3])
    with run.loss_path.open("a") as handle:
        handle.write("4,0,0.2,0.00")  # half a row, as a reader can find it mid-flush
    response = plot_client.get("/runs/csv-run/loss.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0] == ",".join(LOSS_HEADER) and [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
    assert [row["step"] for row in run.loss_history()] == [1.0, 2.0, 3.0]
    cached = plot_client.get("/runs/csv-run/loss.csv", headers={"If-None-Match": response.headers["etag"]})
    assert cached.status_code == 304


def _fid_record(arch: str, run_id: str, step: int, dataset: str, scores: dict[int, float]) -> dict:
    return {
        "arch": arch,
        "run_id": run_id,
        "step": step,
        "epoch": 1.0,
        "weights": "model",
        "sampler": "ddim",
        "steps": 50,
        "seed": 0,
        "dataset": dataset,
        "scores": [{"n": n, "fid": fid} for n, fid in sorted(scores.items())],
        "warnings": [],
    }


def test_fid_plot_empty_then_curves(plot_client: TestClient, volume: Path) -> None:
    empty = plot_client.get("/fid/plot.png")
    assert png(empty).size == (800, 450)

    save_result(
        volume, _fid_record("biggan", "biggan-a", 100, "cifar10", {1024: 90.0, 2048: 70.0, 4096: 60.0})
    )
    drawn = plot_client.get("/fid/plot.png")
    assert has_colour(png(drawn), RAW_BLUE) and drawn.headers["etag"] != empty.headers["etag"]
    assert (
        plot_client.get("/fid/plot.png", headers={"If-None-Match": drawn.headers["etag"]}).status_code == 304
    )

    time.sleep(0.01)  # result ids sort by time
    save_result(volume, _fid_record("convnext", "convnext-a", 50, "digits", {500: 30.0, 1000: 25.0}))
    only = plot_client.get("/fid/plot.png", params={"arch": ["DDPM_ConvNeXt"], "width": 640, "height": 480})
    assert png(only).size == (640, 480)
    assert plot_client.get("/fid/plot.png", params={"arch": "nonsense"}).status_code == 422
    none_here = plot_client.get("/fid/plot.png", params={"arch": "rdn"})
    assert not has_colour(png(none_here), RAW_BLUE)


def test_fid_curves_group_by_checkpoint_and_report_only_beside_cifar10() -> None:
    rows = [  # newest first, as GET /fid lists them
        {"arch": "biggan", "run_id": "b", "step": 10, "sampler": "ddim", "steps": 50, "dataset": "cifar10", "n": 4096, "fid": 55.0},
        {"arch": "biggan", "run_id": "b", "step": 10, "sampler": "ddim", "steps": 50, "dataset": "cifar10", "n": 4096, "fid": 99.0},
        {"arch": "biggan", "run_id": "b", "step": 10, "sampler": "ddim", "steps": 50, "dataset": "cifar10", "n": 2048, "fid": 60.0},
        {"arch": "rdn", "run_id": "r", "step": 5, "sampler": "ddpm", "steps": None, "dataset": "digits", "n": 512, "fid": 20.0},
    ]  # fmt: skip
    curves, total = fid_curves(rows, limit=20)
    assert total == 2
    by_arch = {curve.arch: curve for curve in curves}
    assert list(by_arch["biggan"].points) == [(2048, 60.0), (4096, 55.0)]  # the newer 4096 score wins
    assert list(by_arch["rdn"].points) == [(512, 20.0)]
    assert [(f.arch, f.fid, f.n) for f in report_figures(curves)] == [("biggan", 53.096, 4096)]
    newest_only, total = fid_curves(rows, limit=1)
    assert [c.arch for c in newest_only] == ["biggan"] and total == 2


def test_smoothing_is_debiased_and_skips_non_finite_losses() -> None:
    assert plots.smooth_ema([2.0, 4.0], 0.0) == [2.0, 4.0]
    smoothed = plots.smooth_ema([2.0, 2.0, math.nan, 2.0], 0.9)
    assert smoothed == pytest.approx([2.0, 2.0, 2.0, 2.0])  # debiased: no pull towards zero at the start
    assert plots.smooth_ema([0.0, 1.0], 0.5)[1] == pytest.approx(0.5 / 0.75)


def test_fid_curves_carry_intervals_kid_and_the_fid_infinity_fit() -> None:
    base = {
        "arch": "biggan",
        "run_id": "b",
        "step": 10,
        "sampler": "dpmpp_2m",
        "steps": 20,
        "dataset": "digits",
    }
    rows = [
        {**base, "n": 1024, "fid": 177.4, "fid_low": 175.0, "fid_high": 179.8, "kid": 0.242, "kid_std": 0.003,
         "fid_inf": 175.8, "fid_inf_slope": 1600.0, "fid_inf_n": [102, 1024]},
        {**base, "n": 256, "fid": 189.2, "fid_low": 185.0, "fid_high": 193.4, "kid": 0.244, "kid_std": 0.007,
         "fid_inf": None, "fid_inf_slope": None, "fid_inf_n": None},
    ]  # fmt: skip
    (curve,), _ = fid_curves(rows, limit=20)
    assert curve.label == "b @ 10 (dpmpp_2m 20)"
    assert list(curve.intervals) == [(256, 185.0, 193.4), (1024, 175.0, 179.8)]
    assert list(curve.kid) == [(256, 0.244, 0.007), (1024, 0.242, 0.003)]
    assert curve.fid_inf == (175.8, 1600.0, 102, 1024)  # the largest N's fit
    png = plots.fid_png([curve], [], None, plots.Size(900, 400))
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
