"""Issue 7's training options and combined presets through POST /train (queued only: no worker needed)."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_combined_preset_cosine_schedule_and_dropout_are_accepted(idle_client: TestClient) -> None:
    body = {
        "arch": "DDPM_BigGAN+anti_aliasing",
        "dataset": "digits",
        "schedule": "cosine",
        "dropout": 0.1,
        "max_steps": 2,
        "image_size": 16,
    }
    response = idle_client.post("/train", json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["run_id"].startswith("anti_aliasing.biggan-")
    config = idle_client.get(f"/jobs/{accepted['job_id']}").json()["params"]["config"]
    assert config["schedule"] == "cosine" and config["dropout"] == 0.1
    assert config["arch"] == "anti_aliasing+biggan"
    assert idle_client.delete(f"/jobs/{accepted['job_id']}").status_code in (200, 202)


def test_bad_schedule_dropout_and_combinations_are_422(idle_client: TestClient) -> None:
    for body, words in (
        ({"arch": "baseline", "schedule": "sigmoid"}, "schedule"),
        ({"arch": "baseline", "dropout": 1.5}, "dropout"),
        ({"arch": "convnext+biggan"}, "disagree on block"),
        ({"arch": "biggan+res_link"}, "res_link_all"),
    ):
        response = idle_client.post("/train", json=body)
        assert response.status_code == 422, response.text
        assert words in response.text


def test_bf16_is_a_training_option_and_a_run_that_predates_it_resumes(
    idle_client: TestClient, idle_settings
) -> None:
    from ddpm.runs import RunDir, run_record

    body = {"arch": "pure_unet", "dataset": "digits", "max_steps": 2, "image_size": 16, "bf16": True}
    accepted = idle_client.post("/train", json=body).json()
    config = idle_client.get(f"/jobs/{accepted['job_id']}").json()["params"]["config"]
    assert config["bf16"] is True
    assert idle_client.delete(f"/jobs/{accepted['job_id']}").status_code in (200, 202)

    # A run recorded before the option existed: its train_config has no bf16 key, which meant off.
    old = {**config, "bf16": None}
    del old["bf16"]
    run = RunDir.of(idle_settings.data_dir, "pure_unet-before-bf16")
    run.write(run_record(run.run_id, "pure_unet", old, "cancelled"))
    same = idle_client.post("/train", json={"run_id": run.run_id, "resume": True, "bf16": False})
    assert same.status_code == 202, same.text
    assert idle_client.delete(f"/jobs/{same.json()['job_id']}").status_code in (200, 202)
    changed = idle_client.post("/train", json={"run_id": run.run_id, "resume": True, "bf16": True})
    assert changed.status_code == 422 and "bf16" in changed.text


def test_a_preset_fills_in_its_recipe_under_the_fields_sent(idle_client: TestClient) -> None:
    from ddpm.presets import TRAIN_PRESETS

    listed = idle_client.get("/train/presets").json()
    assert listed == {"default": "digits-quick", "presets": TRAIN_PRESETS}
    recipe = TRAIN_PRESETS["digits-quick"]

    response = idle_client.post("/train", json={"preset": "digits-quick", "lr": 1e-3, "max_steps": 2})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["run_id"].startswith("baseline-")
    config = idle_client.get(f"/jobs/{accepted['job_id']}").json()["params"]["config"]
    assert {k: config[k] for k in recipe} == {**recipe, "lr": 1e-3}
    assert config["max_steps"] == 2 and "preset" not in config
    assert idle_client.delete(f"/jobs/{accepted['job_id']}").status_code in (200, 202)

    unknown = idle_client.post("/train", json={"preset": "mnist-quick"})
    assert unknown.status_code == 422 and "digits-quick" in unknown.text
    for not_a_name in ({}, [], ["digits-quick"], 1):  # found by schemathesis: an object was a 500
        wrong = idle_client.post("/train", json={"preset": not_a_name})
        assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "preset"], wrong.text
    resumed = idle_client.post("/train", json={"preset": "digits-quick", "run_id": "x", "resume": True})
    assert resumed.status_code == 422 and "leave it out when resuming" in resumed.text
