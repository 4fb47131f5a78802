"""The whole path through a real Redis and a real Celery worker: train -> progress -> samples -> cache,
cancellation, and records that outlive the API process."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from jobs.settings import Settings
from jobs.store import JobStore
from service.app import create_app
from tests.stack import TINY_TRAIN, finished, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def read_events(client: TestClient, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, job) for every event of the SSE stream, which ends after the final state."""
    events = []
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: ") :])))
    return events


class Poller(threading.Thread):
    """Records GET /jobs/{id} while the test reads the event stream."""

    def __init__(self, settings: Settings, job_id: str) -> None:
        super().__init__(daemon=True)
        self.settings, self.job_id, self.seen = settings, job_id, []

    def run(self) -> None:
        with TestClient(create_app(self.settings)) as client:
            while True:
                job = client.get(f"/jobs/{self.job_id}").json()
                self.seen.append(job)
                if finished(job):
                    return


def test_train_progress_samples_and_cache(client: TestClient, settings: Settings) -> None:
    steps = 6
    response = client.post("/train", json={"arch": "pure_unet", "max_steps": steps, **TINY_TRAIN})
    assert response.status_code == 202, response.text
    accepted = response.json()
    job_id, run_id = accepted["job_id"], accepted["run_id"]

    poller = Poller(settings, job_id)
    poller.start()
    events = read_events(client, job_id)
    poller.join(timeout=60)

    # Progress through the event stream: running updates with steps and loss, then one final event.
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"progress"}
    running = [job for name, job in events if job["state"] == "running" and job.get("step")]
    assert running, events
    assert all(0 < job["progress"] <= 1 and job["loss"] > 0 and job["total"] == steps for job in running)
    # ... and through GET /jobs/{id}.
    assert any(job["state"] == "running" and job.get("step") for job in poller.seen)
    steps_seen = [job["step"] for job in poller.seen if job.get("step")]
    assert steps_seen == sorted(steps_seen)

    job = events[-1][1]
    assert job["state"] == "succeeded", job
    assert job["progress"] == 1.0 and job["step"] == steps
    # max_steps cut the run short of its 100 epochs: its checkpoints are spaced over the steps it ran
    # (about eight; here every step), not one at the end only.
    assert [c["step"] for c in job["result"]["checkpoints"]] == list(range(1, steps + 1))
    assert job["links"]["run"] == f"/runs/{run_id}"

    run = client.get(f"/runs/{run_id}").json()
    assert run["status"] == "succeeded" and run["step"] == steps and run["device"] == "cpu"
    assert [c["step"] for c in run["checkpoints"]] == list(range(1, steps + 1))
    # Its record says what it trained beside what was asked: 6 of 225 steps an epoch, not 100 epochs.
    assert run["train_config"]["epochs"] == 100 and run["limited_by"] == "max_steps"
    assert run["effective_epochs"] == round(steps / run["steps_per_epoch"], 2) < 1
    assert [row["step"] for row in run["loss_history"]] == list(range(1, steps + 1))
    assert run["job_id"] == job_id
    assert run_id in {r["run_id"] for r in client.get("/runs").json()["runs"]}

    # Samples: the arch's newest checkpoint, the report's arguments plus a fast sampler.
    query = {"arch": "DDPM_PureUNet", "seed": 3, "n": 6, "nrow": 4, "sampler": "ddim", "steps": 3}
    first = client.get("/samples", params=query)
    assert first.status_code == 202, first.text
    sample_job = first.json()["job_id"]
    assert first.headers["location"] == f"/jobs/{sample_job}"
    joined = client.get("/samples", params=query)  # while it runs: the same job, not another
    if joined.status_code == 202:
        assert joined.json()["job_id"] == sample_job and joined.json()["joined"] is True

    grid = client.get("/samples", params={**query, "wait": 60})
    assert grid.status_code == 200, grid.text
    assert grid.headers["content-type"] == "image/png"
    assert grid.headers["x-run-id"] == run_id and grid.headers["x-checkpoint-step"] == str(steps)
    from ddpm.sampling import grid_size

    image = Image.open(io.BytesIO(grid.content))
    assert image.size == grid_size(6, 4, image_size=16)  # 4 columns, 2 rows of 16x16 images
    done = wait_for(client, sample_job, finished)
    assert done["state"] == "succeeded" and done["result"]["links"]["image"].startswith("/samples?run=")

    # Again: served from the volume, byte for byte, and no job is created.
    sample_jobs = client.get("/jobs", params={"kind": "sample"}).json()["jobs"]
    again = client.get("/samples", params=query)
    assert again.status_code == 200 and again.content == grid.content
    pinned = client.get(again.headers["content-location"])
    assert pinned.status_code == 200 and pinned.content == grid.content
    assert client.get("/jobs", params={"kind": "sample"}).json()["jobs"] == sample_jobs
    # One grid on the volume for this request, under its cache key (other tests share the data dir).
    key = grid.headers["etag"].strip('"')
    assert Path(settings.data_dir, "samples", key[:2], f"{key}.png").read_bytes() == grid.content

    # A new API process (nothing kept in memory) sees the same job and run records.
    with TestClient(create_app(settings)) as restarted:
        assert restarted.get(f"/jobs/{job_id}").json()["state"] == "succeeded"
        assert restarted.get(f"/runs/{run_id}").json()["checkpoints"] == run["checkpoints"]
        assert restarted.get("/samples", params=query).status_code == 200


