"""The README's quick start, as a newcomer runs it, through a real Redis and a real Celery worker: its
first training request (read from the README itself) at a few steps, then the grid its run links to.
The full run's time, loss and picture are measured in docs/quickstart.md."""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ddpm.limits import DEFAULT_STEPS, GRID_SAMPLER
from ddpm.presets import TRAIN_PRESETS
from ddpm.sampling import grid_size
from tests.stack import finished, wait_for

pytestmark = pytest.mark.usefixtures("worker")

README = Path(__file__).resolve().parents[2] / "README.md"
QUICK_STEPS = 3  # the README's run is 1,015 steps; the path through the service is the same at 3


def readme_requests() -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The body of the README's first POST /train and the query of its first GET /samples."""
    text = README.read_text()
    train = re.search(r"curl[^\n]*-X POST localhost:8000/train[^\n]*-d '([^']*)'", text)
    assert train, "the README's quick start has no POST /train request with a -d body on one line"
    samples = re.search(r"curl[^\n]*'localhost:8000(/samples\?[^']*)'", text)
    assert samples, "the README's quick start has no GET /samples request"
    return json.loads(train.group(1)), parse_qs(urlsplit(shlex.split(samples.group(1))[0]).query)


def test_readme_quickstart_runs_through_the_service(client: TestClient) -> None:
    body, query = readme_requests()
    assert body.get("preset") == "digits-quick", body  # the recipe measured in docs/quickstart.md

    response = client.post("/train", json={**body, "max_steps": QUICK_STEPS})
    assert response.status_code == 202, response.text
    accepted = response.json()
    job = wait_for(client, accepted["job_id"], finished, timeout=300)
    assert job["state"] == "succeeded", job
    assert job["step"] == QUICK_STEPS and isinstance(job["step"], int)

    # The run trains the preset's recipe: a one-channel network on the grey digits, with its EMA.
    run = client.get(f"/runs/{accepted['run_id']}").json()
    config = run["train_config"]
    recipe = TRAIN_PRESETS["digits-quick"]
    assert {k: config[k] for k in recipe} == recipe
    assert config["grayscale"] is True and run["model_config"]["in_channels"] == 1

    # Every samples link the API hands out names its sampler: the grid's default, never DDPM-1000.
    links = [c["links"]["samples"] for c in run["checkpoints"]]
    links.append(job["result"]["links"]["samples"])
    for link in links:
        params = parse_qs(urlsplit(link).query)
        assert params["sampler"] == [GRID_SAMPLER] and params["steps"] == [str(DEFAULT_STEPS[GRID_SAMPLER])]

    # The README's grid request for this run (a smaller grid: the sampler is the README's default).
    assert "sampler" not in query and "steps" not in query, query
    asked = {k: v[0] for k, v in query.items() if k not in ("arch", "n", "wait")}
    grid = client.get("/samples", params={**asked, "run": accepted["run_id"], "n": 8, "nrow": 4, "wait": 240})
    assert grid.status_code == 200, grid.text
    image = Image.open(io.BytesIO(grid.content))
    assert image.mode == "L"  # grey digits, not three channels of colour noise
    assert image.size == grid_size(8, 4, image_size=16)
    sampled = client.get("/jobs", params={"kind": "sample"}).json()["jobs"]
    mine = [j for j in sampled if j.get("run_id") == accepted["run_id"]]
    assert mine and all(j["params"]["sampler"] == GRID_SAMPLER for j in mine), mine
