"""The API's edge: body size, CORS, probes, and a corrupt checkpoint failing its job clearly."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

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


def test_with_an_api_key_probes_tell_strangers_only_up_or_down(idle_settings: Settings) -> None:
    """/readyz without the key says ok or unavailable and nothing else: no data path, Redis host and
    port, worker hosts or PIDs. With the key (or with no key configured) it shows everything,
    each worker's device included."""
    from jobs.registry import WorkerRegistry

    keyed = idle_settings.model_copy(update={"api_key": SecretStr("s3cret"), "min_free_mb": 0})
    with TestClient(create_app(keyed)) as client:
        store = client.app.state.store
        fake = f"{store.prefix}-probe@gpu-host-7"
        info = {"hostname": fake, "pid": 4242, "host": "gpu-host-7", "device": "cuda:0", "queue": keyed.queue}
        WorkerRegistry(store.client, store.prefix).beat(fake, info, ttl_s=30)
        try:
            stranger = client.get("/readyz")
            assert stranger.status_code == 200 and stranger.json() == {"status": "ok"}
            for secret in (str(keyed.data_dir), "6394", "6379", "gpu-host-7", "4242", "cuda"):
                assert secret not in stranger.text
            wrong = client.get("/readyz", headers={"X-API-Key": "wrong"})
            assert wrong.json() == {"status": "ok"}

            insider = client.get("/readyz", headers={"X-API-Key": "s3cret"}).json()
            assert insider["status"] == "ok" and insider["data_dir"] == str(keyed.data_dir)
            assert insider["redis"] == keyed.redis_url and insider["disk"]["min_free_mb"] == 0
            (worker,) = [w for w in insider["workers"] if w["hostname"] == fake]
            assert worker["device"] == "cuda:0" and worker["pid"] == 4242
            bearer = client.get("/readyz", headers={"Authorization": "Bearer s3cret"}).json()
            assert fake in {w["hostname"] for w in bearer["workers"]}
        finally:
            WorkerRegistry(store.client, store.prefix).forget(fake)
        assert client.get("/healthz").json() == {"status": "ok"}
    # Down is down, whatever the reason, for a stranger; the reason is the key holder's.
    full = keyed.model_copy(update={"min_free_mb": 10**9})
    with TestClient(create_app(full)) as client:
        stranger = client.get("/readyz")
        assert stranger.status_code == 503 and stranger.json() == {"status": "unavailable"}
        insider = client.get("/readyz", headers={"X-API-Key": "s3cret"})
        assert insider.status_code == 503 and insider.json()["status"] == "low_disk"
        assert "DDPM_MIN_FREE_MB" in insider.json()["detail"]
    # No key configured: everything, as before.
    with TestClient(create_app(idle_settings.model_copy(update={"min_free_mb": 0}))) as client:
        assert "data_dir" in client.get("/readyz").json()
