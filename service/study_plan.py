"""A study request, read and planned before anything is queued: the spec (ddpm/study/spec.py) from a
preset or in full, then, for every member, the very params POST /train, GET /samples and POST /fid
would give its jobs, checked by those routes' own request models. Anything that cannot run is a 422
naming the field (`variants[2]`, `train.image_size`, `evaluation.fid_n`, `attach.biggan@0`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ddpm.errors import InvalidOption
from ddpm.limits import GRAYSCALE_DATASETS, PREDATED_TRAIN_OPTIONS
from ddpm.runs import SUCCEEDED, RunDir, UnreadableRun, new_run_id
from ddpm.study.spec import TRAIN_DEFAULTS, StudySpec, StudySpecError, preset
from jobs.settings import Settings
from models import UnknownArchError
from service.errors import invalid_field
from service.schemas import FidRequest, SampleQuery, TrainRequest, unknown_variant_message

M = TypeVar("M", bound=BaseModel)

# A run attached to a member must have been trained with the member's recipe: these may differ.
ATTACH_MAY_DIFFER = ("epochs", "max_steps", "checkpoint_every")


def read_spec(body: Mapping[str, Any]) -> StudySpec:
    """{"preset": name, ...overrides} or a whole spec; validated (every variant against the recipe)."""
    try:
        if body.get("preset") is not None:  # the preset, with the body's fields replaced or merged in
            overrides = {k: v for k, v in body.items() if k != "preset"}
            spec = preset(str(body["preset"]), **overrides)
        else:
            spec = StudySpec.from_dict(body)
        spec.validate()
    except StudySpecError as err:
        # An unknown variant reads as the other routes word it: one line, not the engine's long list.
        unknown = err.__cause__ if isinstance(err.__cause__, UnknownArchError) else None
        text = unknown_variant_message(unknown) if unknown else err.message
        raise invalid_field(("body", *err.field.split(".")), text, _at(body, err.field)) from err
    return spec


def plan_study(spec: StudySpec, settings: Settings) -> dict[str, Any]:
    """Each member's run and training job params, and the grid's and FID job's params but the checkpoint."""
    members = []
    for member in spec.members():
        attached = spec.attach.get(member.key)
        train = _model(TrainRequest, spec.train_config(member), "train")
        if attached:
            _check_attached(settings.data_dir, attached, member.key, train)
        run_id = attached or new_run_id(member.variant)
        members.append(
            {
                "key": member.key,
                "variant": member.variant,
                "seed": member.seed,
                "run_id": run_id,
                "attached": bool(attached),
                "train": None if attached else {"run_id": run_id, "config": train.engine_config()},
            }
        )
    evaluation = spec.evaluation
    if evaluation.grid_n > settings.sample_max_n:
        raise invalid_field(
            ("body", "evaluation", "grid_n"),
            f"grid_n={evaluation.grid_n} is more than this service draws in one grid ({settings.sample_max_n})",
            evaluation.grid_n,
        )
    first = spec.variants[0]  # the models need a variant; the options checked do not depend on it
    grid = _model(
        SampleQuery,
        {
            "arch": first,
            "seed": evaluation.grid_seed,
            "n": evaluation.grid_n,
            "nrow": evaluation.grid_nrow,
            **evaluation.sampler,
        },
        "evaluation",
    )
    fid = _model(
        FidRequest,
        {
            "arch": first,
            "n_samples": list(evaluation.fid_n),
            "seed": evaluation.fid_seed,
            "dataset": spec.reference_dataset(),
            "batch_size": evaluation.batch_size,
            "metrics": None if evaluation.metrics is None else list(evaluation.metrics),
            **evaluation.sampler,
        },
        "evaluation",
    )
    return {
        "members": members,
        "grid": {"seed": grid.seed, "n": grid.n, "nrow": grid.nrow, **grid.sampler_spec().to_params()},
        "fid": fid.job_params(),
    }


def _model(model: type[M], data: dict[str, Any], section: str) -> M:
    """The route's own request model over the study's values; its first complaint as a 422 located in
    the study's section (the field names are the same, or say which they are)."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(str(part) for part in first["loc"][:1])
        raise invalid_field(("body", section, *loc), first["msg"], first.get("input")) from err


def _check_attached(data_dir: Path, run_id: str, key: str, train: TrainRequest) -> None:
    """An attached run must exist, have finished with a kept checkpoint, and have the member's recipe."""
    where = ("body", "attach", key)
    try:
        run = RunDir.of(data_dir, run_id)
        record = run.read()
    except (FileNotFoundError, InvalidOption, UnreadableRun) as err:
        raise invalid_field(
            where, f"no readable run {run_id!r} ({err}); GET /runs lists them", run_id
        ) from err
    if record.get("status") != SUCCEEDED or not run.kept_checkpoints():
        raise invalid_field(
            where, f"run {run_id!r} is {record.get('status')!r}; only a finished run can be attached", run_id
        )
    wanted = _as_trained(train.engine_config())
    stored = _as_trained({**TRAIN_DEFAULTS, **PREDATED_TRAIN_OPTIONS, **(record.get("train_config") or {})})
    differ = sorted(k for k in wanted if k not in ATTACH_MAY_DIFFER and stored.get(k) != wanted[k])
    if differ:
        shown = ", ".join(f"{k}: {stored.get(k)!r} (the study's {wanted[k]!r})" for k in differ)
        raise invalid_field(where, f"run {run_id!r} was trained with another recipe: {shown}", run_id)


def _as_trained(config: dict[str, Any]) -> dict[str, Any]:
    """A training config with the options whose unset value depends on another resolved as the trainer
    resolves them (grayscale: the data set's own), so an unset option equals what it meant."""
    if config.get("grayscale") is None:
        return {**config, "grayscale": config.get("dataset") in GRAYSCALE_DATASETS}
    return config


def _at(body: Mapping[str, Any], field: str) -> Any:
    """The value at a dotted field path, for the 422's `input` (None where it is not in the body)."""
    value: Any = body
    for part in field.replace("[", ".").replace("]", "").split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
