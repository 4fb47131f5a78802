"""Samplers against each other on ONE checkpoint: FID with its interval, KID and time, same seed and N.

    python -m ddpm.fid.sampler_study run --checkpoint PATH [--n 512] [--seed 0] [--samplers ddim:50,ddpm]
        [--part I/K]
    python -m ddpm.fid.sampler_study table --checkpoint PATH [--n 512] [--seed 0] [--samplers ...]

`run` evaluates each sampler in the order given, stores each result in the FID results table (so GET
/fid shows them too) and the load average around it in DATA_DIR/fid/studies/loads/; a sampler already
stored for this checkpoint, N, seed and metric options is skipped, so an interrupted study resumes where
it stopped, and K processes with `--part 1/K` ... `--part K/K` share one list. `table` prints the
Markdown table of docs/performance.md ("Samplers") from what is stored, and what it says: whether
DDPM-1000 beats DDIM-50 (the issue's criterion) and which samplers' intervals overlap, since
overlapping intervals are not ranked. scripts/sampler_study.sh makes the weights and the reference
ready, then runs both. Torch is imported only by `run`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddpm.errors import DdpmError, InvalidOption
from ddpm.fid.options import MetricOptions
from ddpm.fid.results import list_results, record_scores, save_result
from ddpm.sampler_cli import parse_sampler_list
from ddpm.sampler_spec import SamplerSpec
from ddpm.settings import data_dir as default_data_dir
from ddpm.settings import fid_dir
from ddpm.storage import atomic_write_json, read_json

# Run order: the criterion (DDPM-1000 against DDIM-50) first, so a study cut short still
# answers it; then the fast samplers at their usual settings, then the rest of each sweep.
DEFAULT_SAMPLERS = (
    "ddim:50,ddpm,dpmpp_2m:20,heun:18,ddim:10,ddim:20,ddim:100,dpmpp_2m:10,dpmpp_2m:15,dpmpp_2m:30,heun:10"
)
DEFAULT_METRICS = ("fid", "fid_interval", "kid")  # the cheap ones; FID-infinity and P/R add little here
DEFAULT_BOOTSTRAP = 100  # replicates of the FID interval: its se is then good to about 7%
FAMILY_ORDER = ("ddpm", "ddim", "dpmpp_2m", "heun")  # the table's row order, NFE ascending within


@dataclass(frozen=True)
class StudyRow:
    """One sampler's stored result at the study's N, with the load average around its evaluation."""

    spec: SamplerSpec
    record: Mapping[str, Any]
    fid: float
    low: float | None  # the FID interval's bounds (None when the record has no interval)
    high: float | None
    kid: float | None
    kid_std: float | None
    load: tuple[float, float] | None  # 1-minute load average before and after

    @property
    def label(self) -> str:
        """'DDIM 50'; options away from the sampler's defaults follow ('DDPM 1000 (clip_x0 True)'), so
        rows of one sampler and step count stay apart."""
        changed = changed_options(self.spec)
        extra = f" ({', '.join(f'{k} {v}' for k, v in changed.items())})" if changed else ""
        return f"{self.name} {self.spec.steps}{extra}"

    @property
    def name(self) -> str:
        names = {"ddpm": "DDPM", "ddim": "DDIM", "dpmpp_2m": "DPM-Solver++(2M)", "heun": "Heun (Karras)"}
        return names.get(self.spec.sampler, self.spec.sampler)


def changed_options(spec: SamplerSpec) -> dict[str, Any]:
    """The options of `spec` that differ from its sampler's defaults at the same steps."""
    defaults = SamplerSpec(spec.sampler, spec.steps).options()
    return {k: v for k, v in spec.options().items() if defaults.get(k) != v}


def loads_dir(root: Path) -> Path:
    """The load averages around each evaluation: one small file per result id, so several study
    processes (scripts/sampler_study.sh's JOBS) never write the same file."""
    return fid_dir(root) / "studies" / "loads"


def read_loads(root: Path) -> dict[str, list[float]]:
    folder = loads_dir(root)
    return {p.stem: read_json(p) for p in folder.glob("[!.]*.json")} if folder.is_dir() else {}


def metric_options(bootstrap: int = DEFAULT_BOOTSTRAP, kid_subsets: int = 100) -> MetricOptions:
    return MetricOptions(metrics=DEFAULT_METRICS, bootstrap=bootstrap, kid_subsets=kid_subsets)


