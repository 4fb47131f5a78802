"""A data volume without room, as the API sees it: 507 for a request that itself needs space (POST
/train writes the run's record), no run folder left behind, and recovery as soon as there is room.
The real thing, on a small full tmpfs with real workers and Redis, is tests/workers/test_full_disk.py."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobs.settings import Settings
from service.app import create_app
from tests.stack import TINY_TRAIN


@pytest.fixture
def volume(idle_settings: Settings, tmp_path: Path) -> Settings:
    return idle_settings.model_copy(update={"data_dir": tmp_path / "data", "min_free_mb": 0})


def test_train_is_507_under_the_free_space_minimum(volume: Settings) -> None:
    with TestClient(create_app(volume.model_copy(update={"min_free_mb": 10**9}))) as client:
        response = client.post("/train", json={"arch": "biggan", "run_id": "no-room", **TINY_TRAIN})
        assert response.status_code == 507, response.text
        assert "no space left on the data volume" in response.json()["detail"]
        assert "DDPM_MIN_FREE_MB" in response.json()["detail"]
        assert str(volume.data_dir) not in response.text
    assert not (volume.data_dir / "runs" / "no-room").exists()


def test_a_full_disk_while_writing_the_run_is_507_and_leaves_no_folder(
    volume: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Path.write_bytes

    def full(self: Path, data: Any) -> int:
        if self.is_relative_to(volume.data_dir / "runs"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return original(self, data)

    body = {"arch": "biggan", "run_id": "full-disk", **TINY_TRAIN}
    with TestClient(create_app(volume)) as client:
        monkeypatch.setattr(Path, "write_bytes", full)
        response = client.post("/train", json=body)
        assert response.status_code == 507, response.text
        detail = response.json()["detail"]
        assert detail.startswith("no space left on the data volume (writing runs/full-disk/run.json; ")
        assert str(volume.data_dir) not in response.text
        assert not (volume.data_dir / "runs" / "full-disk").exists()  # no empty run folder
        (job,) = client.get("/jobs", params={"kind": "train", "state": "failed", "limit": 1000}).json()[
            "jobs"
        ][:1]
        assert job["run_id"] == "full-disk" and "could not prepare the job: NoSpace" in job["error"]
        assert str(volume.data_dir) not in job["error"]

        monkeypatch.setattr(Path, "write_bytes", original)  # space is back: no restart needed
        again = client.post("/train", json=body)
        assert again.status_code == 202, again.text
        assert client.get("/runs/full-disk").json()["status"] == "queued"
        client.delete(f"/jobs/{again.json()['job_id']}")
