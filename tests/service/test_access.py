"""The API's edge: body size, CORS, probes, and a corrupt checkpoint failing its job clearly."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from jobs.settings import Settings
from service.app import create_app
from tests.stack import TINY_TRAIN, finished, wait_for


def test_oversized_bodies_are_413_whether_or_not_they_declare_a_length(idle_settings: Settings) -> None:
    small = idle_settings.model_copy(update={"max_body_bytes": 2048})
    with TestClient(create_app(small)) as client:
        big = {"arch": "biggan", "run_id": "x" * 3000}
        declared = client.post("/train", json=big)
        assert declared.status_code == 413 and "2048 bytes" in declared.json()["detail"]
        chunked = client.post(
            "/train", content=iter([b'{"arch": "biggan", "run_id": "', b"x" * 3000, b'"}']),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert chunked.status_code == 413, chunked.text
        assert client.post("/train", json={"arch": "nope"}).status_code == 422  # small bodies pass


def test_cors_is_off_unless_origins_are_configured(idle_settings: Settings) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(idle_settings)) as client:
        assert "access-control-allow-origin" not in client.get("/archs", headers=preflight).headers
        assert "access-control-allow-origin" not in client.options("/train", headers=preflight).headers
    allowed = idle_settings.model_copy(update={"cors_origins": ["https://ui.example"]})
    with TestClient(create_app(allowed)) as client:
        ok = client.options("/train", headers={**preflight, "Origin": "https://ui.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        assert "access-control-allow-origin" not in client.options("/train", headers=preflight).headers


def test_every_train_field_is_bounded(idle_client: TestClient) -> None:
    schema = idle_client.get("/openapi.json").json()["components"]["schemas"]["TrainRequest"]["properties"]
    for name in (
        "epochs",
        "max_steps",
        "batch_size",
        "lr",
        "seed",
        "width",
        "checkpoint_every",
        "image_size",
    ):
        field = schema[name] if "anyOf" not in schema[name] else schema[name]["anyOf"][0]
        assert "maximum" in field and ("minimum" in field or "exclusiveMinimum" in field), name


def test_a_corrupt_checkpoint_fails_its_job_clearly(
    client: TestClient, settings: Settings, worker: dict[str, Any]
) -> None:
    from ddpm.training import TrainConfig, train

    result = train(
        TrainConfig(arch="pure_unet", max_steps=1, **TINY_TRAIN),
        settings.data_dir,
        run_id="corrupt",
        device="cpu",
    )
    (path,) = (settings.data_dir / "runs" / "corrupt" / "checkpoints").glob(
        f"step-*{result.step}.safetensors"
    )
    path.write_bytes(path.read_bytes()[:200])  # truncated, as by a full disk
    response = client.get("/samples", params={"run": "corrupt", "n": 1, "sampler": "ddim", "steps": 1})
    assert response.status_code == 202, response.text
    job = wait_for(client, response.json()["job_id"], finished)
    assert job["state"] == "failed"
    assert "corrupt or truncated" in job["error"] and "Traceback" not in job["error"]
    # The worker survived it and takes the next job.
    assert client.get("/readyz").json()["status"] == "ok"