def find_stored(
    records: Sequence[Mapping[str, Any]],
    checkpoint: Path,
    spec: SamplerSpec,
    n: int,
    seed: int,
    options: MetricOptions,
) -> Mapping[str, Any] | None:
    """The newest record of exactly this evaluation (records newest first, as list_results gives them)."""
    for record in records:
        if (
            record.get("checkpoint") == str(checkpoint)
            and record.get("seed") == seed
            and record.get("n_samples") == [n]
            and record.get("sampler_spec") == spec.to_params()
            and record.get("metric_options") == options.to_params()
        ):
            return record
    return None


def study_rows(
    records: Sequence[Mapping[str, Any]],
    checkpoint: Path,
    specs: Sequence[SamplerSpec],
    n: int,
    seed: int,
    options: MetricOptions,
    loads: Mapping[str, Sequence[float]],
) -> tuple[list[StudyRow], list[SamplerSpec]]:
    """(rows found, in the table's order; specs with no stored result yet)."""
    rows, missing = [], []
    for spec in specs:
        record = find_stored(records, checkpoint, spec, n, seed, options)
        if record is None:
            missing.append(spec)
            continue
        (score,) = [s for s in record_scores(record) if s.n == n]
        interval, kid = score.fid_interval, score.kid
        load = loads.get(str(record.get("id")))
        rows.append(
            StudyRow(
                spec=spec,
                record=record,
                fid=score.fid,
                low=interval.low if interval else None,
                high=interval.high if interval else None,
                kid=kid.mean if kid else None,
                kid_std=kid.std if kid else None,
                load=None if load is None else (float(load[0]), float(load[1])),
            )
        )
    rows.sort(key=lambda r: (FAMILY_ORDER.index(r.spec.sampler), r.spec.nfe, r.spec.steps))
    return rows, missing


def overlap(a: StudyRow, b: StudyRow) -> bool | None:
    """Whether the two FID intervals overlap; None when either has none."""
    if a.low is None or a.high is None or b.low is None or b.high is None:
        return None
    return a.low <= b.high and b.low <= a.high


def compare(a: StudyRow, b: StudyRow) -> str:
    """How `a` stands against `b`: lower (better) or higher FID, and whether that is resolved."""
    side = "lower" if a.fid < b.fid else "higher"
    overlapping = overlap(a, b)
    if overlapping is None:
        return f"{a.label} has a {side} FID than {b.label} ({a.fid:.2f} against {b.fid:.2f}; no intervals)"
    verdict = "not ranked: the intervals overlap" if overlapping else "the intervals are disjoint"
    word = {("lower", False): "beats", ("higher", False): "is worse than"}.get((side, overlapping))
    head = f"{a.label} {word} {b.label}" if word else f"{a.label} has a {side} FID than {b.label}"
    return f"{head} ({a.fid:.2f} [{a.low:.2f}, {a.high:.2f}] against {b.fid:.2f} [{b.low:.2f}, {b.high:.2f}]; {verdict})"


def findings(rows: Sequence[StudyRow]) -> list[str]:
    """What the table says: the criterion, the best row and who ties with it, DDPM-1000's equals."""
    # The criterion's rows are the samplers at their defaults: DDPM-1000 is the report's (beta_t, no clip).
    by_key = {(r.spec.sampler, r.spec.steps): r for r in rows if not changed_options(r.spec)}
    lines = []
    ddpm, ddim50 = by_key.get(("ddpm", 1000)), by_key.get(("ddim", 50))
    if ddpm and ddim50:
        lines.append("Criterion: " + compare(ddpm, ddim50) + ".")
    if rows:
        best = min(rows, key=lambda r: r.fid)
        ties = [r.label for r in rows if r is not best and overlap(r, best)]
        lines.append(
            f"Lowest FID: {best.label} ({best.spec.nfe} network calls); intervals overlapping it: "
            + (", ".join(ties) if ties else "none")
            + "."
        )
    if ddpm:
        equal = [r.label for r in rows if r is not ddpm and overlap(r, ddpm)]
        better = [r.label for r in rows if r is not ddpm and overlap(r, ddpm) is False and r.fid < ddpm.fid]
        lines.append(
            "Within DDPM-1000's interval: "
            + (", ".join(equal) if equal else "none")
            + "; below it (disjoint): "
            + (", ".join(better) if better else "none")
            + "."
        )
    return lines