def test_cancel_queued_and_running_training(client: TestClient, settings: Settings) -> None:
    long = client.post("/train", json={"arch": "convnext", "max_steps": 5000, **TINY_TRAIN}).json()
    queued = client.post("/train", json={"arch": "convnext", "max_steps": 2, **TINY_TRAIN}).json()

    # The second job waits behind the first (one worker, prefetch 1); cancelling it is immediate.
    response = client.delete(f"/jobs/{queued['job_id']}")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"

    running = wait_for(
        client, long["job_id"], lambda job: job["state"] == "running" and (job["step"] or 0) >= 3
    )
    assert running["eta_s"] is not None
    # The run follows its job's step (run.json itself is rewritten only at checkpoints and epoch ends,
    # and this run has neither yet): never behind what GET /jobs/{id} said just before.
    for _ in range(3):
        before = client.get(f"/jobs/{long['job_id']}").json()
        live = client.get(f"/runs/{long['run_id']}").json()
        listed = next(r for r in client.get("/runs").json()["runs"] if r["run_id"] == long["run_id"])
        if before["state"] == "running":
            assert live["step"] >= before["step"] and listed["step"] >= before["step"], (before, live)
            assert live["status"] == "running" and live["step_from"] == "job"
    response = client.delete(f"/jobs/{long['job_id']}")
    assert response.status_code == 202
    at_cancel = response.json()
    assert at_cancel["cancel_requested"] is True and at_cancel["state"] == "running"
    job = wait_for(client, long["job_id"], finished, timeout=60)
    assert job["state"] == "cancelled", job
    # A cancelled job has no time left: its last estimate is gone from the record and the response.
    assert job["eta_s"] is None
    assert "eta_s" not in JobStore.from_url(settings.redis_url, settings.key_prefix, settings.job_ttl_s).get(
        long["job_id"]
    )
    assert job["step"] <= at_cancel["step"] + 2  # stops within a step or two
    # It keeps its last checkpoint: on disk, listed by the run, resumable and samplable.
    run = client.get(f"/runs/{long['run_id']}").json()
    assert run["status"] == "cancelled" and run["step"] == job["step"]
    assert [c["step"] for c in run["checkpoints"]] == [job["step"]]
    assert job["result"]["checkpoints"][-1]["step"] == job["step"]
    assert client.delete(f"/jobs/{long['job_id']}").status_code == 200  # cancelling twice is harmless

    # A job queued after the cancelled one runs to the end; by then the worker has received the
    # cancelled job's message (FIFO) and dropped it without starting it.
    after = client.post("/train", json={"arch": "convnext", "max_steps": 1, **TINY_TRAIN}).json()
    assert wait_for(client, after["job_id"], finished)["state"] == "succeeded"
    never = client.get(f"/jobs/{queued['job_id']}").json()
    assert never["state"] == "cancelled" and never["started"] is None and never["attempts"] is None
    assert client.get(f"/runs/{queued['run_id']}").json()["status"] == "cancelled"
    run_dir = Path(settings.data_dir, "runs", queued["run_id"])
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "loss.csv").exists()
    assert client.delete(f"/jobs/{after['job_id']}").status_code == 409  # finished jobs stay finished


def test_resume_a_cancelled_run(client: TestClient) -> None:
    first = client.post("/train", json={"arch": "convnext", "max_steps": 2, **TINY_TRAIN}).json()
    assert wait_for(client, first["job_id"], finished)["state"] == "succeeded"
    same = client.post("/train", json={"arch": "convnext", "run_id": first["run_id"]})
    assert same.status_code == 409 and "resume" in same.json()["detail"]
    changed = client.post("/train", json={"run_id": first["run_id"], "resume": True, "lr": 0.1})
    assert changed.status_code == 422
    (error,) = changed.json()["detail"]  # the validation shape: located at the field that may not change
    assert error["loc"] == ["body", "lr"] and "only ['epochs'" in error["msg"]
    resumed = client.post("/train", json={"run_id": first["run_id"], "resume": True, "max_steps": 3})
    assert resumed.status_code == 202, resumed.text
    job = wait_for(client, resumed.json()["job_id"], finished)
    assert job["state"] == "succeeded" and job["step"] == 3
    # Both short runs space their checkpoints over their steps (max_steps cut them): every step here.
    assert [c["step"] for c in client.get(f"/runs/{first['run_id']}").json()["checkpoints"]] == [1, 2, 3]


def test_failed_job_says_why(client: TestClient) -> None:
    # CIFAR-10 is not on this machine and downloads are off for the worker: a clear, actionable error.
    response = client.post("/train", json={"arch": "convnext", "max_steps": 1, "width": 0.125})
    job = wait_for(client, response.json()["job_id"], finished)
    assert job["state"] == "failed"
    assert "CIFAR-10" in job["error"] and "digits" in job["error"]
    assert "Traceback" not in job["error"]
    assert client.get(f"/runs/{response.json()['run_id']}").json()["status"] == "failed"


def test_readyz_sees_the_worker_and_healthz_is_liveness(client: TestClient, worker: dict[str, Any]) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert worker["name"] in {w["hostname"] for w in ready.json()["workers"]}
    assert client.get("/healthz").json() == {"status": "ok"}
