"""An FID job's progress tells the truth (issue 18): one fraction over every phase (reference statistics,
sampling, Inception features, the distances and metrics) in proportion to their cost, moving from the
first phase, never backwards, with a message that names the phase and its counts.

The real job runs at tiny size through its own worker (TORCH_HOME with converted weights, no download):
8 real digits as the reference folder (not cached, so its statistics are computed in the job), N=8,
FID and its bootstrap interval. The job's record is read straight from Redis every few milliseconds, so
even the short sampling phase is seen.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ddpm.fid.options import MetricOptions
from ddpm.fid.work_plan import plan_work
from jobs.settings import Settings
from jobs.store import JobStore
from service.app import create_app
from tests.stack import start_worker, stop_worker
from workers.fid_progress import FidProgress

REFERENCE = "folder:progress-ref"
pytestmark = pytest.mark.timeout(900)


def test_the_fraction_follows_each_phase_s_cost_and_never_goes_back() -> None:
    options = MetricOptions(metrics=("fid", "fid_interval"), bootstrap=10)
    plan = plan_work(
        n=64,
        batch_size=16,
        nfe=50,
        unet_gflop_per_call=0.5,
        reference_images=1797,
        reference_feature_images=0,
        scoring_steps=[("projection", 64), ("fid", 64), ("fid_interval", 64)],
        options=options,
        reference_rows=1797,
    )
    costs = {phase.name: phase.cost for phase in plan.phases}
    assert list(costs) == ["reference", "sampling", "features", "scoring", "throughput"]
    assert costs["reference"] == 1797 and costs["features"] == 64
    # 64 images x 50 calls at 0.5 GFLOP each, measured at 0.03 of the rate against Inception's 0.75.
    assert costs["sampling"] == pytest.approx(64 * 50 * 0.5 / 11.42 * 0.75 / 0.03)
    clock = [0.0]
    tracker = FidProgress("digits", clock=lambda: clock[0])
    tracker.set_plan(plan)
    total = plan.total_cost
    first = tracker.update("reference", 900, 1797)
    assert first["progress"] == pytest.approx(costs["reference"] * 900 / 1797 / total, abs=1e-4)
    assert first["message"] == "reference statistics 900/1797 digits"
    clock[0] = 10.0
    half = tracker.update("sampling", 100, 200)  # 200 calls: 4 batches of 50
    assert half["message"] == "sampling 32/64 images (100/200 network calls)"
    expected = (costs["reference"] + costs["sampling"] / 2) / total
    assert half["progress"] == pytest.approx(expected, abs=1e-4)
    assert half["eta_s"] == pytest.approx(10.0 / expected * (1 - expected), rel=1e-2)  # the job's
    features = tracker.update("features", 32, 64)
    assert features["message"] == "Inception features 32/64 images"
    scoring = tracker.update("scoring", 1, 3)
    assert scoring["message"] == "distances and metrics 1/3: FID at N=64"
    assert 0 < first["progress"] < half["progress"] < features["progress"] < scoring["progress"] < 1
    # A report out of order (an estimate off, a retried phase) never moves the fraction back.
    assert tracker.update("sampling", 0, 200)["progress"] == scoring["progress"]
    assert tracker.update("scoring", 3, 3)["progress"] < 1  # the throughput measure is still to come
    assert tracker.update("throughput", 1, 1)["progress"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def fid_settings(settings: Settings) -> Settings:
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = settings.data_dir / "datasets" / REFERENCE.split(":", 1)[1]
    folder.mkdir(parents=True, exist_ok=True)
    for i, digit in enumerate(load_digits().images[200:208]):
        Image.fromarray((digit * 255 / 16).astype("uint8")).save(folder / f"{i}.png")
    return settings.model_copy(update={"queue": f"{settings.key_prefix}-fid-progress"})


@pytest.fixture(scope="module")
def fid_client(
    fid_settings: Settings, torch_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    name = f"{fid_settings.key_prefix}-fid-progress@localhost"
    log = tmp_path_factory.mktemp("fid-progress-worker") / "worker.log"
    # One BLAS thread: scipy's sqrtm is several times faster on a busy two-core machine (docs/fid.md).
    process = start_worker(fid_settings, name, log, TORCH_HOME=str(torch_home), OPENBLAS_NUM_THREADS="1")
    try:
        with TestClient(create_app(fid_settings)) as client:
            yield client
    finally:
        stop_worker(process)


def watch(store: JobStore, job_id: str, timeout_s: float) -> list[dict[str, Any]]:
    """Every distinct (state, progress, message) of the job's record until it finishes."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = store.get(job_id) or {}
        key = (job.get("state"), job.get("progress"), job.get("message"))
        if not seen or key != (seen[-1].get("state"), seen[-1].get("progress"), seen[-1].get("message")):
            seen.append({**job, "seen_at": time.monotonic()})
        if job.get("state") in ("succeeded", "failed", "cancelled"):
            return seen
        time.sleep(0.005)
    pytest.fail(f"FID job {job_id} did not finish in {timeout_s}s; last seen: {seen[-1:]}")


