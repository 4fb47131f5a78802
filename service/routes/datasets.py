"""GET /datasets: what a training run's `dataset` can name, and whether its images are on the volume."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ddpm.dataset_catalog import list_datasets
from service.deps import SettingsDep

router = APIRouter(tags=["datasets"])


class DatasetOut(BaseModel):
    name: str
    kind: str
    available: bool
    grayscale: bool
    images: int | None
    note: str


class DatasetsOut(BaseModel):
    datasets: list[DatasetOut]


@router.get(
    "/datasets",
    summary="the data sets POST /train takes: cifar10 (downloaded or not), digits, the folders under "
    "DATA_DIR/datasets",
)
def datasets(settings: SettingsDep) -> DatasetsOut:
    return DatasetsOut(datasets=[DatasetOut(**entry.to_dict()) for entry in list_datasets(settings.data_dir)])
