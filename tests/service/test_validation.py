"""Bad input gets a clear status and message; good input queues a job (on a queue nobody consumes)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from jobs.settings import Settings
from models import arch_names
from tests.stack import TINY_TRAIN


def _detail(response: Any) -> str:
    return str(response.json()["detail"])


def test_archs_lists_every_variant_with_report_figures(idle_client: TestClient) -> None:
    archs = idle_client.get("/archs").json()
    names = {a["name"]: a for a in archs}
    assert len(archs) == len(arch_names())
    assert names["biggan"]["report_name"] == "DDPM_BigGAN"
    assert names["biggan"]["report_fid"] == pytest.approx(53.096)
    assert names["baseline"]["params"] == 23_332_739


# Every route that takes a variant: (method, path, the request's keyword arguments, the field's loc).
UNKNOWN_VARIANT_REQUESTS = [
    ("post", "/train", {"json": {"arch": "bigan"}}, ["body", "arch"]),
    ("get", "/samples", {"params": {"arch": "bigan"}}, ["query", "arch"]),
    ("post", "/fid", {"json": {"arch": "bigan"}}, ["body", "arch"]),
    ("post", "/analysis", {"json": {"arch": "bigan"}}, ["body", "arch"]),
    ("get", "/fid/plot.png", {"params": {"arch": "bigan"}}, ["query", "arch", 0]),
    (
        "post",
        "/studies",
        {"json": {"preset": "digits-smoke", "variants": ["bigan"]}},
        ["body", "variants[0]"],
    ),
]


@pytest.mark.parametrize(("method", "path", "request_args", "loc"), UNKNOWN_VARIANT_REQUESTS)
def test_unknown_variant_is_one_line_naming_the_valid_ones(
    idle_client: TestClient, method: str, path: str, request_args: dict[str, Any], loc: list[Any]
) -> None:
    response = getattr(idle_client, method)(path, **request_args)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]  # one complaint, not one per name
    assert error["loc"] == loc
    assert error["msg"] == (
        f"unknown variant 'bigan' (did you mean biggan?); valid: {', '.join(arch_names())} "
        "(GET /archs; '+' combines presets)"
    )


def test_an_unknown_variant_far_from_any_name_suggests_none(idle_client: TestClient) -> None:
    response = idle_client.post("/train", json={"arch": "resnet50"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith("unknown variant 'resnet50'; valid: baseline,")


def test_report_names_are_accepted_case_insensitively(
    idle_client: TestClient, idle_settings: Settings
) -> None:
    response = idle_client.post("/train", json={"arch": "ddpm_biggan", "max_steps": 1, **TINY_TRAIN})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert response.headers["location"] == f"/jobs/{accepted['job_id']}"
    job = idle_client.get(f"/jobs/{accepted['job_id']}").json()
    assert job["state"] == "queued" and job["kind"] == "train"
    assert job["params"]["config"]["arch"] == "biggan"
    # The run exists (queued) before any worker picks it up, with the defaults of the report filled in.
    run = idle_client.get(f"/runs/{accepted['run_id']}").json()
    assert run["status"] == "queued" and run["arch"] == "biggan"
    assert run["train_config"]["lr"] == 2e-4 and run["train_config"]["epochs"] == 100
    # Cancelling a queued job is immediate; its run says so.
    cancelled = idle_client.delete(f"/jobs/{accepted['job_id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert idle_client.get(f"/runs/{accepted['run_id']}").json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("epochs", 10_001),
        ("batch_size", 0),
        ("batch_size", 4097),
        ("lr", 0),
        ("lr", 2),
        ("width", 0),
        ("width", 4.5),
        ("seed", -1),
        ("seed", 2**63),
        ("max_steps", 0),
        ("checkpoint_every", 0),
        ("image_size", 4),
        ("dataset", "imagenet"),
        ("dataset", "folder:../../etc"),
        ("dataset", "folder:/etc"),
        ("max_step", 10),  # a typo is an error, not silently ignored
    ],
)
def test_train_bounds(idle_client: TestClient, field: str, value: Any) -> None:
    response = idle_client.post("/train", json={"arch": "convnext", field: value})
    assert response.status_code == 422, response.text
    assert field in response.text


def test_train_needs_arch_and_resume_needs_a_run(idle_client: TestClient) -> None:
    response = idle_client.post("/train", json={})
    assert response.status_code == 422 and "arch is required" in response.text
    response = idle_client.post("/train", json={"resume": True})
    assert response.status_code == 422 and "run_id" in response.text
    response = idle_client.post("/train", json={"resume": True, "run_id": "no-such-run"})
    assert response.status_code == 404 and "no run" in _detail(response)


@pytest.mark.parametrize(
    ("params", "loc", "needle"),
    [
        ({"n": 0}, "n", "greater than or equal to 1"),
        ({"n": 50_001}, "n", "less than or equal to 50000"),
        ({"seed": -1}, "seed", "greater than or equal to 0"),
        ({"nrow": 0}, "nrow", "greater than or equal to 1"),
        ({"sampler": "euler"}, "sampler", "'ddpm', 'ddim', 'dpmpp_2m' or 'heun'"),
        ({"sampler": "ddim", "steps": 0}, "steps", "greater than or equal to 1"),
        ({"sampler": "ddim", "steps": 1001}, "steps", "less than or equal to 1000"),
        (
            {"sampler": "ddpm", "steps": 10},
            None,
            "ddpm sampler always runs 1000 steps, got steps=10; for fewer network calls",
        ),
        ({"eta": 1.5}, "eta", "less than or equal to 1"),
        (
            {"sampler": "ddpm", "eta": 0.5},
            None,
            "eta=0.5 does not apply to the ddpm sampler; it applies to ['ddim'] only",
        ),
        ({"sampler": "dpmpp_2m", "steps": 600}, None, "steps must be an integer in [1, 500] for dpmpp_2m"),
        ({"sampler": "heun", "spacing": "time"}, None, "spacing='time' does not apply to the heun sampler"),
        ({"sampler": "heun", "timestep": "rounded"}, "timestep", "'nearest' or 'interpolated'"),
        ({"sampler": "heun", "churn": -1}, "churn", "greater than or equal to 0"),
        ({"wait": -1}, "wait", "greater than or equal to 0"),
    ],
)
def test_sample_bounds(idle_client: TestClient, params: dict[str, Any], loc: str | None, needle: str) -> None:
    """Each refusal is one error, located at the field (or at the query for a cross-field rule), whose
    message says what is wrong: words that every 422 contains would prove nothing."""
    response = idle_client.get("/samples", params={"arch": "biggan", **params})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == (["query", loc] if loc else ["query"]), error
    assert needle in error["msg"], error


def test_service_limits_on_grid_size_and_wait(idle_client: TestClient, idle_settings: Settings) -> None:
    response = idle_client.get("/samples", params={"arch": "biggan", "n": idle_settings.sample_max_n + 1})
    assert response.status_code == 422 and "POST /fid" in _detail(response)
    response = idle_client.get("/samples", params={"arch": "biggan", "wait": idle_settings.max_wait_s + 1})
    assert response.status_code == 422 and "wait" in _detail(response)


def test_untrained_arch_is_409_saying_how_to_train(idle_client: TestClient) -> None:
    response = idle_client.get("/samples", params={"arch": "DDPM_Deep", "seed": 0, "n": 80})
    assert response.status_code == 409
    assert "no finished checkpoint" in _detail(response) and 'POST /train {"arch": "deep"}' in _detail(
        response
    )
    response = idle_client.post("/fid", json={"arch": "deep"})
    assert response.status_code == 409


def test_unknown_job_and_run_are_404(idle_client: TestClient) -> None:
    for path in ("/jobs/0123456789abcdef", "/jobs/nope/events", "/runs/no-such-run", "/runs/Bad..ID"):
        response = idle_client.get(path)
        assert response.status_code == 404, path
        assert "lists them" in _detail(response)
    assert idle_client.delete("/jobs/0123456789abcdef").status_code == 404
    response = idle_client.get("/samples", params={"run": "no-such-run"})
    assert response.status_code == 404


def test_sample_and_fid_against_a_real_checkpoint(
    idle_client: TestClient, local_checkpoint: dict[str, Any]
) -> None:
    run_id, step = local_checkpoint["run_id"], local_checkpoint["step"]
    # A step the run does not have, and an arch that is not the run's.
    response = idle_client.get("/samples", params={"run": run_id, "checkpoint": step + 1})
    assert response.status_code == 404 and f"kept steps: [{step}]" in _detail(response)
    response = idle_client.get("/samples", params={"run": run_id, "arch": "biggan"})
    assert response.status_code == 422
    response = idle_client.get("/samples", params={"checkpoint": step, "arch": "rdn"})
    assert response.status_code == 422 and "needs run" in _detail(response)

    # Identical requests join one queued job; an equivalent spelling (ddim's default steps) too.
    first = idle_client.get("/samples", params={"arch": "rdn", "n": 4, "sampler": "ddim"})
    assert first.status_code == 202, first.text
    body = first.json()
    assert first.headers["location"] == f"/jobs/{body['job_id']}" and body["joined"] is False
    again = idle_client.get("/samples", params={"arch": "DDPM_RDN", "n": 4, "sampler": "ddim", "steps": 50})
    assert again.status_code == 202 and again.json()["job_id"] == body["job_id"] and again.json()["joined"]
    # Once the job is cancelled, the next request starts a new one.
    assert idle_client.delete(f"/jobs/{body['job_id']}").status_code == 200
    third = idle_client.get("/samples", params={"arch": "rdn", "n": 4, "sampler": "ddim"})
    assert third.status_code == 202 and third.json()["job_id"] != body["job_id"]
    idle_client.delete(f"/jobs/{third.json()['job_id']}")

    # FID: validation, then a queued job that records what will be scored.
    for bad in ({"n_samples": 1}, {"n_samples": list(range(100, 118))}, {"n_samples": 50_001}, {"seed": -1}):
        response = idle_client.post("/fid", json={"arch": "rdn", **bad})
        assert response.status_code == 422, bad
    response = idle_client.post("/fid", json={"run": run_id, "n_samples": [512, 128, 512], "sampler": "ddim"})
    assert response.status_code == 202, response.text
    job = idle_client.get(response.headers["location"]).json()
    assert job["kind"] == "fid" and job["state"] == "queued"
    assert job["params"]["n_samples"] == [128, 512] and job["params"]["steps"] == 50
    assert job["params"]["checkpoint"]["run_id"] == run_id and job["params"]["checkpoint"]["step"] == step
    assert idle_client.delete(f"/jobs/{job['id']}").json()["state"] == "cancelled"


def test_fid_table_lists_the_report_figures(idle_client: TestClient) -> None:
    table = idle_client.get("/fid").json()
    report = {row["arch"]: row["report_fid"] for row in table["report"]}
    assert report["biggan"] == pytest.approx(53.096) and report["pure_unet"] is None
    assert isinstance(table["rows"], list)
    markdown = idle_client.get("/fid", params={"format": "markdown"})
    assert markdown.status_code == 200 and markdown.text.startswith(
        "| arch | run | step | sampler | data set | N |"
    )


def test_jobs_listing_filters(idle_client: TestClient) -> None:
    # Jobs of each kind and state of its own, so that the filter has something to leave out whatever
    # else this session has queued (alone, the listing would be empty and any filter would pass).
    store = idle_client.app.state.store
    train, _ = store.create("train", {"note": "listing"})
    sample, _ = store.create("sample", {"note": "listing"})
    store.cancel(sample)

    trains = idle_client.get("/jobs", params={"kind": "train", "limit": 1000}).json()["jobs"]
    assert train in {job["id"] for job in trains} and sample not in {job["id"] for job in trains}
    assert all(job["kind"] == "train" for job in trains)
    cancelled = idle_client.get("/jobs", params={"state": "cancelled", "limit": 1000}).json()["jobs"]
    assert sample in {job["id"] for job in cancelled} and train not in {job["id"] for job in cancelled}
    assert all(job["state"] == "cancelled" for job in cancelled)
    both = idle_client.get("/jobs", params={"kind": "sample", "state": "queued", "limit": 1000}).json()
    assert not {train, sample} & {job["id"] for job in both["jobs"]}
    assert idle_client.get("/jobs", params={"state": "done"}).status_code == 422
    store.cancel(train)


def test_api_key_when_configured(idle_settings: Settings) -> None:
    from service.app import create_app

    with TestClient(create_app(idle_settings.model_copy(update={"api_key": SecretStr("s3cret")}))) as client:
        assert client.get("/archs").status_code == 401
        assert client.get("/archs", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get("/archs", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/archs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/healthz").status_code == 200  # probes need no key


def test_unpublishable_job_is_503_and_recorded_failed(idle_client: TestClient) -> None:
    import kombu.exceptions

    def broker_down(kind: str, job_id: str) -> None:
        raise kombu.exceptions.OperationalError("Error 111 connecting to broker. Connection refused.")

    idle_client.app.state.queue.enqueue = broker_down  # the broker refuses; Redis (job records) is up
    response = idle_client.post("/train", json={"arch": "biggan", "run_id": "unpublished", **TINY_TRAIN})
    assert response.status_code == 503 and "did not accept the job" in _detail(response)
    job = idle_client.get("/jobs", params={"kind": "train", "state": "failed"}).json()["jobs"][0]
    assert job["run_id"] == "unpublished" and "could not publish" in job["error"]
    assert idle_client.get("/runs/unpublished").json()["status"] == "failed"


def test_a_refused_publish_frees_the_sample_lock(
    idle_client: TestClient, local_checkpoint: dict[str, Any]
) -> None:
    """docs/reliability.md: a sampling job the broker refuses is recorded failed and its cache lock
    released, so the same request, once the broker is back, queues a new job instead of joining it."""
    import kombu.exceptions

    def broker_down(kind: str, job_id: str) -> None:
        raise kombu.exceptions.OperationalError("Error 111 connecting to broker. Connection refused.")

    query = {"run": local_checkpoint["run_id"], "n": 3, "sampler": "ddim", "steps": 3, "seed": 5}
    store, queue = idle_client.app.state.store, idle_client.app.state.queue
    working = queue.enqueue
    queue.enqueue = broker_down
    try:
        refused = idle_client.get("/samples", params=query)
    finally:
        queue.enqueue = working
    assert refused.status_code == 503 and "did not accept the job" in _detail(refused)
    failed = idle_client.get("/jobs", params={"kind": "sample", "state": "failed", "limit": 1000}).json()[
        "jobs"
    ]
    (job,) = [j for j in failed if j["params"]["seed"] == 5 and j["params"]["n"] == 3]
    assert "could not publish" in job["error"]
    assert store.lock_owner(f"sample:{job['params']['key']}") is None

    again = idle_client.get("/samples", params=query)
    assert again.status_code == 202, again.text
    assert again.json()["job_id"] != job["id"] and again.json()["joined"] is False
    assert store.lock_owner(f"sample:{job['params']['key']}") == again.json()["job_id"]
    idle_client.delete(f"/jobs/{again.json()['job_id']}")
