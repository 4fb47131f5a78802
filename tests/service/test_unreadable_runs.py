"""A run.json written or damaged outside the API: listings skip it (and log it), the run itself is shown
as unreadable, and what needs its record answers 409 naming the file relative to the data volume."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ddpm.runs import RunDir, UnreadableRun, list_runs
from jobs.settings import Settings
from service.app import create_app

DAMAGED = {
    "garbled": "{not json",
    "truncated": '{"run_id": "truncated", "arch": "rdn", "sta',
    "a-list": "[1, 2, 3]",
    "wrong-types": json.dumps({"run_id": "wrong-types", "arch": "rdn", "status": "succeeded", "created": "yesterday"}),
    "bad-checkpoints": json.dumps({"run_id": "bad-checkpoints", "arch": "rdn", "status": "succeeded", "checkpoints": [{"step": "1"}]}),
    "no-arch": json.dumps({"run_id": "no-arch", "status": "queued"}),
    "binary": b"\xff\xfe\x00garbage",
}  # fmt: skip


@pytest.fixture
def damaged(
    idle_settings: Settings, local_checkpoint: dict[str, Any], tmp_path: Path
) -> Iterator[tuple[TestClient, Path]]:
    """A volume with one good run (a real checkpoint of rdn) and the damaged records above."""
    data_dir = tmp_path / "data"
    good = local_checkpoint["run_id"]
    shutil.copytree(idle_settings.data_dir / "runs" / good, data_dir / "runs" / good)
    for run_id, content in DAMAGED.items():
        folder = data_dir / "runs" / run_id
        (folder / "checkpoints").mkdir(parents=True)
        shutil.copy(
            next((data_dir / "runs" / good / "checkpoints").glob("step-*.safetensors")),
            folder / "checkpoints" / "step-00000001.safetensors",
        )
        path = folder / "run.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with TestClient(create_app(idle_settings.model_copy(update={"data_dir": data_dir}))) as client:
        yield client, data_dir


def test_listings_skip_unreadable_records_and_log_them_once(
    damaged: tuple[TestClient, Path], local_checkpoint: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client, data_dir = damaged
    with caplog.at_level(logging.WARNING, logger="ddpm"):
        listed = client.get("/runs")
        assert listed.status_code == 200, listed.text
        assert [run["run_id"] for run in listed.json()["runs"]] == [local_checkpoint["run_id"]]
        client.get("/runs")  # again: no second warning for the same files
    warnings = [r.getMessage() for r in caplog.records if "listing skips a run" in r.getMessage()]
    assert len(warnings) == len(DAMAGED), warnings
    assert all(str(data_dir) not in message for message in warnings)

    archs = client.get("/archs")
    assert archs.status_code == 200, archs.text
    rdn = next(a for a in archs.json() if a["name"] == "rdn")
    assert rdn["newest_checkpoint"]["run_id"] == local_checkpoint["run_id"]
    sample = client.get("/samples", params={"arch": "rdn", "n": 1, "sampler": "ddim", "steps": 1})
    assert sample.status_code == 202, sample.text  # the good run's checkpoint, queued on an idle queue
    assert sample.json()["run_id"] == local_checkpoint["run_id"]
    client.delete(f"/jobs/{sample.json()['job_id']}")


@pytest.mark.parametrize("run_id", sorted(DAMAGED))
def test_an_unreadable_run_is_shown_as_such(damaged: tuple[TestClient, Path], run_id: str) -> None:
    client, data_dir = damaged
    response = client.get(f"/runs/{run_id}")
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["run_id"] == run_id and run["status"] == "unreadable"
    assert f"runs/{run_id}/run.json" in run["error"] and str(data_dir) not in run["error"]
    assert run["checkpoints"] == [{"step": 1}]  # what the folder still holds

    # Whatever needs the record says why it cannot be used, naming the file.
    for answer in (
        client.get("/samples", params={"run": run_id, "n": 1}),
        client.post("/fid", json={"run": run_id, "n_samples": 8}),
        client.get(f"/runs/{run_id}/loss.png"),
        client.post("/train", json={"run_id": run_id, "resume": True}),
    ):
        assert answer.status_code == 409, answer.text
        assert f"runs/{run_id}/run.json" in answer.json()["detail"]
        assert str(data_dir) not in answer.text


def test_the_engine_reads_damaged_records_as_unreadable(tmp_path: Path) -> None:
    for run_id, content in DAMAGED.items():
        run = RunDir.of(tmp_path, run_id)
        run.path.mkdir(parents=True)
        run.record_path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(UnreadableRun, match=f"runs/{run_id}/run.json"):
            run.read()
        assert run.settle("failed", "boom") is False  # a worker settling it logs instead of crashing
    assert list_runs(tmp_path) == []
