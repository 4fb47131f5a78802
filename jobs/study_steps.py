"""A study's orchestration: which ordinary job runs each stage of each member, queued when its turn
comes; cancel and retry; what each member is doing now.

A member is one (variant, seed): a `train` job (none when an existing run is attached), then, once it
succeeded, a `sample` job for its grid and a `fid` job for its FID sweep, with exactly the params
GET /samples and POST /fid would give them (plus `study_id`), so a study's FID is POST /fid's.

`advance()` is idempotent and safe to call from anywhere at once: the worker calls it when a study's
job ends (workers/study_hooks.py), every worker's heartbeat sweeps unfinished studies now and then, and
the API calls it when a study is read. Each stage's job is created under a lock (the run's lock for
training, `study:<id>:<member>:<stage>` for the others) that every state joins, so two callers get the
same job; the study record then keeps its id (jobs/studies.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddpm.errors import DdpmError
from ddpm.runs import FAILED as RUN_FAILED
from ddpm.runs import QUEUED as RUN_QUEUED
from ddpm.runs import SUCCEEDED as RUN_SUCCEEDED
from ddpm.runs import RunDir, run_record
from jobs.records import ACTIVE_STATES, CANCELLED, FAILED, FID, RUNNING, SAMPLE, STATES, SUCCEEDED, TRAIN
from jobs.specs import CheckpointRef, SampleSpec, sampler_from_params
from jobs.store import JobStore
from jobs.studies import FID_STAGE, GRID_STAGE, STAGES, TRAIN_STAGE, Study, StudyStore
from jobs.submit import Publish, PublishFailed, submit

log = logging.getLogger("jobs")

STAGE_KINDS = {TRAIN_STAGE: TRAIN, GRID_STAGE: SAMPLE, FID_STAGE: FID}
# A member's state (ddpm/study/results.py MemberResult.state) and the study's.
PENDING, TRAINING, EVALUATING, DONE = "pending", "training", "evaluating", "done"
UNFINISHED = (PENDING, TRAINING, EVALUATING)
STUDY_RUNNING, STUDY_DONE, STUDY_FAILED = "running", "done", "failed"
STUDY_CANCELLING, STUDY_CANCELLED = "cancelling", "cancelled"
ATTACHED = "attached"  # the train stage of a member whose run was attached, not trained


@dataclass
class StageView:
    job_id: str | None
    state: str | None  # the job's state; "attached"; None when not queued yet
    job: dict[str, Any] | None  # the job record (None once it expired or before it exists)
    result: dict[str, Any] | None  # the job's result, or the one the study kept
    params: dict[str, Any] | None = None  # the job's params (the kept copy has all but a training's config)


@dataclass
class MemberView:
    plan: dict[str, Any]
    stages: dict[str, StageView]
    state: str
    error: str | None = None

    @property
    def key(self) -> str:
        return self.plan["key"]


class StudySteps:
    def __init__(self, studies: StudyStore, publish: Publish, data_dir: Path) -> None:
        self.studies = studies
        self.jobs: JobStore = studies.jobs
        self.publish = publish
        self.data_dir = data_dir

    # reading
    def members(self, study: Study) -> list[MemberView]:
        views = []
        for plan in study.members:
            stages = {stage: self._stage(study, plan, stage) for stage in STAGES}
            state, error = _member_state(stages)
            if state == EVALUATING and self._final_checkpoint(plan) is None:
                state, error = FAILED, f"run {plan['run_id']!r} finished without a kept checkpoint"
            elif state == PENDING and study.cancelled is not None and stages[TRAIN_STAGE].job_id is None:
                state = CANCELLED  # cancelled before its training was queued
            views.append(MemberView(plan, stages, state, error))
        return views

    def state(self, study: Study, members: list[MemberView]) -> str:
        active = any(
            v.job is not None and v.job["state"] in ACTIVE_STATES for m in members for v in m.stages.values()
        )
        if study.cancelled is not None:
            return STUDY_CANCELLING if active else STUDY_CANCELLED
        if any(m.state in UNFINISHED for m in members):
            return STUDY_RUNNING
        return STUDY_DONE if all(m.state == DONE for m in members) else STUDY_FAILED

    def _stage(self, study: Study, plan: Mapping[str, Any], stage: str) -> StageView:
        if stage == TRAIN_STAGE and plan["attached"]:
            return StageView(None, ATTACHED, None, None)
        job_id = study.job_id(plan["key"], stage)
        job = self.jobs.get(job_id) if job_id else None
        kept = study.kept_result(plan["key"], stage)
        if job is not None:
            return StageView(job_id, job["state"], job, job.get("result"), job.get("params"))
        if kept is not None and kept.get("job_id") == job_id:  # its job record expired; the study kept it
            return StageView(job_id, SUCCEEDED, None, kept.get("result"), kept.get("params"))
        if job_id and stage == TRAIN_STAGE and self._run_status(plan) == RUN_SUCCEEDED:
            return StageView(job_id, SUCCEEDED, None, None)
        return StageView(job_id, None, None, None)

    # moving on
    def advance(self, study_id: str) -> Study | None:
        """Queue every stage whose turn has come and that has no job yet; keep finished results.

        PublishFailed when the broker refused a job: that job is recorded failed, saying so (the member
        shows it; a retry queues it again), and the members after it are left for the next call."""
        study = self.studies.get(study_id)
        if study is None or study.cancelled is not None:
            return study
        for member in self.members(study):
            self._advance_member(study, member)
        return self.studies.get(study_id)

    def _advance_member(
        self, study: Study, member: MemberView, replace: Mapping[str, str] | None = None
    ) -> None:
        replace = replace or {}
        train = member.stages[TRAIN_STAGE]
        if train.state is None or TRAIN_STAGE in replace:
            self._queue_training(study, member.plan, replace.get(TRAIN_STAGE))
            return
        if train.state not in (SUCCEEDED, ATTACHED):
            return
        ref = self._final_checkpoint(member.plan)
        if ref is None:
            return
        for stage in (GRID_STAGE, FID_STAGE):
            view = member.stages[stage]
            if view.state is None or stage in replace:
                self._queue_evaluation(study, member.plan, stage, ref, replace.get(stage))
            elif view.state == SUCCEEDED and view.job is not None and view.job_id:
                self._keep(study, member.key, stage, view)

    def _keep(self, study: Study, key: str, stage: str, view: StageView) -> None:
        kept = study.kept_result(key, stage)
        if view.job_id and (kept is None or kept.get("job_id") != view.job_id):
            assert view.job is not None
            params = {k: v for k, v in view.job["params"].items() if k != "config"}
            self.studies.keep_result(
                study.id, key, stage, view.job_id, {"result": view.result, "params": params}
            )

    def _queue_training(self, study: Study, plan: Mapping[str, Any], replaces: str | None) -> None:
        run = RunDir.of(self.data_dir, plan["run_id"])
        params = plan["train"]

        def write_queued_run(_: str) -> None:
            # Shown by GET /runs before a worker starts it (as POST /train does); a retried run is
            # queued again (its trainer resumes it from its last checkpoint).
            if not run.exists():
                run.write(run_record(run.run_id, params["config"]["arch"], params["config"], RUN_QUEUED))
            elif run.read().get("status") in (RUN_FAILED, CANCELLED):
                run.update(status=RUN_QUEUED, error=None)

        try:
            self._queue(
                study,
                plan["key"],
                TRAIN_STAGE,
                params,
                f"run:{run.run_id}",
                run.run_id,
                replaces,
                write_queued_run,
            )
        except PublishFailed:
            run.settle(RUN_FAILED, "the job queue did not accept the training job")
            raise

    def _queue_evaluation(
        self, study: Study, plan: Mapping[str, Any], stage: str, ref: CheckpointRef, replaces: str | None
    ) -> None:
        options = study.plan[stage]
        if stage == GRID_STAGE:
            spec = SampleSpec(
                ref, options["seed"], options["n"], options["nrow"], sampler_from_params(options)
            )
            params = {**spec.to_params(), "arch": ref.arch}  # GET /samples' job params
        else:
            params = {"checkpoint": ref.to_dict(), "arch": ref.arch, **options}  # POST /fid's
        lock = f"study:{study.id}:{plan['key']}:{stage}"
        self._queue(study, plan["key"], stage, params, lock, ref.run_id, replaces)

    def _queue(
        self,
        study: Study,
        key: str,
        stage: str,
        params: dict[str, Any],
        lock: str,
        run_id: str,
        replaces: str | None,
        before_publish: Any = None,
    ) -> str:
        job_id, created = submit(
            self.jobs,
            self.publish,
            study.queue,
            STAGE_KINDS[stage],
            {**params, "study_id": study.id},
            data_dir=self.data_dir,
            run_id=run_id,
            lock=lock,
            join_states=STATES,  # one job per stage, whatever its state: only a retry replaces it
            replace=replaces,
            before_publish=before_publish,
        )
        recorded = self.studies.set_job(study.id, key, stage, job_id, replaces)
        current = self.studies.get(study.id)
        if created and (not recorded or current is None or current.cancelled is not None):
            # Another caller recorded another job for this stage, or the study was cancelled meanwhile.
            self._cancel_job(job_id)
        elif created:
            log.info("study %s: %s of %s queued as job %s", study.id, stage, key, job_id)
        return job_id

    # cancel and retry
    def cancel(self, study: Study) -> list[str]:
        """Cancel every member job that has not finished; the ids of those asked to stop."""
        self.studies.set_cancelled(study.id, True)
        stopped = []
        for job_id in study.job_ids():
            job = self.jobs.get(job_id)
            if job is not None and job["state"] in ACTIVE_STATES and self._cancel_job(job_id):
                stopped.append(job_id)
        return stopped

    def retry(self, study: Study) -> list[str]:
        """Queue again the failed or cancelled stages of each member (finished ones stay); the keys of
        the members retried. The study is no longer cancelled."""
        self.studies.set_cancelled(study.id, False)
        study = self.studies.get(study.id) or study
        retried = []
        for member in self.members(study):
            ended = {
                stage: view.job_id
                for stage, view in member.stages.items()
                if view.job_id and view.state in (FAILED, CANCELLED)
            }
            if ended:
                # The train stage first: its evaluations are queued when it succeeds.
                replace = {TRAIN_STAGE: ended[TRAIN_STAGE]} if TRAIN_STAGE in ended else ended
                self._advance_member(study, member, replace)
                retried.append(member.key)
        self.advance(study.id)
        return retried

    def _cancel_job(self, job_id: str) -> bool:
        outcome = self.jobs.cancel(job_id)
        if outcome == CANCELLED:
            job = self.jobs.get(job_id) or {}
            if job.get("kind") == TRAIN and job.get("run_id"):
                RunDir.of(self.data_dir, job["run_id"]).settle(CANCELLED)
        return outcome in (CANCELLED, "cancelling")

    # runs
    def _final_checkpoint(self, plan: Mapping[str, Any]) -> CheckpointRef | None:
        try:
            return CheckpointRef.final_of(RunDir.of(self.data_dir, plan["run_id"]))
        except (OSError, DdpmError) as err:
            log.warning("run %s: its checkpoints were not read (%s)", plan["run_id"], err)
            return None

    def _run_status(self, plan: Mapping[str, Any]) -> str | None:
        try:
            return RunDir.of(self.data_dir, plan["run_id"]).read().get("status")
        except (OSError, DdpmError):
            return None


def _member_state(stages: Mapping[str, StageView]) -> tuple[str, str | None]:
    for view in stages.values():
        if view.state == FAILED:
            return FAILED, (view.job or {}).get("error")
    if any(view.state == CANCELLED for view in stages.values()):
        return CANCELLED, None
    if stages[GRID_STAGE].state == SUCCEEDED and stages[FID_STAGE].state == SUCCEEDED:
        return DONE, None
    train = stages[TRAIN_STAGE].state
    if train in (SUCCEEDED, ATTACHED):
        return EVALUATING, None
    return (TRAINING, None) if train == RUNNING else (PENDING, None)
