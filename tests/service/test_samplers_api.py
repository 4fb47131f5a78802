"""Issue 13 through the service: every sampler and its options reach the worker, the cache key holds
exactly the options that change pixels, and FID requests record the sampler they ran."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from ddpm.sampler_spec import SamplerSpec
from jobs.batching import batch_key
from jobs.specs import CheckpointRef, SampleSpec
from tests.stack import finished, wait_for

REF = CheckpointRef("rdn", "rdn-local", 1, 1.0, "model")


def _spec(**sampler: Any) -> SampleSpec:
    return SampleSpec(REF, 0, 4, 4, SamplerSpec(**sampler))


def test_equivalent_requests_share_a_cache_key_and_pixel_changing_options_do_not() -> None:
    assert _spec(sampler="ddim").key == _spec(sampler="ddim", steps=50, eta=0.0, clip_x0=True).key
    assert _spec(sampler="ddpm").key == _spec(sampler="ddpm", steps=1000, variance="beta").key
    assert _spec(sampler="heun", churn=0.0).key == _spec(sampler="heun").key
    different = [
        _spec(sampler="ddpm"),
        _spec(sampler="ddpm", variance="beta_tilde"),
        _spec(sampler="ddpm", clip_x0=True),
        _spec(sampler="ddim"),
        _spec(sampler="ddim", clip_x0=False),
        _spec(sampler="dpmpp_2m", steps=10),
        _spec(sampler="dpmpp_2m", steps=10, spacing="time"),
        _spec(sampler="heun", steps=10),
        _spec(sampler="heun", steps=10, timestep="nearest"),
        _spec(sampler="heun", steps=10, churn=5.0),
    ]
    assert len({s.key for s in different}) == len(different)
    # Batching shares network calls only under the same sampler settings; seed and n may differ.
    assert batch_key(_spec(sampler="heun", steps=10)) != batch_key(_spec(sampler="heun", steps=10, churn=5.0))
    assert batch_key(_spec(sampler="dpmpp_2m")) == batch_key(
        SampleSpec(REF, 7, 9, 3, SamplerSpec("dpmpp_2m"))
    )


def test_a_spec_survives_the_trip_to_the_worker_and_old_jobs_still_read() -> None:
    spec = _spec(sampler="heun", steps=6, timestep="nearest", churn=2.0, churn_noise=1.005)
    assert SampleSpec.from_params(spec.to_params()) == spec
    # A job queued before samplers had options: sampler, steps, eta (0.0 even for ddpm).
    old = {**spec.to_params(), "sampler": "ddpm", "steps": 1000, "eta": 0.0}
    for name in ("timestep", "churn", "churn_noise", "churn_tmin", "clip_x0"):
        old.pop(name, None)
    assert SampleSpec.from_params(old).sampler == SamplerSpec("ddpm")
    # The pinned URL names every option, so following it reaches the same grid.
    query = spec.query()
    assert query["sampler"] == "heun" and query["timestep"] == "nearest" and query["churn"] == 2.0


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    "sampler",
    [
        {"sampler": "dpmpp_2m", "steps": 3, "spacing": "time"},
        {"sampler": "heun", "steps": 2, "churn": 1.0},
        {"sampler": "ddim", "steps": 2, "clip_x0": "false"},
    ],
    ids=lambda s: s["sampler"],
)
def test_fast_samplers_make_grids_through_the_worker(
    client: TestClient, local_checkpoint: dict, sampler: dict[str, Any]
) -> None:
    query = {"run": local_checkpoint["run_id"], "seed": 5, "n": 2, "nrow": 2, **sampler, "wait": 120}
    grid = client.get("/samples", params=query)
    assert grid.status_code == 200, grid.text
    assert grid.headers["content-type"] == "image/png"
    pinned = client.get(grid.headers["content-location"])
    assert pinned.status_code == 200 and pinned.content == grid.content
    assert f"sampler={sampler['sampler']}" in grid.headers["content-location"]


@pytest.mark.usefixtures("worker")
def test_fid_records_the_sampler_it_ran(client: TestClient, local_checkpoint: dict) -> None:
    body = {"run": local_checkpoint["run_id"], "n_samples": 4, "dataset": "digits"}
    accepted = client.post("/fid", json={**body, "sampler": "dpmpp_2m", "steps": 2, "batch_size": 4})
    assert accepted.status_code == 202, accepted.text
    params = client.get(f"/jobs/{accepted.json()['job_id']}").json()["params"]
    assert params["sampler"] == "dpmpp_2m" and params["steps"] == 2 and params["spacing"] == "logsnr"
    client.delete(f"/jobs/{accepted.json()['job_id']}")
    if "reference_job" in accepted.json()["links"]:  # the digits' statistics alone take minutes
        client.delete(accepted.json()["links"]["reference_job"])
    wait_for(client, accepted.json()["job_id"], finished, timeout=300)
    refused = client.post("/fid", json={**body, "sampler": "ddpm", "spacing": "time"})
    assert refused.status_code == 422
    assert "spacing='time' does not apply to the ddpm sampler" in refused.text
