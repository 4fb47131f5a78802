"""The classifier study through the real service (API, Redis, a Celery worker): a classifier trained by
POST /classifiers, held-out real digits and a briefly trained model's samples analysed by POST /analysis,
the same analysis twice, listing, grids, comparison, cancel and resume of a classifier, and every 422
answered before anything is queued."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from ddpm.classifier.results import VOLATILE_FIELDS
from jobs.settings import Settings
from tests.conftest import make_image_folder
from tests.service.analysis_study import (
    CLASSIFIER,
    CLASSIFIER_BODY,
    HELD_OUT,
    REAL,
    RUN,
    SAMPLES,
    analyse,
    make_study,
    succeeded,
)
from tests.stack import wait_for

pytestmark = pytest.mark.usefixtures("worker")

PADDING = 2  # the grid's padding, as torchvision's make_grid


@pytest.fixture(scope="module")
def study(settings: Settings) -> dict[str, Any]:
    from service.app import create_app

    with TestClient(create_app(settings)) as client:
        return make_study(client, settings.data_dir)


@pytest.fixture(scope="module")
def analyses(settings: Settings, study: dict[str, Any]) -> dict[str, Any]:
    """Held-out real digits, and the same analysis of the briefly trained model's samples twice."""
    from service.app import create_app

    with TestClient(create_app(settings)) as client:
        return {"real": analyse(client, REAL), "samples": [analyse(client, SAMPLES) for _ in range(2)]}


def test_a_classifier_trained_through_the_service(client: TestClient, study: dict[str, Any]) -> None:
    job = study["classifier_job"]
    assert job["kind"] == "classifier" and job["progress"] == 1.0
    assert job["step"] == job["total"] > 0 and "held-out accuracy" in job["message"]
    listed = {c["name"]: c for c in client.get("/classifiers").json()["classifiers"]}
    mine = listed[CLASSIFIER]
    assert (mine["status"], mine["ready"], mine["dataset"], mine["image_size"]) == (
        "succeeded",
        True,
        "digits",
        8,
    )
    assert mine["job_id"] == job["id"] and mine["split"]["n_holdout"] == HELD_OUT
    assert mine["accuracy"] == job["result"]["accuracy"] > 0.95  # about 0.98 in 8 epochs at 8px
    low, high = mine["accuracy_ci95"]
    assert low < mine["accuracy"] < high
    assert [row["epoch"] for row in mine["history"]] == list(range(1, 9))
    assert mine["class_names"] == [str(d) for d in range(10)] and sum(mine["class_counts"]) == 1797

    again = client.post("/classifiers", json=CLASSIFIER_BODY)
    assert again.status_code == 409 and "resume: true" in again.json()["detail"]


def test_real_held_out_digits_look_like_the_data_set(analyses: dict[str, Any]) -> None:
    record = analyses["real"]["record"]
    assert (record["kind"], record["n"], record["classifier"], record["dataset"]) == (
        "real",
        100,
        CLASSIFIER,
        "digits",
    )
    assert sum(record["counts"]) == 100 and len(record["classes"]) == 10
    assert record["entropy"]["classes_present"] == 10 and record["entropy"]["normalised"] > 0.95
    divergence = record["divergence"]
    # Within sampling noise of the data set's own distribution: not measurably different.
    assert divergence["total_variation"] < divergence["null_total_variation_p95"]
    assert record["measurably_different"] is False
    assert record["label_accuracy"] > 0.9 and record["confident_share"] > 0.75
    assert len(record["image_indices"]) == 100 and record["n_available"] == HELD_OUT
    for entry in record["classes"]:
        low, high = entry["share_ci95"]
        assert low <= entry["share"] <= high and abs(entry["dataset_share"] - 0.1) < 0.01
    assert "checkpoint" not in record and record["links"]["grid"].endswith("/grid.png")