def markdown(rows: Sequence[StudyRow]) -> str:
    header = (
        "| sampler | steps | network calls | FID (95% interval) | KID x 10^3 (± std) | sampling (s) "
        "| features (s) | whole evaluation (s) | load (1 min, before -> after) |"
    )
    lines = [header, "|---|---:|---:|---|---|---:|---:|---:|---|"]
    for row in rows:
        timings = row.record.get("timings") or {}
        fid = f"{row.fid:.2f}" + ("" if row.low is None else f" ({row.low:.2f} to {row.high:.2f})")
        kid = "-" if row.kid is None else f"{row.kid * 1e3:.2f} ± {row.kid_std * 1e3:.2f}"
        load = "-" if row.load is None else f"{row.load[0]:.1f} -> {row.load[1]:.1f}"
        options = {k: v for k, v in row.spec.options().items() if k != "clip_x0" or v}
        extra = "" if not options else " (" + ", ".join(f"{k} {v}" for k, v in options.items()) + ")"
        lines.append(
            f"| {row.name}{extra} | {row.spec.steps} | {row.spec.nfe} | {fid} | {kid} "
            f"| {timings.get('sampling', float('nan')):.0f} | {timings.get('features', float('nan')):.0f} "
            f"| {timings.get('total', float('nan')):.0f} | {load} |"
        )
    return "\n".join(lines)


def describe_checkpoint(rows: Sequence[StudyRow]) -> str:
    if not rows:
        return "no stored results"
    record = rows[0].record
    return (
        f"{record.get('arch')} run {record.get('run_id')}, step {record.get('step')} "
        f"({record.get('weights')} weights), {record.get('checkpoint')}; {record.get('dataset')} reference: "
        f"{record.get('reference')}"
    )


def run(
    root: Path,
    checkpoint: Path,
    specs: Sequence[SamplerSpec],
    n: int,
    seed: int,
    options: MetricOptions,
    batch_size: int = 128,
    dataset: str | None = None,
) -> None:
    """Evaluate and store each spec not stored yet, in order; dataset: the checkpoint's own by default."""
    from ddpm.checkpoints import read_meta
    from ddpm.fid.evaluate import check_options, evaluate_checkpoint

    for spec in specs:  # every sampler's options and N checked before the first evaluation
        check_options([n], spec, batch_size=batch_size)
    dataset = dataset or read_meta(checkpoint).get("train_config", {}).get("dataset", "cifar10")
    for spec in specs:
        stored = find_stored(list_results(root), checkpoint, spec, n, seed, options)
        if stored is not None:
            print(f"{spec.describe()}: stored as result {stored.get('id')}, skipped", flush=True)
            continue
        before = os.getloadavg()[0]
        started = time.perf_counter()
        result = evaluate_checkpoint(
            checkpoint,
            [n],
            seed,
            spec,
            dataset=dataset,
            data_dir=root,
            batch_size=batch_size,
            metrics=options,
        )
        record = result.to_record()
        record_id = save_result(root, record)
        atomic_write_json(loads_dir(root) / f"{record_id}.json", [before, os.getloadavg()[0]])
        print(
            f"{spec.describe()}: FID {result.fid[n]:.2f} in {time.perf_counter() - started:.0f} s "
            f"(sampling {result.timings['sampling']:.0f} s), result {record_id}",
            flush=True,
        )


def table(
    root: Path, checkpoint: Path, specs: Sequence[SamplerSpec], n: int, seed: int, options: MetricOptions
) -> str:
    rows, missing = study_rows(list_results(root), checkpoint, specs, n, seed, options, read_loads(root))
    parts = [f"N={n}, seed {seed}; {describe_checkpoint(rows)}", "", markdown(rows), ""]
    parts += findings(rows)
    if missing:
        parts.append("Not measured yet: " + ", ".join(s.describe() for s in missing) + ".")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddpm.fid.sampler_study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=["run", "table"])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint file (one, fixed)")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--samplers",
        default=DEFAULT_SAMPLERS,
        help="name[:steps][:option=value...], comma-separated, run order (e.g. dpmpp_2m:20:clip_x0=true)",
    )
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP)
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--part",
        default="1/1",
        help="run only every K-th sampler from the I-th (I/K): K processes share a list",
    )
    parser.add_argument("--dataset", help="reference data set (default: the checkpoint's own)")
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except DdpmError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    root = default_data_dir(args.data_dir)
    checkpoint = args.checkpoint.expanduser().resolve()
    specs = parse_sampler_list(args.samplers)
    options = metric_options(args.bootstrap, args.kid_subsets)
    if args.command == "run":
        index, count = _part(args.part)
        run(root, checkpoint, specs[index::count], args.n, args.seed, options, args.batch_size, args.dataset)
    else:
        print(table(root, checkpoint, specs, args.n, args.seed, options))
    return 0


def _part(text: str) -> tuple[int, int]:
    """'I/K' -> (I - 1, K), checked."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise InvalidOption(f"--part takes I/K with 1 <= I <= K, e.g. 2/3; got {text!r}")
    return int(index) - 1, int(count)


if __name__ == "__main__":
    raise SystemExit(main())
