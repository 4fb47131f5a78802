"""A whole study in one process, no Redis: train each member, sample its grid, score it, write the report.

Runs go under DATA_DIR/runs and FID results under DATA_DIR/fid/results exactly as the service's jobs
write them (the same Trainer, sample_checkpoint and evaluate_checkpoint, with the study's parameters),
so `ddpm runs`, `ddpm fid` and the service's pages see them. The study's own files go to `out`:
spec.json, results.json (after every member), grids/, report.html, report.zip, table.csv.

Run again with the same `out` and spec, it picks up where it stopped: finished members are kept, a run
that was interrupted resumes from its latest checkpoint, and a member that failed is tried again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddpm.errors import DdpmError, InvalidOption
from ddpm.runs import SUCCEEDED, RunDir, new_run_id
from ddpm.storage import atomic_write_bytes, atomic_write_json
from ddpm.study.report import StudyReport, build_report, code_version, grid_file_name
from ddpm.study.results import DONE, FAILED, MemberResult, final_checkpoint, member_from_run
from ddpm.study.spec import Member, StudySpec
from models.config import ConfigError

REPORT_FILES = ("report.html", "report.zip", "table.csv")


@dataclass
class _Bar:
    """One tqdm bar per member: its training steps, then each evaluation phase on the same line."""

    key: str
    position: int
    enabled: bool
    bar: Any = None
    phase: str = ""

    def show(self, phase: str, done: int, total: int, **postfix: Any) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.key, file=sys.stderr, dynamic_ncols=True, leave=True)
        if (phase, total) != (self.phase, self.bar.total):
            self.phase = phase
            self.bar.reset(total=total)
            self.bar.set_description(f"{self.key} {phase}", refresh=False)
        self.bar.n = done
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.refresh()

    def close(self, note: str) -> None:
        if self.bar is not None:
            self.bar.set_description(f"{self.key} {note}", refresh=False)
            self.bar.close()


class LocalStudy:
    def __init__(
        self,
        spec: StudySpec,
        data_dir: Path,
        out: Path,
        device: str = "auto",
        progress: bool = True,
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    ) -> None:
        spec.validate()
        self.spec, self.data_dir, self.out, self.device = spec, Path(data_dir), Path(out), device
        self.progress, self.log = progress, log
        self.version = code_version()

    @property
    def results_path(self) -> Path:
        return self.out / "results.json"

    def run(self) -> StudyReport:
        """Every member in order; a member that fails is recorded as failed and the others still run."""
        self.out.mkdir(parents=True, exist_ok=True)
        results = self._previous()
        atomic_write_json(self.out / "spec.json", self.spec.to_dict())
        for index, member in enumerate(self.spec.members()):
            if results[member.key].state == DONE:
                continue
            results[member.key] = self._member(member, index, results[member.key].run_id)
            self._write(results)
        return self._write(results)

    def _previous(self) -> dict[str, MemberResult]:
        """What an earlier run into the same folder finished, when it ran this same spec."""
        fresh = {
            m.key: MemberResult(m.variant, m.seed, self.spec.attach.get(m.key), "pending")
            for m in self.spec.members()
        }
        try:
            stored = json.loads(self.results_path.read_text())
        except FileNotFoundError:
            return fresh
        if stored.get("spec") != self.spec.to_dict():
            raise InvalidOption(
                f"{self.out} holds another study ({self.results_path.name} has a different spec); "
                "choose another --out folder"
            )
        for data in stored.get("members", []):
            result = MemberResult.from_dict(data)
            if result.key in fresh:
                fresh[result.key] = result
        return fresh

    def _write(self, results: dict[str, MemberResult]) -> StudyReport:
        members = [results[m.key] for m in self.spec.members()]
        atomic_write_json(
            self.results_path, {"spec": self.spec.to_dict(), "members": [m.to_dict() for m in members]}
        )
        report = build_report(self.spec, members, self.version)
        atomic_write_bytes(self.out / "report.html", report.html().encode())
        atomic_write_bytes(self.out / "report.zip", report.markdown_zip())
        atomic_write_bytes(self.out / "table.csv", report.csv().encode())
        return report

    def _member(self, member: Member, index: int, run_id: str | None) -> MemberResult:
        bar = _Bar(member.key, index, self.progress)
        run_id = self.spec.attach.get(member.key) or run_id or new_run_id(member.variant)
        try:
            run = self._train(member, run_id, bar)
            checkpoint = final_checkpoint(run.path)
            if checkpoint is None:
                raise InvalidOption(f"run {run.run_id} has no kept checkpoint to sample")
            grid = self._grid(member, checkpoint, bar)
            record = self._fid(checkpoint, bar)
        except (DdpmError, ConfigError) as err:
            bar.close("failed")
            self.log(f"{member.key}: failed: {err}")
            failed = MemberResult(member.variant, member.seed, run_id, FAILED, error=str(err))
            if RunDir.of(self.data_dir, run_id).exists():
                failed = member_from_run(
                    RunDir.of(self.data_dir, run_id).path, member.variant, member.seed, state=FAILED
                )
                failed.error = str(err)
            return failed
        bar.close("done")
        return member_from_run(run.path, member.variant, member.seed, grid_png=grid, fid_record=record)

    def _train(self, member: Member, run_id: str, bar: _Bar) -> RunDir:
        """The member's run: attached as given, reused when finished, resumed when interrupted, else new."""
        from ddpm.training import TrainConfig, TrainHooks, train

        if member.key in self.spec.attach:
            run = RunDir.of(self.data_dir, self.spec.attach[member.key])
            if not run.exists() or run.read().get("status") != SUCCEEDED:
                raise InvalidOption(
                    f"attached run {run.run_id!r} is not a finished run under {self.data_dir / 'runs'}"
                )
            return run
        run = RunDir.of(self.data_dir, run_id)
        if run.exists() and run.read().get("status") == SUCCEEDED:
            return run
        config = TrainConfig(**self.spec.train_config(member))

        def show(progress: Any) -> None:
            bar.show("train", progress.step, progress.total_steps, loss=f"{progress.loss:.4f}")

        self._note_run(member, run_id)
        result = train(
            config, self.data_dir, run_id=run_id, device=self.device, hooks=TrainHooks(on_progress=[show])
        )
        if result.status != SUCCEEDED:
            raise InvalidOption(f"run {run_id} ended {result.status} at step {result.step}")
        return run

    def _note_run(self, member: Member, run_id: str) -> None:
        """Record the run id before training starts, so an interrupted study resumes this run."""
        try:
            stored = json.loads(self.results_path.read_text())
        except FileNotFoundError:
            stored = {"spec": self.spec.to_dict(), "members": []}
        members = [m for m in stored["members"] if MemberResult.from_dict(m).key != member.key]
        members.append(MemberResult(member.variant, member.seed, run_id, "training").to_dict())
        atomic_write_json(self.results_path, {**stored, "members": members})

    def _grid(self, member: Member, checkpoint: Path, bar: _Bar) -> Path:
        from ddpm.sampling import sample_checkpoint, write_grid

        evaluation = self.spec.evaluation
        images, _ = sample_checkpoint(
            checkpoint,
            evaluation.grid_n,
            evaluation.grid_seed,
            evaluation.sampler_spec(),
            device=self.device,
            batch_size=evaluation.batch_size,
            progress=lambda done, total: bar.show("grid", done, total),
        )
        path = self.out / "grids" / f"{grid_file_name(member.key)}.png"
        write_grid(path, images, evaluation.grid_nrow)
        return path

    def _fid(self, checkpoint: Path, bar: _Bar) -> dict[str, Any]:
        """The evaluator with the study's options, stored in the FID results table like POST /fid's."""
        from ddpm.fid.evaluate import evaluate_checkpoint
        from ddpm.fid.results import save_result

        evaluation = self.spec.evaluation
        result = evaluate_checkpoint(
            checkpoint,
            list(evaluation.fid_n),
            evaluation.fid_seed,
            evaluation.sampler_spec(),
            dataset=self.spec.reference_dataset(),
            data_dir=self.data_dir,
            device=self.device,
            batch_size=evaluation.batch_size,
            progress=lambda phase, done, total: bar.show(f"fid {phase}", done, total),
            metrics=evaluation.metric_options(),
        )
        record = result.to_record()
        record["id"] = save_result(self.data_dir, record)
        return record


def run_local(
    spec: StudySpec, data_dir: Path, out: Path, device: str = "auto", progress: bool = True
) -> StudyReport:
    """Run `spec` here and write its report files into `out`; returns the report."""
    return LocalStudy(spec, data_dir, out, device, progress).run()
