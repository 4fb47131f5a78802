"""GET /metrics parses as Prometheus text and follows real jobs on a real worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from jobs.settings import Settings
from service.app import create_app
from tests.stack import TINY_TRAIN, finished, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_until(client: TestClient, ready: Callable[[Samples], bool], timeout: float = 60.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(client)
        if ready(samples):
            return samples
        if time.monotonic() > deadline:
            pytest.fail(f"/metrics never got there in {timeout}s: {samples}")
        time.sleep(0.1)


def test_queued_jobs_and_queue_depth(idle_client: TestClient, idle_settings: Settings) -> None:
    before = scrape(idle_client)
    assert value(before, "ddpm_redis_up") == 1
    queue = idle_settings.queue
    accepted = idle_client.post("/train", json={"arch": "pure_unet", "max_steps": 1, **TINY_TRAIN}).json()
    after = scrape(idle_client)
    assert (
        value(after, "ddpm_queue_messages", queue=queue)
        == value(before, "ddpm_queue_messages", queue=queue) + 1
    )
    queued = value(after, "ddpm_jobs", kind="train", state="queued")
    assert queued == value(before, "ddpm_jobs", kind="train", state="queued") + 1
    assert idle_client.delete(f"/jobs/{accepted['job_id']}").status_code == 200
    cancelled = scrape(idle_client)
    assert value(cancelled, "ddpm_jobs", kind="train", state="queued") == queued - 1
    # Never started: no run time to count.
    assert value(cancelled, "ddpm_job_duration_seconds_count", kind="train", state="cancelled") == value(
        before, "ddpm_job_duration_seconds_count", kind="train", state="cancelled"
    )


def test_a_training_job_moves_the_figures_and_logs_to_tensorboard(
    client: TestClient, settings: Settings, worker: dict[str, Any]
) -> None:
    before = scrape(client)
    assert value(before, "ddpm_workers", queue=settings.queue) >= 1
    accepted = client.post("/train", json={"arch": "pure_unet", "max_steps": 400, **TINY_TRAIN}).json()
    job_id = accepted["job_id"]

    def training_with_a_rate(samples: Samples) -> bool:
        rates = [v for (name, _), v in samples.items() if name == "ddpm_training_images_per_second"]
        return value(samples, "ddpm_jobs", kind="train", state="running") >= 1 and any(r > 0 for r in rates)

    running = scrape_until(client, training_with_a_rate)
    assert value(running, "ddpm_training_images_per_second", worker=worker["name"]) > 0
    job = client.get(f"/jobs/{job_id}").json()
    assert job["rate_phase"] == "train" and job["images_per_s"] > 0

    client.delete(f"/jobs/{job_id}")  # enough seen; stop it after its current step
    done = wait_for(client, job_id, finished)
    assert done["state"] == "cancelled", done
    after = scrape(client)
    for state in ("succeeded", "cancelled"):
        assert value(after, "ddpm_jobs", kind="train", state=state) >= value(
            before, "ddpm_jobs", kind="train", state=state
        )
    count = "ddpm_job_duration_seconds_count"
    assert (
        value(after, count, kind="train", state="cancelled")
        == value(before, count, kind="train", state="cancelled") + 1
    )
    assert value(after, "ddpm_job_duration_seconds_bucket", kind="train", state="cancelled", le="+Inf") >= 1
    trained = value(after, "ddpm_trained_images_total") - value(before, "ddpm_trained_images_total")
    assert trained == done["step"] * TINY_TRAIN["batch_size"]
    assert not [k for k in after if k[0] == "ddpm_training_images_per_second"]  # nothing runs now
    again = scrape(client)  # a second scrape does not count the job twice
    assert value(again, count, kind="train", state="cancelled") == value(
        after, count, kind="train", state="cancelled"
    )

    # The worker wrote TensorBoard events: a loss per step, and a grid at the step it stopped at.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(settings.data_dir / "runs" / accepted["run_id"] / "tensorboard"))
    events.Reload()
    assert events.Scalars("train/loss")[-1].step == done["step"]
    assert [image.step for image in events.Images("samples")] == [done["step"]]


def test_a_sampling_job_counts_its_images(
    client: TestClient, worker: dict[str, Any], local_checkpoint: dict[str, Any]
) -> None:
    before = scrape(client)
    query = {"run": local_checkpoint["run_id"], "seed": 11, "n": 3, "sampler": "ddim", "steps": 4}
    accepted = client.get("/samples", params=query)
    assert accepted.status_code == 202, accepted.text
    job = wait_for(client, accepted.json()["job_id"], finished)
    assert job["state"] == "succeeded" and job["rate_phase"] == "sample"
    after = scrape(client)
    sampled = value(after, "ddpm_sampled_images_total", kind="sample") - value(
        before, "ddpm_sampled_images_total", kind="sample"
    )
    image_steps = value(after, "ddpm_sampled_image_steps_total", kind="sample") - value(
        before, "ddpm_sampled_image_steps_total", kind="sample"
    )
    assert sampled == pytest.approx(3) and image_steps == pytest.approx(3 * 4)
    assert value(after, "ddpm_job_duration_seconds_count", kind="sample", state="succeeded") == (
        value(before, "ddpm_job_duration_seconds_count", kind="sample", state="succeeded") + 1
    )


def test_metrics_need_the_api_key_when_one_is_set(idle_settings: Settings) -> None:
    keyed = idle_settings.model_copy(update={"api_key": SecretStr("s3cret")})
    with TestClient(create_app(keyed)) as client:
        assert client.get("/metrics").status_code == 401
        assert value(scrape(client, Authorization="Bearer s3cret"), "ddpm_redis_up") == 1


def test_redis_down_is_a_scrape_that_says_so(idle_settings: Settings) -> None:
    down = idle_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "redis_timeout_s": 0.5})
    with TestClient(create_app(down)) as client:
        samples = scrape(client)
    assert value(samples, "ddpm_redis_up") == 0 and len(samples) == 1


def test_the_last_fid_jobs_phases_are_gauges(idle_client: TestClient, idle_settings: Settings) -> None:
    import redis

    from jobs import telemetry

    client = redis.Redis.from_url(idle_settings.redis_url)
    phases = {
        "sampling": {"images_per_s": 12.5, "fraction": 0.61},
        "features": {"images_per_s": 4.0, "fraction": 0.55},
        "distance": {"images_per_s": 30.0, "fraction": None},  # not counted: left out, not 0
    }
    telemetry.record_fid_phases(client, idle_settings.key_prefix, phases)
    samples = scrape(idle_client)
    assert value(samples, "ddpm_fid_phase_images_per_second", phase="features") == 4.0
    assert value(samples, "ddpm_fid_phase_rate_fraction", phase="sampling") == 0.61
    assert ("ddpm_fid_phase_rate_fraction", (("phase", "distance"),)) not in samples
    # The next FID job replaces the figures: a phase it did not run (no reference computed) goes.
    telemetry.record_fid_phases(client, idle_settings.key_prefix, {"features": {"images_per_s": 5.0}})
    samples = scrape(idle_client)
    assert value(samples, "ddpm_fid_phase_images_per_second", phase="features") == 5.0
    assert ("ddpm_fid_phase_images_per_second", (("phase", "sampling"),)) not in samples
