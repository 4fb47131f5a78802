"""What a job is about, as it crosses from the API to a worker: the checkpoint a request means, and the
content-addressed cache of sample grids on the data volume.

A grid is a pure function of (checkpoint identity, seed, n, nrow, sampler, steps, eta): the engine draws
image i's noise from (seed, i) alone. The key hashes exactly those, after normalising equivalent
requests (ddpm always runs 1000 steps and has no eta; ddim's steps default to 50), so the same question
asked twice finds the same file: samples/<k[:2]>/<k>.png, with a .json beside it saying what it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ddpm.limits import DDPM_STEPS, DEFAULT_DDIM_STEPS
from ddpm.runs import RunDir
from ddpm.settings import samples_dir

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


@dataclass(frozen=True)
class SampleSpec:
    checkpoint: CheckpointRef
    seed: int
    n: int
    nrow: int
    sampler: str
    steps: int
    eta: float

    @classmethod
    def normalised(
        cls,
        checkpoint: CheckpointRef,
        seed: int,
        n: int,
        nrow: int,
        sampler: str,
        steps: int | None,
        eta: float,
    ) -> SampleSpec:
        if sampler == "ddpm":
            steps, eta = DDPM_STEPS, 0.0
        return cls(checkpoint, seed, n, nrow, sampler, steps or DEFAULT_DDIM_STEPS, float(eta))

    def options(self) -> dict[str, Any]:
        """Everything but the checkpoint that decides the grid's bytes."""
        return {
            "seed": self.seed,
            "n": self.n,
            "nrow": self.nrow,
            "sampler": self.sampler,
            "steps": self.steps,
            "eta": self.eta,
        }

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
        return {"run": self.checkpoint.run_id, "checkpoint": self.checkpoint.step, **self.options()}

    def url(self) -> str:
        return "/samples?" + urlencode(self.query())

    def to_params(self) -> dict[str, Any]:
        return {**self.identity(), "checkpoint": self.checkpoint.to_dict(), "key": self.key}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SampleSpec:
        return cls(
            CheckpointRef.from_dict(params["checkpoint"]),
            params["seed"],
            params["n"],
            params["nrow"],
            params["sampler"],
            params["steps"],
            params["eta"],
        )
