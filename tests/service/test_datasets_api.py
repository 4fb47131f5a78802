"""GET /datasets: the data sets POST /train takes, with what the volume holds (the page's Train form
offers them as choices), and every listed name is one POST /train accepts."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from jobs.settings import Settings
from service.app import create_app
from tests.conftest import make_image_folder
from tests.stack import TINY_TRAIN


def test_datasets_lists_the_builtins_and_the_folders_on_the_volume(
    idle_settings: Settings, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    root = volume / "datasets"
    make_image_folder(root / "pets" / "cat", count=3, size=12)
    make_image_folder(root / "pets" / "dog", count=2, size=12)
    make_image_folder(root / "one", count=1, size=12)
    (root / "empty").mkdir()
    (root / ".cache").mkdir()  # hidden: not a data set
    settings = idle_settings.model_copy(update={"data_dir": volume})
    with TestClient(create_app(settings)) as client:
        listed = {entry["name"]: entry for entry in client.get("/datasets").json()["datasets"]}
        assert list(listed) == ["cifar10", "digits", "folder:empty", "folder:one", "folder:pets"]
        assert listed["cifar10"]["available"] is False and "not downloaded" in listed["cifar10"]["note"]
        assert listed["digits"] == {
            "name": "digits",
            "kind": "builtin",
            "available": True,
            "grayscale": True,
            "images": 1797,
            "note": listed["digits"]["note"],
        }
        assert listed["folder:pets"]["images"] == 5 and listed["folder:pets"]["available"] is True
        assert listed["folder:one"]["note"] == "1 image in datasets/one"
        assert listed["folder:empty"]["available"] is False and "no images" in listed["folder:empty"]["note"]

        # CIFAR-10 counts as present once its archive is placed where the worker looks for it.
        (root / "cifar10").mkdir()
        (root / "cifar10" / "cifar-10-python.tar.gz").write_bytes(b"placed")
        cifar = client.get("/datasets").json()["datasets"][0]
        assert cifar["available"] is True and cifar["images"] == 50_000
        assert "cifar10" not in [entry["name"] for entry in client.get("/datasets").json()["datasets"][2:]]


def test_every_listed_data_set_is_one_train_accepts(idle_client: TestClient, idle_settings: Settings) -> None:
    make_image_folder(idle_settings.data_dir / "datasets" / "listed", count=2, size=12)
    names = [entry["name"] for entry in idle_client.get("/datasets").json()["datasets"]]
    assert "folder:listed" in names
    for index, name in enumerate(names):
        body = {
            **TINY_TRAIN,
            "arch": "pure_unet",
            "dataset": name,
            "max_steps": 1,
            "run_id": f"listed-{index}",
        }
        if name == "cifar10":
            body["image_size"] = 32  # CIFAR-10 is 32x32
        response = idle_client.post("/train", json=body)
        assert response.status_code == 202, (name, response.text)
