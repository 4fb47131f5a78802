"""docker compose and the Dockerfile, checked structurally (no Docker engine runs the tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_services_and_gpu_reservation(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "api", "worker"} <= set(services)
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "deploy" not in services["api"]  # the API never runs a model
    assert services["api"]["command"][:2] == ["uvicorn", "service.app:app"]
    assert services["worker"]["command"][:2] == ["ddpm", "worker"]


def test_api_and_worker_share_one_named_data_volume(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mounts = {name: services[name]["volumes"] for name in ("api", "worker")}
    assert mounts["api"] == mounts["worker"] == ["ddpm-data:/data"]
    assert "ddpm-data" in compose["volumes"]
    for name in ("api", "worker"):
        env = _env(services[name])
        assert env["DATA_DIR"] == "/data"
        assert env["REDIS_URL"] == "redis://redis:6379/0"


def test_redis_persists_and_everything_has_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis = services["redis"]
    assert (
        "--appendonly" in redis["command"]
        and redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    )
    volume = redis["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in compose["volumes"]
    for name in ("redis", "api", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert "python -m workers.health" in " ".join(services["worker"]["healthcheck"]["test"])
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["flower"]["profiles"] == ["flower"]  # optional


def test_tensorboard_is_optional_and_reads_the_runs(compose: dict[str, Any]) -> None:
    tensorboard = compose["services"]["tensorboard"]
    assert tensorboard["profiles"] == ["tensorboard"]
    assert tensorboard["image"] == compose["services"]["api"]["image"]  # the app image has tensorboard
    command = tensorboard["command"]
    assert command[0] == "tensorboard" and command[command.index("--logdir") + 1] == "/data/runs"
    assert tensorboard["volumes"] == ["ddpm-data:/data:ro"] and tensorboard["ports"] == ["6006:6006"]


def test_dockerfile_installs_the_packages_and_serves_the_app() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "\nFROM python:3.11" in text
    for package in ("models", "ddpm", "service", "workers"):
        assert f"COPY {package} ./{package}" in text
    assert 'CMD ["uvicorn", "service.app:app"' in text
    assert "USER ddpm" in text and "EXPOSE 8000" in text
    # FID's Inception weights are built offline at image build time, before dropping privileges.
    assert text.index("RUN ddpm fid-weights --no-download") < text.index("USER ddpm")
    assert "TORCH_HOME=/opt/torch" in text


def test_worker_health_probe_runs(settings: Any) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "REDIS_URL": settings.redis_url, "DDPM_KEY_PREFIX": settings.key_prefix + "-nobody"}
    result = subprocess.run([sys.executable, "-m", "workers.health"], env=env, capture_output=True, text=True)
    assert result.returncode == 1 and "no worker heartbeat" in result.stderr
