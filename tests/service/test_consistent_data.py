"""One shape for the same kind of value in every response (issue 18): times are ISO-8601 strings, steps and
counts are integers (never 120.0), and fractions, durations and rates carry no float noise
(0.3333333333333333, 12.000000000000002). Walks the JSON of GET /jobs, /jobs/{id}, /runs, /runs/{id},
/fid, /fid/results/{id}, /studies and /classifiers after a real training job, a grid and a stored FID
result, and checks every field by its name."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ddpm.fid.results import save_result
from tests.stack import TINY_TRAIN, finished, wait_for

pytestmark = pytest.mark.usefixtures("worker")

TIME_FIELDS = {"created", "updated", "started", "finished", "time", "cancelled", "seen", "modified"}
INTEGER_FIELDS = {"step", "total", "total_steps", "steps_per_epoch", "attempts", "checkpoint_every_steps"}
# Significant digits a fraction, duration, rate or loss needs; more is float noise.
MAX_SIGNIFICANT_DIGITS = 6


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every field in a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}")
            if not isinstance(item, dict | list):
                yield f"{path}.{key}", str(key), item
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}[{index}]")


def significant_digits(value: float) -> int:
    mantissa = repr(abs(value)).split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa.rstrip("0"))


def is_time_field(key: str) -> bool:
    return key in TIME_FIELDS or key.endswith("_at")


def problems(document: Any, where: str) -> list[str]:
    found = []
    for path, key, value in leaves(document):
        if value is None:
            continue
        if is_time_field(key):
            try:
                parsed = isinstance(value, str) and datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                parsed = False
            if not parsed:
                found.append(f"{where}{path} = {value!r} is not an ISO-8601 time")
        elif key in INTEGER_FIELDS or key.endswith("_step"):
            if not isinstance(value, int) or isinstance(value, bool):
                found.append(f"{where}{path} = {value!r} is not an integer")
        elif isinstance(value, float) and significant_digits(value) > MAX_SIGNIFICANT_DIGITS:
            found.append(f"{where}{path} = {value!r} has float noise")
    return found


def test_every_response_has_iso_times_integer_steps_and_no_float_noise(
    client: TestClient, local_checkpoint: dict[str, Any], settings: Any
) -> None:
    # A run whose 7 steps cover 7/225 of an epoch (a fraction with endless decimals) and a grid of it.
    accepted = client.post("/train", json={"arch": "pure_unet", "max_steps": 7, **TINY_TRAIN}).json()
    train = wait_for(client, accepted["job_id"], finished)
    assert train["state"] == "succeeded", train
    grid = client.get("/samples", params={"run": accepted["run_id"], "n": 2, "sampler": "ddim", "steps": 3})
    assert grid.status_code in (200, 202), grid.text
    if grid.status_code == 202:
        wait_for(client, grid.json()["job_id"], finished)
    result_id = save_result(
        settings.data_dir,
        {"arch": "rdn", "run_id": local_checkpoint["run_id"], "step": 1, "epoch": 1 / 225,
         "dataset": "digits", "sampler": "ddim", "steps": 50, "seed": 0,
         "scores": [{"n": 8, "fid": 301.25}], "timings": {"sampling": 1 / 3}},
    )  # fmt: skip

    documents: dict[str, Any] = {}
    for url in ("/jobs", "/runs", "/fid", "/studies", "/classifiers", "/archs", "/readyz"):
        response = client.get(url)
        assert response.status_code == 200, (url, response.text)
        documents[url] = response.json()
    for job in documents["/jobs"]["jobs"][:10]:
        documents[f"/jobs/{job['id']}"] = client.get(f"/jobs/{job['id']}").json()
    for run in documents["/runs"]["runs"][:10]:
        documents[f"/runs/{run['run_id']}"] = client.get(f"/runs/{run['run_id']}").json()
    documents[f"/fid/results/{result_id}"] = client.get(f"/fid/results/{result_id}").json()

    run = documents[f"/runs/{accepted['run_id']}"]
    assert isinstance(run["checkpoints"][0]["time"], str) and isinstance(run["step"], int)
    assert all(isinstance(worker["seen"], str) for worker in documents["/readyz"]["workers"])
    assert f"/jobs/{accepted['job_id']}" in documents and f"/fid/results/{result_id}" in documents
    found = [problem for url, document in documents.items() for problem in problems(document, url)]
    assert not found, "\n".join(found)


def test_tidy_converts_by_field_name_and_leaves_other_numbers_alone() -> None:
    from service.tidy import tidy

    record = {
        "created": 1796041968.7359653,
        "checkpoints": [{"step": 120.0, "epoch": 1 / 3, "time": 1796041916.9996}],
        "timings": {"total": 12.000000000000002, "sampling": 0.3333333333333333},
        "seed": 7,
        "time": 35.0,  # seconds, not a date: left as it is
        "started_at": None,
        "loss_history": [{"step": 1.0, "loss": 0.9146913290023804}],
    }
    assert tidy(record) == {
        "created": "2026-11-30T12:32:48.736Z",
        "checkpoints": [{"step": 120, "epoch": 0.333333, "time": "2026-11-30T12:31:56.999Z"}],
        "timings": {"total": 12, "sampling": 0.333333},
        "seed": 7,
        "time": 35.0,
        "started_at": None,
        "loss_history": [{"step": 1, "loss": 0.914691}],
    }


def test_a_run_recorded_before_effective_epochs_gets_them_from_its_totals(
    idle_client: TestClient, idle_settings: Any
) -> None:
    from ddpm.runs import RunDir, run_record

    run = RunDir.of(idle_settings.data_dir, "older-record")
    record = run_record("older-record", "biggan", {"epochs": 100, "dataset": "digits"}, "succeeded")
    run.write({**record, "total_steps": 200, "steps_per_epoch": 15, "step": 200})
    shown = idle_client.get("/runs/older-record").json()
    assert shown["effective_epochs"] == 13.33 and shown["limited_by"] == "max_steps"
    listed = next(r for r in idle_client.get("/runs").json()["runs"] if r["run_id"] == "older-record")
    assert listed["effective_epochs"] == 13.33 and isinstance(listed["created"], str)