def test_a_briefly_trained_model_gives_a_measurably_different_histogram(
    client: TestClient, analyses: dict[str, Any], settings: Settings
) -> None:
    job, record = analyses["samples"][0]["job"], analyses["samples"][0]["record"]
    assert (record["kind"], record["run_id"], record["arch"], record["step"]) == (
        "samples",
        RUN,
        "baseline",
        3,
    )
    assert (record["sampler"], record["steps"], record["nfe"], record["seed"], record["n"]) == (
        "ddim",
        2,
        2,
        0,
        50,
    )
    # Stored relative to the data volume: a client never sees the server's paths.
    assert record["checkpoint"] == f"runs/{RUN}/checkpoints/step-00000003.safetensors"
    assert str(settings.data_dir) not in str(record)
    divergence = record["divergence"]
    assert divergence["total_variation"] > divergence["null_total_variation_p95"]
    assert divergence["p_value"] < 0.01 and record["measurably_different"] is True
    assert job["kind"] == "analysis" and "total variation" in job["message"]

    # Against the real images directly: a chi-square test of homogeneity of the two histograms.
    real_id = analyses["real"]["record"]["id"]
    compared = client.get("/analysis/compare", params={"a": real_id, "b": record["id"]})
    assert compared.status_code == 200, compared.text
    body = compared.json()
    assert body["different"] is True and body["comparison"]["p_value"] < 0.01
    assert body["comparison"]["total_variation"] > 0.3
    assert (body["first"]["id"], body["second"]["id"]) == (real_id, record["id"])
    assert [c["first_share"] for c in body["classes"]] == [
        c["share"] for c in analyses["real"]["record"]["classes"]
    ]


def test_the_same_analysis_twice_gives_identical_numbers_and_grid(
    client: TestClient, analyses: dict[str, Any]
) -> None:
    first, second = (run["record"] for run in analyses["samples"])
    assert first["id"] != second["id"] and first["job_id"] != second["job_id"]
    differ = {*VOLATILE_FIELDS, "job_id", "created", "links"}
    stable = [{k: v for k, v in r.items() if k not in differ} for r in (first, second)]
    assert stable[0] == stable[1]
    grids = [client.get(r["links"]["grid"]) for r in (first, second)]
    assert all(g.status_code == 200 and g.headers["content-type"] == "image/png" for g in grids)
    assert grids[0].content == grids[1].content
    # One row per class, `per_class` (8) cells across, of 8x8 images with 2 px padding.
    width, height = Image.open(io.BytesIO(grids[0].content)).size
    assert (width, height) == (8 * (8 + PADDING) + PADDING, 10 * (8 + PADDING) + PADDING)


