"""Studies, from the workers' side: when a study's job ends here, its study moves on at once (the next
stage of that member is queued); and now and then one worker's heartbeat moves every unfinished study
on, so a lost message, a dead worker or a restored Redis never leaves a study waiting."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from jobs.store import JobStore
from jobs.studies import StudyStore
from jobs.study_steps import STUDY_RUNNING, StudySteps
from jobs.submit import Publish, PublishFailed

log = logging.getLogger("workers")

SWEEP_EVERY_S = 10.0  # how often some worker moves every unfinished study on


def advance_study_of(store: JobStore, publish: Publish, data_dir: Path, job: Mapping[str, Any]) -> None:
    """After a job ended: if it belongs to a study, queue what its end makes due. Never raises: the
    sweep catches up on anything missed here."""
    study_id = (job.get("params") or {}).get("study_id")
    if not study_id:
        return
    try:
        StudySteps(StudyStore(store, data_dir), publish, data_dir).advance(study_id)
    except Exception as err:
        log.warning(
            "study %s not moved on after job %s ended (%s); the sweep will", study_id, job.get("id"), err
        )


def sweep_studies_now_and_then(
    store: JobStore, publish: Publish, data_dir: Path, every_s: float = SWEEP_EVERY_S
) -> list[str]:
    """Advance every unfinished study, by one worker at most every `every_s` (the first to claim the
    slot); the ids of the studies still running."""
    try:
        claimed = store.client.set(f"{store.prefix}:studies-swept", "1", nx=True, px=round(every_s * 1000))
    except redis.RedisError:
        return []
    if not claimed:
        return []
    steps = StudySteps(StudyStore(store, data_dir), publish, data_dir)
    running = []
    for study_id in steps.studies.ids():
        study = steps.studies.get(study_id)
        if study is None or study.cancelled is not None:
            continue
        if steps.state(study, steps.members(study)) == STUDY_RUNNING:
            try:
                steps.advance(study_id)
            except PublishFailed as err:  # the broker is down: the next sweep tries again
                log.warning("study %s not moved on: the broker refused a job (%s)", study_id, err)
                return running
            running.append(study_id)
    return running
