"""One settings object for the API, the workers and `ddpm serve`, read from the environment.

REDIS_URL, DATA_DIR and API_KEY keep their plain names (they are what operators type); the rest take
a DDPM_ prefix, e.g. DDPM_QUEUE=gpu-a100.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ddpm.compile_policy import parse_setting
from ddpm.errors import InvalidOption
from ddpm.settings import data_dir as resolve_data_dir

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DAY = 24 * 3600
MAX_LOSS_POINTS = 100_000  # the most loss-history points GET /runs/{id} returns
MAX_WAIT_S = 3600  # the longest `wait` any GET /samples may ask for (max_wait_s may lower it)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DDPM_", extra="ignore", populate_by_name=True)

    redis_url: str = Field(
        DEFAULT_REDIS_URL, validation_alias=AliasChoices("REDIS_URL", "redis_url"), min_length=1
    )
    data_dir: Path = Field(
        default_factory=lambda: resolve_data_dir(), validation_alias=AliasChoices("DATA_DIR", "data_dir")
    )
    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("API_KEY", "api_key"))

    # Redis keys and the Celery queue; tests give each session its own to share one Redis safely.
    key_prefix: str = Field("ddpm", pattern=r"^[A-Za-z0-9_.:-]+$")
    queue: str = Field("gpu", pattern=r"^[A-Za-z0-9_.-]+$")
    # Which of the two queues a worker consumes (jobs/publish.py): all (both), train, or interactive.
    consume: Literal["all", "train", "interactive"] = "all"

    # Workers
    device: str = "auto"  # auto: CUDA when present, else CPU
    progress_interval_s: float = Field(0.5, ge=0)  # at most ~2 progress writes per second per job
    # A running job's lease: its worker renews it every job_heartbeat_s; unrenewed for lease_s, the
    # worker is taken for lost and the job is re-queued (docs/reliability.md).
    lease_s: float = Field(120, gt=0)
    job_heartbeat_s: float = Field(5, gt=0)
    worker_heartbeat_s: float = Field(10, gt=0)  # worker liveness key, and how often lost jobs are swept
    max_attempts: int = Field(3, ge=1, le=100)  # starts of one job before it is failed as a worker-killer
    # A job queued this long whose message is in none of its queue's lists was lost by the broker: the
    # workers' sweep publishes it again (jobs/orphans.py), up to max_attempts times, then fails it.
    orphan_after_s: float = Field(60, gt=0)
    sample_batch_size: int = Field(128, ge=1, le=4096)
    # Sampling networks compiled with torch.compile: `auto` decides per job from its size against the
    # compile's cost (ddpm/compile_policy.py), `on` always, `off` never (1 and 0: the older spellings).
    compile: Literal["auto", "on", "off"] = "auto"
    # CPU threads of a worker's pool process for torch (intra-op) and BLAS (FID's statistics and
    # distance), set when the process starts (workers/app.py) rather than left to whatever a forked
    # pool inherits. None: the cores this process may run on. On a machine shared with other work,
    # fewer threads than cores avoid threads spinning against each other (docs/performance.md).
    threads: int | None = Field(None, ge=1, le=1024)
    # Networks a worker keeps between jobs (the last checkpoints' and FID's Inception: ddpm/model_cache.py),
    # in MiB of parameters; the report's UNets are 55-150 MiB each, Inception 91 MiB. 0 keeps none.
    model_cache_mb: int = Field(1024, ge=0, le=1_000_000)
    # Request batching (workers/batching.py): a sampling job waits this long for others with the same
    # checkpoint and sampler settings to join its batches; 0 turns batching off.
    batch_window_s: float = Field(0.1, ge=0, le=10)
    # TensorBoard events of every training run (runs/<id>/tensorboard): scalars each step, and a grid of
    # this many images (DDIM, this many steps, fixed noise) at each kept checkpoint; 0 images: none.
    tensorboard: bool = True
    tensorboard_samples: int = Field(16, ge=0, le=256)
    tensorboard_sample_steps: int = Field(20, ge=1, le=1000)
    # A training, sampling or FID job fails at its start (and POST /train answers 507) while the data
    # volume has less free space than this; /readyz reports it. A checkpoint of the report's networks
    # with EMA and optimizer state is a few hundred MiB.
    min_free_mb: int = Field(1024, ge=0, le=10**9)
    # Unacked messages are redelivered after this long. The lease, not this, keeps a job from running
    # twice; this only bounds how long a message lost with its worker waits (the sweep is faster).
    visibility_timeout_s: int = Field(7 * DAY, ge=1)

    # API
    job_ttl_s: int = Field(30 * DAY, ge=60)  # finished job records expire after this long
    sample_max_n: int = Field(1000, ge=1, le=50_000)  # images in one GET /samples grid
    max_wait_s: float = Field(300, ge=0, le=MAX_WAIT_S)  # longest `wait` a GET /samples may block for
    events_poll_s: float = Field(0.25, gt=0)  # how often the SSE stream re-reads a job
    events_keepalive_s: float = Field(15, gt=0)
    loss_history_points: int = Field(500, ge=2, le=MAX_LOSS_POINTS)
    redis_timeout_s: float = Field(3, gt=0)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=64 * 1024 * 1024)  # larger request bodies: 413
    # Browser origins allowed to call the API (CORS); empty = no CORS headers at all.
    cors_origins: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> Settings:
        # Two missed renewals must not cost a live worker its job.
        if self.lease_s < 2 * self.job_heartbeat_s:
            raise ValueError(
                f"lease_s ({self.lease_s}) must be at least twice job_heartbeat_s ({self.job_heartbeat_s})"
            )
        return self

    @field_validator("data_dir", mode="before")
    @classmethod
    def _absolute(cls, value: str | Path) -> Path:
        return resolve_data_dir(value)

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_setting(cls, value: object) -> object:
        try:
            return parse_setting(value) if isinstance(value, str) else value
        except InvalidOption as err:
            raise ValueError(str(err)) from err

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # compose passes API_KEY="" when the operator sets none; that means "no key", not "empty key".
        return None if value in ("", None) else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