def test_analyses_are_listed_newest_first_as_json_and_markdown(
    client: TestClient, analyses: dict[str, Any]
) -> None:
    ids = [analyses["real"]["record"]["id"], *(run["record"]["id"] for run in analyses["samples"])]
    listed = client.get("/analysis").json()["analyses"]
    positions = [next(i for i, row in enumerate(listed) if row["id"] == one) for one in ids]
    assert positions == sorted(positions, reverse=True)
    row = listed[positions[1]]
    assert (row["kind"], row["run_id"], row["classes"], row["measurably_different"]) == (
        "samples",
        RUN,
        10,
        True,
    )
    assert row["links"] == {"self": f"/analysis/{ids[1]}", "grid": f"/analysis/{ids[1]}/grid.png"}
    only_run = client.get("/analysis", params={"run": RUN}).json()["analyses"]
    assert {r["id"] for r in only_run} >= set(ids[1:]) and ids[0] not in {r["id"] for r in only_run}

    markdown = client.get("/analysis", params={"format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "| id | source |" in markdown.text and f"| {ids[0]} | held-out real images |" in markdown.text

    assert client.get("/analysis/20250101-120000-0badf00d").status_code == 404
    assert client.get("/analysis/not-an-id/grid.png").status_code == 404
    missing = client.get("/analysis/compare", params={"a": ids[0], "b": "20250101-120000-0badf00d"})
    assert missing.status_code == 404
    assert client.get("/analysis/compare", params={"a": ids[0], "b": "x"}).status_code == 422


def test_a_classifier_cancelled_mid_training_resumes_through_the_service(client: TestClient) -> None:
    name = "svc-cancel-8px"
    body = {**CLASSIFIER_BODY, "name": name, "epochs": 200}
    accepted = client.post("/classifiers", json=body).json()
    wait_for(client, accepted["job_id"], lambda job: (job.get("step") or 0) >= 1, 120)
    assert client.delete(f"/jobs/{accepted['job_id']}").status_code == 202
    job = wait_for(
        client, accepted["job_id"], lambda job: job["state"] in ("cancelled", "failed", "succeeded")
    )
    assert job["state"] == "cancelled", job
    listed = {c["name"]: c for c in client.get("/classifiers").json()["classifiers"]}
    assert listed[name]["status"] == "cancelled" and listed[name]["ready"] is False
    epoch = listed[name]["epoch"]

    # Only epochs may change on resume, and not below what it has trained.
    changed = client.post("/classifiers", json={"name": name, "resume": True, "lr": 0.1})
    assert changed.status_code == 422 and changed.json()["detail"][0]["loc"] == ["body", "lr"]
    resumed = client.post("/classifiers", json={"name": name, "resume": True, "epochs": epoch + 2})
    assert resumed.status_code == 202, resumed.text
    done = succeeded(client, resumed.json())
    assert done["result"]["epoch"] == epoch + 2 and done["result"]["accuracy"] is not None
    fewer = client.post("/classifiers", json={"name": name, "resume": True, "epochs": epoch + 1})
    assert fewer.status_code == 422 and f"trained {epoch + 2} epochs already" in fewer.text
    unknown = client.post("/classifiers", json={"name": "no-such-classifier", "resume": True})
    assert unknown.status_code == 404 and CLASSIFIER in unknown.json()["detail"]


def _other_data_set_classifier(data_dir: Path) -> str:
    """A classifier of a folder data set (two classes of random images), trained in this process."""
    from ddpm.classifier import ClassifierConfig, train_classifier

    name = "svc-shapes-8px"
    for label in ("circles", "squares"):
        make_image_folder(data_dir / "datasets" / "shapes" / label, 6, size=8, seed=len(label))
    config = ClassifierConfig("folder:shapes", image_size=8, epochs=1, batch_size=8, width=4, blocks=1)
    train_classifier(config, data_dir, name, device="cpu")
    return name


def _jobs(client: TestClient) -> set[str]:
    return {job["id"] for job in client.get("/jobs", params={"limit": 1000}).json()["jobs"]}


def _refused(client: TestClient, path: str, body: dict[str, Any], field: str, *words: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    located = [item for item in detail if item["loc"][-1] == field or field == "body"]
    assert located, detail
    for word in words:
        assert any(word in item["msg"] for item in located), (word, detail)


@pytest.mark.usefixtures("study")
def test_bad_requests_are_422s_naming_what_is_valid_before_anything_is_queued(
    idle_client: TestClient, settings: Settings, local_checkpoint: dict[str, Any]
) -> None:
    other = _other_data_set_classifier(settings.data_dir)
    before = _jobs(idle_client)
    run = {"run": RUN, "n": 50, "sampler": "ddim", "steps": 2}
    # The classifier: unknown, trained on another data set, or for another image size.
    _refused(
        idle_client,
        "/analysis",
        {**run, "classifier": "nope"},
        "classifier",
        "no classifier 'nope'",
        CLASSIFIER,
    )
    _refused(
        idle_client,
        "/analysis",
        {**run, "classifier": other},
        "classifier",
        "trained on folder:shapes, not digits",
        "classifiers for digits at 8px:",
        CLASSIFIER,
    )
    sixteen = {"run": local_checkpoint["run_id"], "classifier": CLASSIFIER, "n": 50}
    _refused(idle_client, "/analysis", sixteen, "classifier", "takes 8px images, not 16px", "none yet")
    # N, threshold and grid size out of bounds; real images: at most the held-out split.
    _refused(idle_client, "/analysis", {**run, "n": 5}, "n", "greater than or equal to 10")
    _refused(idle_client, "/analysis", {**run, "n": 50_001}, "n", "less than or equal to 50000")
    _refused(idle_client, "/analysis", {**REAL, "n": 1000}, "n", f"[10, {HELD_OUT}]")
    _refused(idle_client, "/analysis", {**run, "threshold": 1.0}, "threshold", "less than 1")
    _refused(idle_client, "/analysis", {**run, "per_class": 33}, "per_class", "less than or equal to 32")
    _refused(
        idle_client, "/analysis", {**REAL, "classifier": other}, "classifier", "holds out only 2", "needs 10"
    )
    # Sources: none, or real images with a checkpoint or sampler options.
    _refused(idle_client, "/analysis", {"n": 50}, "body", "give arch")
    _refused(
        idle_client,
        "/analysis",
        {**REAL, "run": RUN, "sampler": "ddim"},
        "body",
        "leave out ['run', 'sampler']",
    )
    # Classifier training: unknown data set, CIFAR-10 at another size, epochs out of bounds.
    _refused(idle_client, "/classifiers", {"dataset": "mnist"}, "dataset", "cifar10, digits, folder:")
    _refused(idle_client, "/classifiers", {"dataset": "cifar10", "image_size": 16}, "body", "32x32")
    _refused(
        idle_client,
        "/classifiers",
        {"dataset": "digits", "epochs": 0},
        "epochs",
        "greater than or equal to 1",
    )
    _refused(idle_client, "/classifiers", {"resume": True}, "body", "resume needs name")
    _refused(idle_client, "/classifiers", {}, "body", "dataset is required")
    assert _jobs(idle_client) == before
