"""The report from synthetic results: self-contained HTML, the zip, the CSV, partial studies, CIFAR-10's figures."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ddpm.study.report import build_report, code_version
from ddpm.study.results import MemberResult
from ddpm.study.spec import preset
from tests.ddpm.study.test_results import member


def _grid(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (36, 54, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _results(tmp_path: Path) -> list[MemberResult]:
    done = [
        member("baseline", {50: (90.0, 2.0), 100: (80.0, 2.0), 200: (70.0, 2.0)}),
        member("res_link", {50: (70.0, 2.0), 100: (60.0, 2.0), 200: (50.0, 2.0)}),
    ]
    for index, result in enumerate(done):
        result.grid_png = _grid(tmp_path / f"g{index}.png", index)
        result.losses = [(step, 1.0 / step) for step in range(1, 40)]
        result.parameters, result.train_seconds = 12345, 61.5
    # biggan still training: a row that says so, no FID, no grid
    return [*done, MemberResult("biggan", 0, "biggan-run", "training", losses=[(1, 0.9), (2, 0.8)])]


def test_report_formats_on_a_partial_study(tmp_path: Path) -> None:
    spec = preset("digits-smoke")
    report = build_report(spec, _results(tmp_path), code_version())
    assert report.code_version.startswith(("git ", "ddpm-arch-bench "))

    rows = report.table()
    assert [r["member"] for r in rows] == ["baseline@0", "res_link@0", "biggan@0"]
    assert rows[1]["fid_200"] == 50.0 and rows[1]["fid_low_200"] == 48.0 and rows[1]["tier"] == 1
    assert rows[0]["tier"] == 2 and rows[2]["state"] == "training" and rows[2]["fid_200"] is None
    assert rows[0]["report_fid"] is None  # digits: the report's CIFAR-10 figures are not comparable

    table = list(csv.DictReader(io.StringIO(report.csv())))
    assert [r["member"] for r in table] == ["baseline@0", "res_link@0", "biggan@0"]
    assert table[0]["fid_100"] == "80.0" and table[2]["fid_100"] == ""

    page = report.html()
    sources = re.findall(r"<img src='([^']*)'", page)
    assert len(sources) == 4  # two grids, the loss figure, FID against N
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)  # nothing fetched from anywhere
    assert "biggan@0</strong>: no grid yet (training)" in page
    assert "res_link: 50.00 [48.00, 52.00]" in page and "Tier 2" in page
    assert "far below Inception" in page  # the smoke's small N said

    with zipfile.ZipFile(io.BytesIO(report.markdown_zip())) as archive:
        names = set(archive.namelist())
        markdown = archive.read("report.md").decode()
        assert archive.read("loss.png").startswith(b"\x89PNG")
    assert {"report.md", "table.csv", "spec.json", "loss.png", "fid_vs_n.png"} <= names
    assert {"grids/baseline-seed0.png", "grids/res_link-seed0.png"} <= names
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert link in names


def test_empty_study_renders(tmp_path: Path) -> None:
    spec = preset("report-table1")
    pending = [MemberResult(m.variant, m.seed, None, "pending") for m in spec.members()]
    report = build_report(spec, pending, "test")
    assert "nothing to rank" in report.markdown() and len(report.table()) == 10
    assert report.html().count("data:image/png;base64,") == 2  # the two figures say there is nothing yet
    # CIFAR-10: the report's own Table 1 figure beside each variant that has one
    rows = {row["variant"]: row for row in report.table()}
    assert rows["biggan"]["report_fid"] == 53.096 and rows["pure_unet"]["report_fid"] is None
    assert "report FID (N=4096)" in report.markdown()
