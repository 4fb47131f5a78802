"""Reference statistics in their own job, through the real API, Redis and a real Celery worker:
POST /fid/reference computes them once (progress, cached on the volume, GET /fid/reference lists them),
an FID request whose statistics are missing waits on the one job computing them (and, on a one-worker
box, runs that job itself when it sits queued), and a cancelled reference job fails the FID jobs waiting
on it with a message that names it.

Inception's weights are converted once into a temporary TORCH_HOME (no download); the references are a
few real digits as image folders, so each statistics job is seconds. The module has its own worker on
its own queue (its TORCH_HOME is its own) and an idle queue no worker reads, where a reference job can be
left queued on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ddpm.fid.reference_cache import reference_path
from jobs.settings import Settings
from service.app import create_app
from tests.stack import finished, start_worker, stop_worker, wait_for

SMALL, QUEUED_REF, CANCELLED_REF = "folder:ref-small", "folder:ref-queued", "folder:ref-cancel"
FOLDERS = {SMALL: (0, 8), QUEUED_REF: (8, 16), CANCELLED_REF: (16, 316)}  # digits [start, stop)
SIZE = 16  # the local checkpoint's (tests/stack.py TINY_TRAIN)
# The cheapest FID a worker can run: two images, two network calls, the FID alone.
TINY_FID = {"n_samples": 2, "sampler": "ddim", "steps": 2, "batch_size": 2, "metrics": ["fid"]}
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def ref_settings(settings: Settings) -> Settings:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits().images
    for name, (start, stop) in FOLDERS.items():
        folder = settings.data_dir / "datasets" / name.split(":", 1)[1]
        folder.mkdir(parents=True, exist_ok=True)
        for i, digit in enumerate(digits[start:stop]):
            Image.fromarray((digit * 255 / 16).astype("uint8")).save(folder / f"{i}.png")
    return settings.model_copy(update={"queue": f"{settings.key_prefix}-ref"})


@pytest.fixture(scope="module")
def worker(
    ref_settings: Settings, torch_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    log = tmp_path_factory.mktemp("ref-worker") / "worker.log"
    name = f"{ref_settings.key_prefix}-ref@localhost"
    process = start_worker(ref_settings, name, log, TORCH_HOME=str(torch_home))
    yield {"name": name, "log": log}
    stop_worker(process)


@pytest.fixture(scope="module")
def client(ref_settings: Settings, worker: dict[str, Any]) -> Iterator[TestClient]:
    with TestClient(create_app(ref_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def parked(ref_settings: Settings) -> Iterator[TestClient]:
    """The same Redis keys and volume, publishing to a queue no worker reads."""
    idle = ref_settings.model_copy(update={"queue": f"{ref_settings.key_prefix}-ref-idle"})
    with TestClient(create_app(idle)) as test_client:
        yield test_client


def test_bad_requests_are_422_naming_the_field(parked: TestClient) -> None:
    for body, needle in (
        ({"dataset": "mnist"}, "cifar10, digits"),
        ({"dataset": "folder:../etc"}, "relative path under DATA_DIR/datasets"),
        ({"dataset": "digits", "image_size": 4}, "image_size"),
        ({"dataset": "digits", "refresh": "yes"}, "refresh"),
    ):
        response = parked.post("/fid/reference", json=body)
        assert response.status_code == 422, response.text
        assert needle in response.text


def test_precomputed_once_with_progress_then_cached(client: TestClient, ref_settings: Settings) -> None:
    accepted = client.post("/fid/reference", json={"dataset": SMALL, "image_size": SIZE, "batch_size": 4})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert accepted.headers["location"] == f"/jobs/{job_id}"
    job = wait_for(client, job_id, finished, timeout=300)
    assert job["state"] == "succeeded", job
    assert (job["kind"], job["step"], job["total"]) == ("fid_reference", 8, 8)  # its last progress
    assert job["message"] == f"reference statistics of {SMALL} at {SIZE}x{SIZE} computed (8 images)"
    assert job["result"]["computed"] and job["result"]["n"] == 8
    assert reference_path(ref_settings.data_dir, SMALL, SIZE).is_file()

    listed = client.get("/fid/reference").json()
    (entry,) = [e for e in listed["cached"] if e["key"] == accepted.json()["key"]]
    assert entry["n"] == 8 and entry["features"] and SMALL in entry["identity"]
    assert job_id not in {j["id"] for j in listed["computing"]}

    again = client.post("/fid/reference", json={"dataset": SMALL, "image_size": SIZE})
    assert again.status_code == 200 and again.json()["state"] == "cached" and again.json()["job_id"] is None


def test_fid_requests_wait_on_one_reference_job_which_a_busy_worker_runs_itself(
    client: TestClient, parked: TestClient, local_checkpoint: dict, worker: dict[str, Any]
) -> None:
    # The reference job sits on a queue nobody reads: the FID job must not wait for it forever.
    reference = parked.post("/fid/reference", json={"dataset": QUEUED_REF, "image_size": SIZE})
    assert reference.status_code == 202, reference.text
    reference_id = reference.json()["job_id"]
    joined = client.post("/fid/reference", json={"dataset": QUEUED_REF, "image_size": SIZE})
    assert joined.json()["job_id"] == reference_id and joined.json()["joined"]
    computing = client.get("/fid/reference").json()["computing"]
    assert reference_id in {job["id"] for job in computing}

    body = {"run": local_checkpoint["run_id"], "dataset": QUEUED_REF, **TINY_FID}
    first, second = client.post("/fid", json=body), client.post("/fid", json={**body, "seed": 1})
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert first.json()["links"]["reference_job"] == f"/jobs/{reference_id}"
    assert f"waiting for reference statistics job {reference_id}" in first.json()["message"]
    second_job = client.get(f"/jobs/{second.json()['job_id']}").json()
    assert second_job["reference_job"] == reference_id  # one computation for both
    assert second_job["links"]["reference_job"] == f"/jobs/{reference_id}"
    client.delete(f"/jobs/{second.json()['job_id']}")  # only one FID needs to run

    fid = wait_for(client, first.json()["job_id"], finished, timeout=600)
    assert fid["state"] == "succeeded", fid
    assert fid["result"]["reference_job"] == reference_id and fid["result"]["reference_wait_s"] >= 0
    compiled = fid["result"]["throughput"]["sampling_compile"]  # why sampling ran eager: 2 x 2 calls
    assert compiled["setting"] == "auto" and not compiled["compiled"] and compiled["image_calls"] == 4
    done = client.get(f"/jobs/{reference_id}").json()
    assert done["state"] == "succeeded" and done["worker"] == worker["name"]  # run by the FID job's worker
    assert done["result"]["n"] == 8


def test_a_cancelled_reference_job_fails_the_fid_jobs_waiting_on_it(
    client: TestClient, parked: TestClient, local_checkpoint: dict, ref_settings: Settings
) -> None:
    reference = parked.post(
        "/fid/reference", json={"dataset": CANCELLED_REF, "image_size": SIZE, "batch_size": 4}
    )
    reference_id = reference.json()["job_id"]
    body = {"run": local_checkpoint["run_id"], "dataset": CANCELLED_REF, **TINY_FID}
    fid = client.post("/fid", json=body)
    assert fid.status_code == 202 and fid.json()["links"]["reference_job"] == f"/jobs/{reference_id}"
    # The FID job's worker runs the parked reference job itself; it is cancelled mid-way.
    running = wait_for(client, reference_id, lambda job: (job.get("step") or 0) >= 4 or finished(job))
    assert running["state"] == "running" and running["message"].startswith("reference statistics 4/300")
    waiting = client.get(f"/jobs/{fid.json()['job_id']}").json()
    assert waiting["reference_job"] == reference_id
    assert waiting["message"].startswith(f"waiting for reference statistics job {reference_id}")
    assert client.delete(f"/jobs/{reference_id}").status_code == 202
    failed = wait_for(client, fid.json()["job_id"], finished, timeout=300)
    assert failed["state"] == "failed", failed
    assert f"reference statistics job {reference_id} cancelled" in failed["error"]
    assert "ask again" in failed["error"]
    assert client.get(f"/jobs/{reference_id}").json()["state"] == "cancelled"
    assert not reference_path(ref_settings.data_dir, CANCELLED_REF, SIZE).exists()