def test_a_real_fid_job_reports_every_phase_in_order_and_monotone(
    fid_client: TestClient, fid_settings: Settings, local_checkpoint: dict[str, Any]
) -> None:
    body = {
        "run": local_checkpoint["run_id"],
        "n_samples": 8,
        "dataset": REFERENCE,
        "batch_size": 4,
        "sampler": "ddim",
        "steps": 10,
        "metrics": ["fid", "fid_interval"],
        "bootstrap": 2,
    }
    accepted = fid_client.post("/fid", json=body)
    assert accepted.status_code == 202, accepted.text
    store = JobStore.from_url(fid_settings.redis_url, fid_settings.key_prefix, fid_settings.job_ttl_s)
    seen = watch(store, accepted.json()["job_id"], timeout_s=600)
    assert seen[-1]["state"] == "succeeded", seen[-1]
    running = [job for job in seen if job.get("state") == "running" and job.get("progress") is not None]
    fractions = [float(job["progress"]) for job in running]
    assert fractions == sorted(fractions), fractions  # never backwards
    messages = [str(job.get("message")) for job in running]
    order = ["reference statistics", "sampling", "Inception features", "distances and metrics"]
    firsts = [next(i for i, m in enumerate(messages) if m.startswith(phase)) for phase in order]
    assert firsts == sorted(firsts), messages  # each phase named, in the evaluator's order
    # A phase's last report can be overwritten by the next phase's first within milliseconds; its
    # counts are seen all the same.
    # The reference statistics ran as their own job, queued ahead of this one (workers/reference_jobs.py;
    # tests/service/test_fid_reference_api.py follows its progress): here they are already cached.
    assert seen[-1]["result"]["reference_job"], seen[-1]["result"]
    assert "Inception features 4/8 images" in messages
    assert any(m.startswith("sampling 4/8 images") for m in messages), messages
    assert any(m.startswith("distances and metrics 1/3: FID at N=8") for m in messages), messages
    # It moves from the first phase that works: sampling already moves the bar...
    sampling = [f for f, m in zip(fractions, messages, strict=True) if m.startswith("sampling")]
    assert 0 < sampling[-1] < 0.7
    # ...and no phase sits at the end: the distances (pytorch-fid's sqrtm, most of this tiny job's time)
    # start well below 100%, and the scoring ends below 1 (the throughput measure follows).
    scoring_start = fractions[firsts[3]]
    assert scoring_start < 0.7, (scoring_start, messages)
    assert max(f for f, m in zip(fractions, messages, strict=True) if m.startswith("distances")) < 1
    assert messages[-1].startswith("measuring this machine's matmul rate")
    assert "eta_s" not in seen[-1] or seen[-1]["eta_s"] in (None, "")  # a finished job has no ETA


def test_a_job_that_waited_on_its_reference_starts_where_the_wait_left_its_bar() -> None:
    """The wait on a reference statistics job shows as the first share of the bar; the phases fill
    the rest, so the fraction never goes back when they start."""
    from ddpm.fid.work_plan import PhasePlan, WorkPlan

    tracker = FidProgress("digits", start=0.1)
    assert tracker.starting()["progress"] == 0.1
    sampling = PhasePlan("sampling", units=10, images=4, cost=1.0)
    tracker.set_plan(WorkPlan((sampling, PhasePlan("features", units=4, images=4, cost=1.0))))
    assert tracker.update("sampling", 0, 10)["progress"] == 0.1
    assert tracker.update("sampling", 10, 10)["progress"] == pytest.approx(0.55)
    assert tracker.update("features", 4, 4)["progress"] == 1.0


def test_a_reference_job_run_inside_the_waiting_fid_job_moves_that_jobs_bar_too() -> None:
    """When an FID job's worker runs the queued reference job itself, every report of it also reaches
    the FID job's record, scaled into the wait's share, with the reference job named."""
    from workers.reference_jobs import MirroredReporter, reference_share

    calls: dict[str, list[dict[str, Any]]] = {"reference": [], "fid": []}

    class Recorder:
        def __init__(self, name: str) -> None:
            self.name, self.token = name, f"token-{name}"

        def __call__(self, force: bool = False, **fields: Any) -> None:
            calls[self.name].append(fields)

    mirrored = MirroredReporter(Recorder("reference"), Recorder("fid"), 0.6, "ref1")  # type: ignore[arg-type]
    mirrored(progress=0.5, message="reference statistics 900/1797 digits")
    mirrored(force=True, step=3)  # nothing the waiting job shows
    assert calls["reference"] == [
        {"progress": 0.5, "message": "reference statistics 900/1797 digits"},
        {"step": 3},
    ]
    assert calls["fid"] == [
        {
            "progress": 0.3,
            "message": "waiting for reference statistics job ref1 (running it here): reference statistics 900/1797 digits",
        }
    ]
    assert mirrored.token == "token-reference"  # everything else is the reference job's reporter
    # The wait's share: the reference's Inception images against the job's own, within bounds.
    assert reference_share("digits", Path("/nonexistent"), 1024) == pytest.approx(1797 / (1797 + 1024))
    assert reference_share("digits", Path("/nonexistent"), 10**6) == 0.05
