"""An FID job's progress: one fraction over all its phases in proportion to their expected cost, and a
message naming the phase with its counts.

The evaluator hands over its plan (ddpm.fid.work_plan: each phase's units and cost) before the first
phase starts; each progress(phase, done, total) then places `done` inside that phase's share. The
fraction never goes back (an estimate can be off; a bar that moves backwards is worse), and the ETA is
the job's, from the fraction done so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ddpm.fid.work_plan import PhasePlan, WorkPlan

# Below this fraction done, an ETA from it is mostly noise (start-up, a cached reference).
MIN_FRACTION_FOR_ETA = 0.02


def phase_message(phase: str, done: int, total: int, planned: PhasePlan | None, dataset: str) -> str:
    """'sampling 256/1024 images', 'Inception features 512/1024', 'reference statistics 900/1797 digits'."""
    if phase == "sampling":
        images = planned.images if planned else 0
        if images and total:
            return f"sampling {images * done // total}/{images} images ({done}/{total} network calls)"
        return f"sampling: {done}/{total} network calls"
    if phase == "features":
        return f"Inception features {done}/{total} images"
    if phase in ("reference", "reference_features"):
        what = "reference statistics" if phase == "reference" else "reference feature set"
        unit = "digits" if dataset == "digits" else "images"
        if planned is not None and planned.images == 0:
            return f"{what}: cached ({total} {unit})" if total > 1 else f"{what}: cached"
        return f"{what} {done}/{total} {unit}"
    if phase == "scoring":
        steps = planned.steps if planned else ()
        if len(steps) == total and done < total:
            return f"distances and metrics {done}/{total}: {steps[done][0]}"
        return f"distances and metrics {done}/{total}"
    if phase == "throughput":
        return "measuring this machine's matmul rate for the phases' throughput"
    return f"{phase}: {done}/{total}"


class FidProgress:
    """Turns the evaluator's (phase, done, total) into the job record's progress, message and ETA."""

    def __init__(self, dataset: str, clock: Callable[[], float] = time.monotonic, start: float = 0.0) -> None:
        """`start`: the share already shown before the plan's phases (the wait on a reference
        statistics job); the phases fill the rest, so the bar never goes back."""
        self.dataset = dataset
        self.clock = clock
        self.started = clock()
        self.plan: WorkPlan | None = None
        self.start = start
        self.fraction = start

    def set_plan(self, plan: WorkPlan) -> None:
        self.plan = plan

    def _within(self, planned: PhasePlan, done: int, total: int) -> float:
        """The cost of the part of `planned` that is done."""
        if planned.steps and total == len(planned.steps):  # scoring: each step by its own cost
            return sum(cost for _, cost in planned.steps[:done])
        return planned.cost * min(done, total) / max(total, 1)

    def update(self, phase: str, done: int, total: int) -> dict[str, Any]:
        """The job record's fields for this report."""
        planned = self.plan.phase(phase) if self.plan else None
        if self.plan is not None and planned is not None and self.plan.total_cost > 0:
            before = 0.0
            for entry in self.plan.phases:
                if entry.name == phase:
                    break
                before += entry.cost
            fraction = (before + self._within(planned, done, total)) / self.plan.total_cost
            fraction = self.start + (1.0 - self.start) * min(fraction, 1.0)
            self.fraction = max(self.fraction, fraction)
        elapsed = self.clock() - self.started
        made = self.fraction - self.start  # since this tracker started (after any wait)
        eta = elapsed / made * (1 - self.fraction) if made >= MIN_FRACTION_FOR_ETA else None
        return {
            "progress": round(self.fraction, 4),
            "step": done,
            "total": total,
            "eta_s": None if eta is None else round(eta, 1),
            "message": phase_message(phase, done, total, planned, self.dataset),
        }

    def starting(self) -> dict[str, Any]:
        """The first report, before the weights and the plan: the job is running, at 0."""
        return {"progress": self.start, "message": "preparing: Inception weights and the evaluation's plan"}
