"""What a job is about, as it crosses from the API to a worker: the checkpoint a request means, and the
content-addressed cache of sample grids on the data volume.

A grid is a pure function of (checkpoint identity, seed, n, nrow, the sampler and every option of it that
changes pixels): the engine draws image i's noise from (seed, i) alone. The key hashes exactly those, after
normalising equivalent requests (SamplerSpec fills in each sampler's defaults and drops the options it does
not read), so the same question asked twice finds the same file: samples/<k[:2]>/<k>.png, with a .json beside it saying what it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ddpm.limits import GRID_SAMPLER
from ddpm.runs import RunDir
from ddpm.sampler_spec import SamplerSpec
from ddpm.settings import samples_dir

SAMPLER_FIELDS = frozenset(f.name for f in fields(SamplerSpec))
KEY_LENGTH = 40  # hex digits of sha256 kept in file names: collisions stay out of reach


@dataclass(frozen=True)
class CheckpointRef:
    """A kept checkpoint (runs/<run>/checkpoints/step-XXXXXXXX.safetensors). It is never rewritten once it
    exists, so (run id, step, which weights) identifies its contents: the sample cache keys on it."""

    arch: str
    run_id: str
    step: int
    epoch: float | None
    weights: str  # "ema" when the run keeps EMA weights (sampling prefers them), else "model"

    def path(self, data_dir: Path) -> Path:
        return RunDir.of(data_dir, self.run_id).checkpoint_path(self.step)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointRef:
        return cls(**data)

    @classmethod
    def of_run(cls, run: RunDir, step: int) -> CheckpointRef:
        """The kept checkpoint of `step` in `run`, described from its run.json."""
        record = run.read()
        checkpoints = record.get("checkpoints", [])
        epoch = next((c.get("epoch") for c in checkpoints if c.get("step") == step), None)
        ema = bool(record.get("train_config", {}).get("ema"))
        return cls(record["arch"], run.run_id, step, epoch, "ema" if ema else "model")

    @classmethod
    def final_of(cls, run: RunDir) -> CheckpointRef | None:
        """The run's newest kept checkpoint (the one a finished run ends with); None when it has none."""
        kept = run.kept_checkpoints()
        return cls.of_run(run, kept[-1][0]) if kept else None


@dataclass(frozen=True)
class SampleSpec:
    """One grid: a checkpoint, the seed, how many images, how they are laid out, and the sampler with
    every option that changes pixels (a SamplerSpec, normalised, so equivalent requests are equal)."""

    checkpoint: CheckpointRef
    seed: int
    n: int
    nrow: int
    sampler: SamplerSpec

    def options(self) -> dict[str, Any]:
        """Everything but the checkpoint that decides the grid's bytes."""
        return {"seed": self.seed, "n": self.n, "nrow": self.nrow, **self.sampler.cache_key()}

    def identity(self) -> dict[str, Any]:
        ref = self.checkpoint
        return {
            "checkpoint": {"run_id": ref.run_id, "step": ref.step, "weights": ref.weights},
            **self.options(),
        }

    @property
    def key(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_LENGTH]

    def png_path(self, data_dir: Path) -> Path:
        return samples_dir(data_dir) / self.key[:2] / f"{self.key}.png"

    def meta_path(self, data_dir: Path) -> Path:
        return self.png_path(data_dir).with_suffix(".json")

    def query(self) -> dict[str, Any]:
        """GET /samples arguments that name exactly this grid (the checkpoint pinned)."""
        options = {"seed": self.seed, "n": self.n, "nrow": self.nrow, **self.sampler.to_params()}
        # Query strings say true/false, as the API's own documentation does.
        shown = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in options.items()}
        return {"run": self.checkpoint.run_id, "checkpoint": self.checkpoint.step, **shown}

    def url(self) -> str:
        return "/samples?" + urlencode(self.query())

    def to_params(self) -> dict[str, Any]:
        return {**self.identity(), "checkpoint": self.checkpoint.to_dict(), "key": self.key}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SampleSpec:
        """The inverse of to_params; also reads jobs queued before samplers had options (sampler, steps,
        eta only, eta 0.0 for ddpm)."""
        return cls(
            CheckpointRef.from_dict(params["checkpoint"]),
            params["seed"],
            params["n"],
            params["nrow"],
            sampler_from_params(params),
        )


def checkpoint_samples_link(run_id: str, step: int) -> str:
    """The report's 8x10 grid (seed 0) of a kept checkpoint, as GET /samples would draw it by default,
    with the sampler and its steps written out: a link says what it costs and does not change its
    meaning if a default does."""
    sampler = SamplerSpec(GRID_SAMPLER)
    query = {"run": run_id, "checkpoint": step, "seed": 0, "n": 80, "sampler": sampler.sampler}
    return "/samples?" + urlencode({**query, "steps": sampler.steps})


def sampler_from_params(params: dict[str, Any]) -> SamplerSpec:
    """The SamplerSpec among a job's flat parameters (what SamplerSpec.to_params wrote into them)."""
    return SamplerSpec.from_params({k: v for k, v in params.items() if k in SAMPLER_FIELDS})
