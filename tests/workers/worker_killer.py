"""Test-only: training jobs whose run id starts with KILLER_RUN_PREFIX kill their own pool process.

The reliability tests start their workers with `ddpm worker -- --include tests.workers.worker_killer`,
so this module is imported in the worker before its pool forks; no deployed worker imports it, and
nothing in the API can make one do so. A run that dies like this on every attempt plays a job that
runs out of memory each time it starts: SIGKILL, no exception, no cleanup.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from workers import tasks
from workers.progress import JobReporter

KILLER_RUN_PREFIX = "kills-its-worker"
KILL_AT_STEP = 2  # a few real training steps first: the job dies mid-run, not before it starts

_run_training = tasks.run_training


class _DyingReporter:
    """The job's reporter, except that the process dies once training reports KILL_AT_STEP."""

    def __init__(self, report: JobReporter) -> None:
        self._report = report

    def __call__(self, force: bool = False, **fields: Any) -> None:
        self._report(force=force, **fields)
        if (fields.get("step") or 0) >= KILL_AT_STEP:
            os.kill(os.getpid(), signal.SIGKILL)

    def __getattr__(self, name: str) -> Any:  # cancel_requested and the rest
        return getattr(self._report, name)


def run_training_or_die(job: dict[str, Any], report: JobReporter) -> tasks.Outcome:
    if job["params"]["run_id"].startswith(KILLER_RUN_PREFIX):
        report = _DyingReporter(report)  # type: ignore[assignment]
    return _run_training(job, report)


tasks.run_training = run_training_or_die  # train_task looks the handler up at each call
