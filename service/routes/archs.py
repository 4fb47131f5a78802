from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from ddpm.runs import newest_checkpoint
from models import list_archs
from service.deps import SettingsDep

router = APIRouter(tags=["archs"])


class ArchOut(BaseModel):
    name: str
    report_name: str
    description: str
    params: int
    report_fid: float | None
    newest_checkpoint: dict[str, Any] | None  # run_id and step GET /samples?arch= would use


@router.get("/archs", summary="every variant: names, parameter count, the report's FID")
def archs(settings: SettingsDep) -> list[ArchOut]:
    out = []
    for arch in list_archs():
        found = newest_checkpoint(settings.data_dir, arch["name"])
        newest = None if found is None else {"run_id": found[0], "step": found[1]}
        out.append(ArchOut(**arch, newest_checkpoint=newest))
    return out
