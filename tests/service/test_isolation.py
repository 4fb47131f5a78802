"""What the API process loads, what it answers when Redis is down, and that its limits match the engine's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fastapi.testclient import TestClient

from jobs.settings import Settings
from service.app import create_app


def _run(code: str, **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_app_loads_no_torch() -> None:
    loaded = _run(
        "import sys, json, service.app; "
        "print(json.dumps([m for m in ('torch', 'models.unet', 'ddpm.training', 'workers') if m in sys.modules]))"
    )
    assert loaded == []


def test_serving_requests_loads_no_torch(settings: Settings, local_checkpoint: dict) -> None:
    code = f"""
import sys, json, warnings
warnings.filterwarnings("ignore")
from fastapi.testclient import TestClient
from service.app import create_app
from jobs.settings import Settings
settings = Settings(redis_url={settings.redis_url!r}, data_dir={str(settings.data_dir)!r},
                    key_prefix={settings.key_prefix!r}, queue={settings.key_prefix + "-idle"!r})
client = TestClient(create_app(settings))
paths = ("/archs", "/runs", "/runs/rdn-local", "/fid", "/jobs", "/healthz", "/runs/rdn-local/loss.png", "/fid/plot.png", "/metrics")
codes = [client.get(p).status_code for p in paths]
codes.append(client.get("/samples", params={{"arch": "deep"}}).status_code)
sample = client.get("/samples", params={{"arch": "rdn", "n": 2, "seed": 99}})
codes.append(sample.status_code)
client.delete("/jobs/" + sample.json()["job_id"])
print(json.dumps({{"codes": codes, "torch": "torch" in sys.modules}}))
"""
    out = _run(code)
    assert out == {"codes": [200] * 9 + [409, 202], "torch": False}


def test_redis_down_is_503_with_a_clear_message(idle_settings: Settings) -> None:
    down = idle_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "redis_timeout_s": 0.5})
    with TestClient(create_app(down), raise_server_exceptions=False) as client:
        for response in (
            client.get("/jobs"),
            client.get("/jobs/abc"),
            client.delete("/jobs/abc"),
            client.get("/jobs/abc/events"),
            client.post("/train", json={"arch": "biggan"}),
            client.get("/readyz"),
        ):
            assert response.status_code == 503, response.text
            detail = response.json()["detail"]
            assert "Redis is unreachable at redis://127.0.0.1:1/0" in detail
            assert "Traceback" not in response.text
        # Work that needs no Redis still answers, and liveness does not depend on Redis.
        assert client.get("/archs").status_code == 200
        assert client.get("/healthz").json() == {"status": "ok"}


def test_engine_and_service_share_one_copy_of_each_limit() -> None:
    """The engine's checks and the API's schemas read the same objects from ddpm.limits."""
    from ddpm import data, limits, runs, samplers, sampling, training
    from ddpm.fid import options as fid_options
    from ddpm.schedule import make_schedule

    assert training.MAX_EPOCHS is limits.MAX_EPOCHS and training.MAX_BATCH is limits.MAX_BATCH
    assert training.MAX_WIDTH is limits.MAX_WIDTH
    assert sampling.MAX_SAMPLES is limits.MAX_SAMPLES and fid_options.MAX_N is limits.MAX_SAMPLES
    assert samplers.SAMPLERS is limits.SAMPLERS
    assert data.BUILTIN_DATASETS is limits.BUILTIN_DATASETS and data.FOLDER_PREFIX is limits.FOLDER_PREFIX
    assert runs.RUN_ID_PATTERN.pattern == limits.RUN_ID_REGEX
    assert limits.DDPM_STEPS == limits.MAX_SAMPLER_STEPS == make_schedule("linear").timesteps
