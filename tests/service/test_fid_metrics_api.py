"""Issue 14 through the API: POST /fid takes the metrics and their options, refuses what cannot be
computed before queueing, and GET /fid shows every metric with its N, data set and warnings."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from ddpm.fid.results import save_result


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"metrics": ["fid", "sharpness"]}, "'fid', 'fid_interval', 'fid_inf', 'kid', 'precision_recall'"),
        ({"metrics": ["precision_recall"], "n_samples": 3}, "precision_recall"),
        ({"metrics": ["kid"], "n_samples": 64, "kid_subset_size": 100}, "kid_subset_size"),
        ({"bootstrap": 1}, "greater than or equal to 2"),
        ({"kid_subsets": 0}, "greater than or equal to 1"),
    ],
)
def test_metric_requests_that_cannot_be_met_are_422_before_queueing(
    idle_client: TestClient, local_checkpoint: dict, extra: dict[str, Any], needle: str
) -> None:
    queued = len(idle_client.get("/jobs", params={"kind": "fid"}).json()["jobs"])
    body = {"run": local_checkpoint["run_id"], "dataset": "digits", "n_samples": 512, **extra}
    response = idle_client.post("/fid", json=body)
    assert response.status_code == 422, response.text
    assert needle in response.text
    assert len(idle_client.get("/jobs", params={"kind": "fid"}).json()["jobs"]) == queued


def test_the_metric_options_travel_with_the_job(idle_client: TestClient, local_checkpoint: dict) -> None:
    body = {
        "run": local_checkpoint["run_id"],
        "dataset": "digits",
        "n_samples": [256, 1024],
        "metrics": ["kid", "fid_inf"],
        "kid_subsets": 20,
        "bootstrap": 10,
        "metrics_seed": 3,
    }
    accepted = idle_client.post("/fid", json=body)
    assert accepted.status_code == 202, accepted.text
    params = idle_client.get(f"/jobs/{accepted.json()['job_id']}").json()["params"]
    assert params["metrics"] == ["fid_inf", "kid"]  # in the evaluator's order
    assert (params["kid_subsets"], params["bootstrap"], params["metrics_seed"]) == (20, 10, 3)
    assert idle_client.delete(f"/jobs/{accepted.json()['job_id']}").status_code in (200, 202)


def test_the_table_shows_every_metric_with_its_n_and_warnings(idle_client: TestClient, idle_settings) -> None:
    record = {
        "arch": "biggan",
        "run_id": "metrics-table",
        "step": 3,
        "sampler": "ddim",
        "steps": 50,
        "dataset": "digits",
        "seed": 0,
        "reference": "digits",
        "warnings": ["N=256 < 2048: the sample covariance is rank-deficient"],
        "unavailable": {"inception_score": "needs pytorch-fid's original weights with the classifier head"},
        "scores": [
            {"n": 256, "fid": 189.15, "fid_interval": {"low": 185.0, "high": 193.3, "se": 2.1, "level": 0.95, "replicates": 50,
                              "bootstrap_mean": 189.9},
             "kid": {"mean": 0.2444, "std": 0.0072, "subsets": 100, "subset_size": 128}},
        ],
    }  # fmt: skip
    result_id = save_result(idle_settings.data_dir, record)
    rows = [row for row in idle_client.get("/fid").json()["rows"] if row["result_id"] == result_id]
    (row,) = rows
    assert (row["n"], row["dataset"], row["fid"], row["kid"]) == (256, "digits", 189.15, 0.2444)
    assert row["fid_low"] == 185.0 and row["warnings"] and "inception_score" in row["unavailable"]
    assert row["report_fid"] is None  # a digits FID is never shown beside the report's CIFAR-10 figure
    markdown = idle_client.get("/fid", params={"format": "markdown"}).text
    assert "189.15 (185.00 to 193.30)" in markdown and "244.40 ± 7.20" in markdown
    assert "rank-deficient" in markdown and "no inception_score" in markdown
    stored = idle_client.get(f"/fid/results/{result_id}")
    assert stored.status_code == 200 and stored.json()["scores"][0]["kid"]["mean"] == 0.2444
    assert idle_client.get("/fid/results/20990101-000000-deadbeef").status_code == 404


def test_a_stored_result_that_does_not_read_is_left_out_not_a_500(
    idle_client: TestClient, idle_settings
) -> None:
    broken = save_result(
        idle_settings.data_dir, {"arch": "biggan", "scores": [{"n": 64, "fid": "not a number"}]}
    )
    response = idle_client.get("/fid")
    assert response.status_code == 200
    assert broken not in {row["result_id"] for row in response.json()["rows"]}
    assert idle_client.get("/fid/plot.png").status_code == 200
