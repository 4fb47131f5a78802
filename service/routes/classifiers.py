"""Classifiers for the classifier study: train one as a job (a GPU worker trains the CIFAR-10 one), list them.

A classifier's folder is written by its trainer (ddpm/classifier/store.py); the API only reads it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Response

from ddpm.classifier import list_classifiers, read_classifier
from ddpm.classifier.config import RESUMABLE_CHANGES, ClassifierConfig
from ddpm.classifier.store import ClassifierDir
from ddpm.errors import InvalidOption
from jobs.records import CLASSIFIER
from jobs.store import JobStore
from service.analysis_rows import classifier_row
from service.analysis_schemas import ClassifierRequest
from service.deps import QueueDep, SettingsDep, StoreDep
from service.errors import Conflict, NotFound, invalid_field, low_space
from service.schemas import Accepted, job_links
from service.submit import submit

router = APIRouter(tags=["classifiers"])

_DEFAULTS = {field.name: field.default for field in dataclasses.fields(ClassifierConfig)}


def lock_name(name: str) -> str:
    """One active training job per classifier."""
    return f"classifier:{name}"


@router.post(
    "/classifiers",
    status_code=202,
    summary="queue the training of a classifier (a small seeded ResNet) on a labelled data set",
    responses={507: {"description": "the data volume has too little free space"}},
)
def create_classifier(
    body: ClassifierRequest, response: Response, settings: SettingsDep, store: StoreDep, queue: QueueDep
) -> Accepted:
    if refused := low_space(settings.data_dir, settings.min_free_mb):
        raise refused
    if body.resume:
        assert body.name is not None  # the model's validator guarantees it
        name, config = body.name, _resumed_config(settings.data_dir, body)
    else:
        config = body.engine_config()
        name = body.name or config.default_name()
        if ClassifierDir.of(settings.data_dir, name).exists():
            raise Conflict(
                f"classifier {name!r} already exists; send resume: true to continue it, or another name"
            )
    job_id, created = submit(
        store,
        queue,
        CLASSIFIER,
        {"name": name, "config": config.to_dict(), "resume": body.resume},
        lock=lock_name(name),
    )
    if not created:
        raise Conflict(f"classifier {name!r} already has an active training job", job_id=job_id)
    response.headers["Location"] = f"/jobs/{job_id}"
    return Accepted(
        job_id=job_id,
        state="queued",
        kind=CLASSIFIER,
        message=f"training classifier {name} on {config.dataset} at {config.image_size}px for "
        f"{config.epochs} epochs; follow it at links.job",
        links={**job_links(job_id), "job": f"/jobs/{job_id}", "classifiers": "/classifiers"},
    )


def _resumed_config(data_dir: Path, body: ClassifierRequest) -> ClassifierConfig:
    """The classifier's stored recipe with only what a resume may change (epochs) from the request."""
    assert body.name is not None
    try:
        record = read_classifier(data_dir, body.name)
    except InvalidOption as err:
        raise NotFound(str(err)) from None
    stored = dict(record.get("config") or {})
    if not stored:
        raise invalid_field(
            ("body", "resume"),
            f"classifier {body.name!r} was imported, not trained here: it has no training to continue",
            True,
        )
    asked = body.model_dump(include=body.model_fields_set - {"name", "resume"})
    fixed = sorted(k for k in asked if k not in RESUMABLE_CHANGES and asked[k] != stored.get(k, _DEFAULTS[k]))
    if fixed:
        raise invalid_field(
            ("body", fixed[0]),
            f"cannot change {fixed} when resuming classifier {body.name!r}; only {list(RESUMABLE_CHANGES)} may change",
            asked[fixed[0]],
        )
    epochs = asked.get("epochs") or stored.get("epochs", _DEFAULTS["epochs"])
    trained = int(record.get("epoch") or 0)
    if epochs < trained:
        raise invalid_field(
            ("body", "epochs"),
            f"classifier {body.name!r} has trained {trained} epochs already; resume with at least that many",
            epochs,
        )
    try:
        return ClassifierConfig.from_dict({**stored, "epochs": epochs})
    except InvalidOption as err:  # a recipe stored by an older version that this one refuses
        raise invalid_field(("body", "resume"), str(err), True) from err


@router.get(
    "/classifiers", summary="classifiers: data set, classes, held-out accuracy, status, training history"
)
def classifiers(settings: SettingsDep, store: StoreDep) -> dict[str, list[dict[str, Any]]]:
    records = list_classifiers(settings.data_dir)
    owners = _job_ids(store, [str(r.get("name")) for r in records])
    return {"classifiers": [classifier_row(r, owners.get(str(r.get("name")))) for r in records]}


def _job_ids(store: JobStore, names: list[str]) -> dict[str, str]:
    """The job training each classifier now, or that trained it last (its lock's owner)."""
    if not names:
        return {}
    owners = store.client.mget([store.lock_key(lock_name(n)) for n in names])
    return {n: owner for n, owner in zip(names, owners, strict=True) if owner}
