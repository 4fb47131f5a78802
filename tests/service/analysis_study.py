"""The classifier study at test size, made through the real service (API, Redis, Celery worker): a digits
classifier trained by POST /classifiers and a diffusion run trained a few steps by POST /train, both at
8x8 (digits' own resolution: the fastest). Shared by the API and browser tests; made once per session
(the session's data volume keeps them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.stack import finished, wait_for

CLASSIFIER = "svc-digits-8px"
# Held-out accuracy about 0.98 in 8 short epochs (about 5 s of CPU), sure of most real digits (0.87 of
# 100 at >= 0.9): numbers that mean something. The real figures (0.989 at 32px) are in docs/analysis.md.
CLASSIFIER_BODY = {
    "dataset": "digits",
    "image_size": 8,
    "epochs": 8,
    "batch_size": 64,
    "lr": 1e-2,
    "width": 8,
    "blocks": 1,
    "crop_padding": 1,
    "name": CLASSIFIER,
}
HELD_OUT = 359  # 20% of each class of the 1797 digits, rounded per class
RUN = "svc-study-8px"
RUN_STEPS = 3  # its samples are still noise: a histogram far from the data set's
TRAIN_BODY = {
    "arch": "baseline",
    "dataset": "digits",
    "width": 0.125,
    "image_size": 8,
    "batch_size": 16,
    "max_steps": RUN_STEPS,
    "run_id": RUN,
}
REAL = {"real": True, "classifier": CLASSIFIER, "n": 100}
SAMPLES = {"run": RUN, "classifier": CLASSIFIER, "n": 50, "seed": 0, "sampler": "ddim", "steps": 2}
JOB_TIMEOUT_S = 180.0

_made: dict[Path, dict[str, Any]] = {}


def succeeded(client: TestClient, accepted: dict[str, Any]) -> dict[str, Any]:
    job = wait_for(client, accepted["job_id"], finished, JOB_TIMEOUT_S)
    assert job["state"] == "succeeded", job
    return job


def make_study(client: TestClient, data_dir: Path) -> dict[str, Any]:
    """The classifier's and the run's finished jobs (made once per data volume)."""
    if data_dir not in _made:
        classifier = client.post("/classifiers", json=CLASSIFIER_BODY)
        run = client.post("/train", json=TRAIN_BODY)
        assert classifier.status_code == 202, classifier.text
        assert run.status_code == 202, run.text
        _made[data_dir] = {
            "classifier_job": succeeded(client, classifier.json()),
            "run_job": succeeded(client, run.json()),
        }
    return _made[data_dir]


def analyse(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST /analysis, wait for its job, and the stored record."""
    accepted = client.post("/analysis", json=body)
    assert accepted.status_code == 202, accepted.text
    job = succeeded(client, accepted.json())
    record = client.get(job["result"]["links"]["analysis"])
    assert record.status_code == 200, record.text
    return {"job": job, "record": record.json()}
