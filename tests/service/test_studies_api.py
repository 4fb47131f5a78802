"""Studies through the API with no worker on its queue (jobs stay queued): a study's member jobs are
the ordinary jobs the other routes make, a study that cannot run is a 422 before anything is queued,
cancel and retry, one job per stage however many callers advance it, and a study Redis lost comes
back from the volume. Running studies to the end is tests/service/test_studies_run.py."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobs.settings import Settings
from jobs.store import JobStore
from jobs.studies import StudyStore
from jobs.study_steps import StudySteps

TWO = {
    "preset": "digits-smoke",
    "name": "two variants",
    "variants": ["pure_unet", "convnext"],
    "train": {"max_steps": 3, "batch_size": 8},
    "evaluation": {"fid_n": [4, 8], "grid_n": 10, "metrics": ["fid"]},
}


def _counts(client: TestClient) -> tuple[int, int]:
    jobs = client.get("/jobs", params={"limit": 500}).json()["jobs"]
    return len(jobs), len(client.get("/studies").json()["studies"])


def _jobs_of(client: TestClient, study_id: str) -> list[dict[str, Any]]:
    jobs = client.get("/jobs", params={"limit": 500}).json()["jobs"]
    return [job for job in jobs if job["params"].get("study_id") == study_id]


@pytest.mark.parametrize(
    ("body", "loc", "needle"),
    [
        ({**TWO, "variants": ["pure_unet", "no_such_net"]}, ["body", "variants[1]"], "no_such_net"),
        ({**TWO, "train": {"image_size": 20}}, ["body", "train", "image_size"], "20 does not fit"),
        ({**TWO, "train": {"width": 1000}}, ["body", "train", "width"], "1000"),
        ({**TWO, "evaluation": {"fid_n": [1]}}, ["body", "evaluation", "fid_n[0]"], "[2, "),
        ({"preset": "report-table2"}, ["body", "preset"], "report-table1, digits-smoke"),
        (
            {**TWO, "evaluation": {"fid_n": [4], "fid_dataset": "mnist"}},
            ["body", "evaluation", "fid_dataset"],
            "mnist",
        ),
        ({**TWO, "attach": {"pure_unet@0": "no-such-run"}}, ["body", "attach", "pure_unet@0"], "no-such-run"),
    ],
)
def test_a_study_that_cannot_run_is_a_422_naming_the_field_before_anything_is_queued(
    idle_client: TestClient, body: dict[str, Any], loc: list[str], needle: str
) -> None:
    before = _counts(idle_client)
    response = idle_client.post("/studies", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc and needle in detail["msg"], detail
    assert _counts(idle_client) == before


def test_presets_are_listed(idle_client: TestClient) -> None:
    presets = {p["name"]: p for p in idle_client.get("/studies/presets").json()["presets"]}
    assert set(presets) == {"report-table1", "digits-smoke"}
    table1 = presets["report-table1"]["spec"]
    assert len(table1["variants"]) == 10 and table1["train"]["epochs"] == 100
    assert 4096 in table1["evaluation"]["fid_n"]


def test_a_study_queues_one_ordinary_training_job_per_member(
    idle_client: TestClient, idle_settings: Settings
) -> None:
    accepted = idle_client.post("/studies", json=TWO)
    assert accepted.status_code == 202, accepted.text
    study = accepted.json()
    assert accepted.headers["location"] == f"/studies/{study['id']}"
    assert study["state"] == "running" and [m["key"] for m in study["member_states"]] == [
        "pure_unet@0",
        "convnext@0",
    ]
    jobs = _jobs_of(idle_client, study["id"])
    assert sorted(job["kind"] for job in jobs) == ["train", "train"]
    for member in study["member_states"]:
        train = member["stages"]["train"]
        assert train["state"] == "queued" and member["stages"]["fid"]["state"] is None
        job = idle_client.get(f"/jobs/{train['job_id']}").json()
        # POST /train's params for the same recipe, plus the study's id.
        config = {**TWO["train"], "dataset": "digits", "image_size": 16, "width": 0.125, "lr": 1e-3}
        assert {k: job["params"]["config"][k] for k in config} == config
        assert (
            job["params"]["config"]["arch"] == member["variant"] and job["params"]["study_id"] == study["id"]
        )
        assert idle_client.get(f"/runs/{member['run_id']}").json()["status"] == "queued"
    assert [row["variant"] for row in study["table"]] == ["pure_unet", "convnext"]
    listed = {s["id"]: s for s in idle_client.get("/studies").json()["studies"]}
    assert listed[study["id"]]["members"] == 2 and listed[study["id"]]["done"] == 0

    # Many callers advancing at once (API reads, workers, the sweep) still queue each stage once.
    store = idle_client.app.state.store
    steps = StudySteps(
        StudyStore(store, idle_settings.data_dir), idle_client.app.state.queue.enqueue, idle_settings.data_dir
    )
    threads = [threading.Thread(target=steps.advance, args=(study["id"],)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert idle_client.get(f"/studies/{study['id']}").status_code == 200
    assert len(_jobs_of(idle_client, study["id"])) == 2

    # Cancel: every unfinished member job stops; retry queues them again (new jobs, same runs).
    cancelled = idle_client.delete(f"/studies/{study['id']}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled" and len(cancelled.json()["cancelled_jobs"]) == 2
    assert {job["state"] for job in _jobs_of(idle_client, study["id"])} == {"cancelled"}
    shown = idle_client.get(f"/studies/{study['id']}").json()
    assert {m["state"] for m in shown["member_states"]} == {"cancelled"}
    assert len(_jobs_of(idle_client, study["id"])) == 2  # reading a cancelled study queues nothing

    retried = idle_client.post(f"/studies/{study['id']}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["retried"] == ["pure_unet@0", "convnext@0"] and retried.json()["state"] == "running"
    jobs = _jobs_of(idle_client, study["id"])
    assert sorted(job["state"] for job in jobs) == ["cancelled", "cancelled", "queued", "queued"]
    again = idle_client.get(f"/studies/{study['id']}").json()
    assert {m["run_id"] for m in again["member_states"]} == {m["run_id"] for m in study["member_states"]}
    assert idle_client.post(f"/studies/{study['id']}/retry").status_code == 409  # nothing failed now
    idle_client.delete(f"/studies/{study['id']}")


def test_a_study_redis_lost_comes_back_from_the_volume(
    idle_client: TestClient, idle_settings: Settings
) -> None:
    study = idle_client.post("/studies", json={**TWO, "variants": ["pure_unet"]}).json()
    store: JobStore = idle_client.app.state.store
    studies = StudyStore(store, idle_settings.data_dir)
    job_id = study["member_states"][0]["stages"]["train"]["job_id"]
    store.client.delete(studies.key(study["id"]))
    store.client.zrem(studies.index_key, study["id"])
    assert study["id"] in {s["id"] for s in idle_client.get("/studies").json()["studies"]}
    back = idle_client.get(f"/studies/{study['id']}").json()
    assert back["member_states"][0]["stages"]["train"]["job_id"] == job_id  # not queued a second time
    assert len(_jobs_of(idle_client, study["id"])) == 1
    assert idle_client.delete(f"/studies/{study['id']}").status_code == 200


def test_an_unknown_study_is_a_404(idle_client: TestClient) -> None:
    for response in (
        idle_client.get("/studies/0123456789abcdef0123456789abcdef"),
        idle_client.get("/studies/not-an-id/report"),
        idle_client.delete("/studies/0123456789abcdef0123456789abcdef"),
        idle_client.post("/studies/0123456789abcdef0123456789abcdef/retry"),
    ):
        assert response.status_code == 404, response.text
        assert "GET /studies lists them" in response.json()["detail"]


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ('{"preset": "digits-smoke", "train": {"lr": NaN}}', ["body", "train", "lr"]),
        ('{"preset": "digits-smoke", "train": 5}', ["body", "train"]),
        ('{"preset": "digits-smoke", "evaluation": {"grid_n": 100000}}', ["body", "evaluation", "grid_n"]),
        ('{"name": "x", "variants": [], "evaluation": {"fid_n": [4]}}', ["body", "variants"]),
        ("[1, 2]", ["body"]),
    ],
)
def test_hostile_study_bodies_are_422s_not_500s(idle_client: TestClient, raw: str, loc: list[str]) -> None:
    response = idle_client.post("/studies", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


def test_a_broker_that_refuses_the_jobs_is_a_503_and_the_study_can_be_retried(
    idle_client: TestClient,
) -> None:
    import kombu.exceptions

    def broker_down(kind: str, job_id: str, queue: str | None = None) -> None:
        raise kombu.exceptions.OperationalError("Error 111 connecting to broker. Connection refused.")

    queue = idle_client.app.state.queue
    working, queue.enqueue = queue.enqueue, broker_down
    try:
        refused = idle_client.post("/studies", json={**TWO, "name": "no broker", "variants": ["pure_unet"]})
    finally:
        queue.enqueue = working
    assert refused.status_code == 503 and "POST /studies/" in refused.json()["detail"]
    study_id = refused.json()["links"]["study"].rsplit("/", 1)[1]
    shown = idle_client.get(f"/studies/{study_id}").json()
    (member,) = shown["member_states"]
    assert member["state"] == "failed" and "could not publish" in member["error"]
    assert idle_client.get(f"/runs/{member['run_id']}").json()["status"] == "failed"
    retried = idle_client.post(f"/studies/{study_id}/retry")
    assert retried.status_code == 202 and retried.json()["retried"] == ["pure_unet@0"]
    assert (
        idle_client.get(f"/studies/{study_id}").json()["member_states"][0]["stages"]["train"]["state"]
        == "queued"
    )
    assert idle_client.get(f"/runs/{member['run_id']}").json()["status"] == "queued"  # queued again
    idle_client.delete(f"/studies/{study_id}")


def test_an_attached_finished_run_is_evaluated_not_trained_again(
    idle_client: TestClient, local_checkpoint: dict[str, Any]
) -> None:
    recipe = {"dataset": "digits", "width": 0.125, "image_size": 16, "batch_size": 8, "max_steps": 1}
    body = {
        "name": "attached",
        "variants": ["rdn"],
        "train": recipe,
        "evaluation": {
            "fid_n": [4],
            "metrics": ["fid"],
            "sampler": {"sampler": "ddim", "steps": 2},
            "grid_n": 4,
        },
        "attach": {"rdn@0": local_checkpoint["run_id"]},
    }
    other = idle_client.post("/studies", json={**body, "train": {**recipe, "lr": 1e-3}})
    assert other.status_code == 422, other.text
    assert (
        other.json()["detail"][0]["loc"] == ["body", "attach", "rdn@0"]
        and "lr" in other.json()["detail"][0]["msg"]
    )

    accepted = idle_client.post("/studies", json=body)
    assert accepted.status_code == 202, accepted.text
    study = accepted.json()
    (member,) = study["member_states"]
    assert member["run_id"] == local_checkpoint["run_id"] and member["stages"]["train"]["state"] == "attached"
    assert member["state"] == "evaluating"
    jobs = _jobs_of(idle_client, study["id"])
    assert sorted(job["kind"] for job in jobs) == ["fid", "sample"]
    fid = next(job for job in jobs if job["kind"] == "fid")
    assert fid["params"]["checkpoint"]["step"] == local_checkpoint["step"] and fid["params"]["n_samples"] == [
        4
    ]
    idle_client.delete(f"/studies/{study['id']}")


def test_a_study_recipe_takes_every_training_option_of_post_train():
    """The study's `train` is POST /train's body less what a study sets per member (arch, seed, run id,
    resume) and the train presets (a study names its own recipe in full)."""
    from ddpm.study.spec import TRAIN_DEFAULTS
    from service.schemas import TrainRequest

    per_member = {"arch", "seed", "run_id", "resume", "preset"}
    assert set(TRAIN_DEFAULTS) == set(TrainRequest.model_fields) - per_member
    for name, default in TRAIN_DEFAULTS.items():
        assert TrainRequest.model_fields[name].default == default, name
