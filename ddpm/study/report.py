"""A study's report: self-contained HTML, Markdown with its PNG figures (a zip), the table as CSV.

Torch-free (the API builds it from stored results). Works on partial results: a member still training
or evaluating is a row that says so, and the figures draw whatever exists.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ddpm.study import figures
from ddpm.study.ranking import Ranking, rank
from ddpm.study.results import LOSS_SMOOTHING, MemberResult
from ddpm.study.spec import StudySpec

PACKAGE = "ddpm-arch-bench"
REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT_N = 4096  # the report's Table 1 used 4096 samples on CIFAR-10
# Per N, the columns of the table (CSV and JSON); FID's interval is the record's bootstrap.
METRIC_COLUMNS = (
    "fid",
    "fid_low",
    "fid_high",
    "fid_inf",
    "fid_inf_se",
    "kid",
    "kid_std",
    "precision",
    "recall",
    "inception_score",
)


def code_version() -> str:
    """`git describe --always --dirty` of the checkout this runs from, else the installed package version."""
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode == 0 and done.stdout.strip():
            return f"git {done.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"{PACKAGE} {version(PACKAGE)}"
    except PackageNotFoundError:
        return "unknown"


def _metric_values(result: MemberResult, n: int) -> dict[str, float | None]:
    row = result.scores().get(n)
    values: dict[str, float | None] = dict.fromkeys(METRIC_COLUMNS)
    if row is None:
        return values
    values["fid"] = row.fid
    if row.fid_interval:
        values["fid_low"], values["fid_high"] = row.fid_interval.low, row.fid_interval.high
    if row.fid_inf:
        values["fid_inf"], values["fid_inf_se"] = row.fid_inf.value, row.fid_inf.se
    if row.kid:
        values["kid"], values["kid_std"] = row.kid.mean, row.kid.std
    if row.precision_recall:
        values["precision"], values["recall"] = row.precision_recall.precision, row.precision_recall.recall
    if row.inception_score:
        values["inception_score"] = row.inception_score.mean
    return values


@dataclass
class StudyReport:
    spec: StudySpec
    results: list[MemberResult]
    code_version: str
    created: float = field(default_factory=time.time)

    # --- what the report says -------------------------------------------------------------------

    @property
    def counts(self) -> list[int]:
        return list(self.spec.evaluation.fid_n)

    @cached_property
    def ranking(self) -> Ranking:
        return rank(self.results, max(self.counts))

    @property
    def cifar(self) -> bool:
        """The report's own figures are CIFAR-10 FIDs: shown only beside CIFAR-10 studies."""
        return self.spec.train["dataset"] == "cifar10" and self.spec.reference_dataset() == "cifar10"

    def report_fid(self, variant: str) -> float | None:
        from models import get_arch

        return get_arch(variant).report_fid if self.cifar else None

    def table(self) -> list[dict[str, Any]]:
        """One JSON-able row per member, in the spec's order; metric keys are `<metric>_<N>`."""
        from models import get_arch

        rows = []
        for result in self.results:
            row: dict[str, Any] = {
                "member": result.key,
                "variant": result.variant,
                "report_name": get_arch(result.variant).report_name,
                "seed": result.seed,
                "run_id": result.run_id,
                "state": result.state,
                "parameters": result.parameters,
                "train_seconds": None if result.train_seconds is None else round(result.train_seconds, 3),
                "steps": result.losses[-1][0] if result.losses else None,
                "final_loss_smoothed": result.final_loss(),
                "report_fid": self.report_fid(result.variant),
                "tier": self.ranking.tier_of(result.variant),
                "fid_result_id": (result.fid_record or {}).get("id"),
                "error": result.error,
            }
            for n in self.counts:
                row.update({f"{key}_{n}": value for key, value in _metric_values(result, n).items()})
            rows.append(row)
        return rows

    def notes(self) -> list[str]:
        """Every distinct warning of the FID records (small N, size mismatches) and the study's caveats."""
        notes: list[str] = []
        if min(self.counts) < 2048:
            notes.append(
                f"N as small as {min(self.counts)} is far below Inception's 2048 feature dimensions: these FIDs "
                "are biased upward and comparable only with each other at equal N (not with the report's "
                f"N={REPORT_N} CIFAR-10 figures, nor across N)."
            )
        if len(self.spec.seeds) == 1:
            notes.append(
                "One training seed: each interval covers the FID's sampling noise only (bootstrap over the "
                "sample set), not how another training run would come out. Add seeds for that."
            )
        for result in self.results:
            for warning in (result.fid_record or {}).get("warnings") or []:
                if warning not in notes:
                    notes.append(str(warning))
        return notes

    def recipe(self) -> dict[str, Any]:
        references = sorted({str(r.fid_record.get("reference")) for r in self.results if r.fid_record})
        devices = sorted({str(r.fid_record.get("device")) for r in self.results if r.fid_record})
        return {
            "code_version": self.code_version,
            "spec": self.spec.to_dict(),
            "sampler": self.spec.evaluation.sampler_spec().describe(),
            "fid_reference": references,
            "devices": devices,
            "rerun_cli": "ddpm study spec.json --local   (or without --local: through the service)",
            "rerun_http": "curl -X POST http://127.0.0.1:8000/studies -H 'Content-Type: application/json' "
            "-d @spec.json",
        }

    # --- figures ----------------------------------------------------------------------------------

    @cached_property
    def figures(self) -> dict[str, bytes]:
        """name -> PNG: loss.png (figure 10), fid_vs_n.png (figure 9), grids/<member>.png."""
        report_fids = {}
        if self.cifar:
            report_fids = {
                r.variant: (REPORT_N, fid)
                for r in self.results
                if (fid := self.report_fid(r.variant)) is not None
            }
        out = {
            "loss.png": figures.loss_png(self.results),
            "fid_vs_n.png": figures.fid_png(self.results, report_fids),
        }
        for result in self.results:
            if result.grid_png is not None and Path(result.grid_png).is_file():
                out[f"grids/{grid_file_name(result.key)}.png"] = Path(result.grid_png).read_bytes()
        return out

    # --- formats --------------------------------------------------------------------------------

    def csv(self) -> str:
        rows = self.table()
        buffer = io.StringIO()
        columns = list(rows[0]) if rows else ["member"]
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return buffer.getvalue()

    def markdown(self, image: Any = None) -> str:
        """The report as Markdown; `image(name)` gives each figure's link (default: the zip's file name)."""
        link = image or (lambda name: name)
        spec, evaluation = self.spec, self.spec.evaluation
        lines = [
            f"# Study: {spec.name}",
            "",
            f"{len(spec.variants)} variants x {len(spec.seeds)} seed(s), trained on {spec.train['dataset']}, "
            f"sampled with {evaluation.sampler_spec().describe()}, FID against {spec.reference_dataset()} at "
            f"N = {', '.join(map(str, self.counts))}. Code: {self.code_version}. Generated "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(self.created))}.",
            "",
            "## Table",
            "",
            *self._summary_markdown(),
            "",
            "## Ranking",
            "",
            *self.ranking.lines(),
            "",
            "## Every metric at every N",
            "",
            *self._metrics_markdown(),
            "",
            "## Notes",
            "",
            *[f"{i}. {note}" for i, note in enumerate(self.notes(), 1)],
            "",
            f"## Samples: seed {evaluation.grid_seed}, {evaluation.grid_n} images per member",
            "",
        ]
        for result in self.results:
            name = f"grids/{grid_file_name(result.key)}.png"
            if name in self.figures:
                lines.append(f"![{result.key}]({link(name)})")  # consecutive images sit side by side
            else:
                lines += [f"**{result.key}**: no grid yet ({result.state})", ""]
        lines += [
            "",
            "## Training loss (figure 10)",
            "",
            f"![training loss]({link('loss.png')})",
            "",
            "## FID against N (figure 9)",
            "",
            f"![FID against N]({link('fid_vs_n.png')})",
            "",
            "## Recipe",
            "",
            "Everything needed to run this study again (save the spec as spec.json):",
            "",
            "```json",
            json.dumps(self.recipe(), indent=2),
            "```",
            "",
        ]
        return "\n".join(lines)

    def markdown_zip(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("report.md", self.markdown())
            archive.writestr("table.csv", self.csv())
            archive.writestr("spec.json", json.dumps(self.spec.to_dict(), indent=2))
            for name, png in self.figures.items():
                archive.writestr(name, png)
        return buffer.getvalue()

    def html(self) -> str:
        """One file, no network: the Markdown's content as HTML with every image as a data: URI."""
        uris = {
            name: "data:image/png;base64," + base64.b64encode(png).decode()
            for name, png in self.figures.items()
        }
        body = _markdown_to_html(self.markdown(lambda name: uris[name]))
        return (
            "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>Study: {html.escape(self.spec.name)}</title><style>{STYLE}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n"
        )

    # --- tables -----------------------------------------------------------------------------------

    def _summary_markdown(self) -> list[str]:
        top = max(self.counts)
        header = [
            "member",
            "report name",
            "state",
            "parameters",
            "train time",
            f"loss (EMA {LOSS_SMOOTHING:g})",
        ]
        header += [f"FID N={n}" for n in self.counts] + ["tier"]
        if self.cifar:
            header.append(f"report FID (N={REPORT_N})")
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.table():
            cells = [
                row["member"],
                row["report_name"],
                row["state"] + (f": {row['error']}" if row["error"] else ""),
                "" if row["parameters"] is None else f"{row['parameters']:,}",
                _duration(row["train_seconds"]),
                _number(row["final_loss_smoothed"], ".4f"),
            ]
            for n in self.counts:
                fid = _number(row[f"fid_{n}"])
                if row[f"fid_low_{n}"] is not None:
                    fid += f" [{row[f'fid_low_{n}']:.2f}, {row[f'fid_high_{n}']:.2f}]"
                cells.append(fid)
            cells.append("" if row["tier"] is None else str(row["tier"]))
            if self.cifar:
                cells.append(_number(row["report_fid"], ".3f"))
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines += ["", f"FID intervals: bootstrap 95% over the sample set; tiers at N={top} (see Ranking)."]
        return lines

    def _metrics_markdown(self) -> list[str]:
        header = ["member", "N", "FID [95%]", "FID-inf ± se", "KID x 10^3 ± std", "precision", "recall", "IS"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for result in self.results:
            for n in self.counts:
                v = _metric_values(result, n)
                if v["fid"] is None:
                    continue
                fid = _number(v["fid"]) + (
                    "" if v["fid_low"] is None else f" [{v['fid_low']:.2f}, {v['fid_high']:.2f}]"
                )
                inf = _number(v["fid_inf"]) + ("" if v["fid_inf_se"] is None else f" ± {v['fid_inf_se']:.2f}")
                kid = "" if v["kid"] is None else f"{v['kid'] * 1e3:.2f} ± {v['kid_std'] * 1e3:.2f}"
                cells = [
                    result.key,
                    n,
                    fid,
                    inf,
                    kid,
                    _number(v["precision"], ".3f"),
                    _number(v["recall"], ".3f"),
                ]
                cells.append(_number(v["inception_score"]))
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        if len(lines) == 2:
            lines.append("| (no FID yet) |" + " |" * (len(header) - 1))
        return lines


def build_report(spec: StudySpec, results: list[MemberResult], code_version: str) -> StudyReport:
    return StudyReport(spec, list(results), code_version)


def grid_file_name(key: str) -> str:
    """A member's grid file name without suffix: "anti_aliasing+biggan@0" -> "anti_aliasing.biggan-seed0"."""
    return key.replace("+", ".").replace("@", "-seed")


def _number(value: float | None, spec: str = ".2f") -> str:
    return "" if value is None else format(value, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
figure.grid { display: inline-block; margin: 0.5em; vertical-align: top; }
img { max-width: 100%; image-rendering: pixelated; }
figure.grid img[alt*='@'] { min-width: 320px; }  /* member grids (alt "variant@seed"): small images enlarged */
"""


def _markdown_to_html(text: str) -> str:
    """The small Markdown subset markdown() writes: headings, tables, lists, code blocks, images, bold."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = lines.index("```", i + 1)
            out.append("<pre>" + html.escape("\n".join(lines[i + 1 : end])) + "</pre>")
            i = end + 1
            continue
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            out.append(_table_html(rows))
            continue
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            out.append(
                f"<figure class='grid'><img src='{src[:-1]}' alt='{html.escape(alt)}'>"
                f"<figcaption>{html.escape(alt)}</figcaption></figure>"
            )
        elif line.startswith("**") and line.count("**") >= 2:
            name, rest = line[2:].split("**", 1)
            out.append(f"<p><strong>{html.escape(name)}</strong>{html.escape(rest)}</p>")
        elif line.lstrip().startswith("- ") or line[:1].isdigit() and ". " in line[:4]:
            indent = "margin-left: 2em;" if line.startswith("  ") else ""
            out.append(f"<div style='{indent}'>{html.escape(line.strip())}</div>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
        i += 1
    return "\n".join(out)


def _table_html(rows: list[str]) -> str:
    def cells(row: str) -> list[str]:
        parts = row.strip().strip("|").split(" | ")
        return [html.escape(part.strip().replace("\\|", "|")) for part in parts]

    head = "".join(f"<th>{c}</th>" for c in cells(rows[0]))
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(row)) + "</tr>" for row in rows[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
