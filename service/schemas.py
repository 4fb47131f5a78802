"""Request and response models. Bounds come from ddpm.limits (the engine's own); a bad value gets a 422 naming it.

JSON bodies are validated strictly: a number must be finite (NaN, Infinity and overflowing literals such
as 1e400 are refused), an integer field takes only JSON integers ("3", 3.5 and true are refused) and a
boolean only true or false ("yes" and 1 are refused). Query strings are text, so their numbers are
parsed, but they too must be finite and within bounds.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ddpm import limits
from ddpm.errors import InvalidOption
from ddpm.fid import options as fid_options
from ddpm.presets import TRAIN_PRESETS, with_preset
from ddpm.sampler_spec import SamplerSpec
from jobs.records import TERMINAL_STATES
from jobs.settings import MAX_WAIT_S
from models import (
    ConfigError,
    ModelConfig,
    UnknownArchError,
    arch_config,
    arch_names,
    closest_arch,
    resolve_arch,
)
from models.config import valid_image_sizes as models_valid_image_sizes
from service.tidy import iso  # noqa: F401 (re-exported: the routes import it from here)

# JSON bodies: strict types (no "3" for an integer, no "yes" for a boolean) and finite numbers only.
STRICT_BODY = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
# Query strings arrive as text and are parsed; their numbers must still be finite.
FINITE_QUERY = ConfigDict(extra="forbid", allow_inf_nan=False)


def unknown_variant_message(err: UnknownArchError) -> str:
    """One line for the API and the page: the unknown name, the one likely meant, and every registry name
    (the engine's message adds the report names too: 28 names over several lines)."""
    names = arch_names()
    guess = closest_arch(err.name)
    hint = f" (did you mean {guess}?)" if guess else ""
    return f"unknown variant {err.name!r}{hint}; valid: {', '.join(names)} (GET /archs; '+' combines presets)"


def _canonical_arch(name: str) -> str:
    try:
        return resolve_arch(name)
    except UnknownArchError as err:
        # A custom error type: pydantic's ValueError would prefix the message with "Value error, ".
        raise PydanticCustomError("unknown_variant", unknown_variant_message(err)) from err


ArchName = Annotated[
    str,
    AfterValidator(_canonical_arch),
    Field(description="variant name or report name, any case: biggan, DDPM_BigGAN"),
]
RunId = Annotated[str, Field(pattern=limits.RUN_ID_REGEX, description="a run id as listed by GET /runs")]
Seed = Annotated[int, Field(ge=0, le=limits.MAX_SEED)]


class SamplerFields(BaseModel):
    """Which sampler, with which options (ddpm/sampler_spec.py). Each option applies to the samplers named
    in its description; left out, it takes that sampler's default. A request that names an option its
    sampler does not read is refused, so nobody believes they changed a grid they did not."""

    sampler: Literal[limits.SAMPLERS] = Field(
        "ddpm",
        description="ddpm: the report's 1000 ancestral steps; ddim; dpmpp_2m: DPM-Solver++(2M); heun: Karras "
        "et al.'s second-order sampler",
    )
    steps: int | None = Field(
        None,
        ge=1,
        le=limits.MAX_SAMPLER_STEPS,
        description="ddim, dpmpp_2m: network calls; heun: noise levels (2 * steps - 1 calls); ddpm: always "
        f"{limits.DDPM_STEPS}. Defaults: {limits.DEFAULT_STEPS}",
    )
    eta: float | None = Field(
        None, ge=0.0, le=1.0, description="ddim: 0 deterministic (default), 1 DDPM-like"
    )
    clip_x0: bool | None = Field(
        None, description="all: clamp each step's predicted x0 to [-1, 1] (default: on for ddim only)"
    )
    variance: Literal[limits.DDPM_VARIANCES] | None = Field(
        None, description="ddpm: beta (the report's, default) or beta_tilde (the posterior's)"
    )
    spacing: Literal[limits.DPM_SPACINGS] | None = Field(
        None, description="dpmpp_2m: steps uniform in time or in log-SNR (default)"
    )
    timestep: Literal[limits.HEUN_TIMESTEPS] | None = Field(
        None, description="heun: the network's t for a noise level, interpolated (default) or nearest"
    )
    churn: float | None = Field(None, ge=0.0, le=limits.MAX_CHURN, description="heun: S_churn (default 0)")
    churn_tmin: float | None = Field(None, ge=0.0, le=limits.MAX_SIGMA, description="heun: S_tmin")
    churn_tmax: float | None = Field(None, ge=0.0, le=limits.MAX_SIGMA, description="heun: S_tmax")
    churn_noise: float | None = Field(
        None, gt=0.0, le=limits.MAX_CHURN_NOISE, description="heun: S_noise (default 1)"
    )

    def sampler_spec(self) -> SamplerSpec:
        return SamplerSpec(**self.model_dump(include=set(SamplerFields.model_fields)))

    @model_validator(mode="after")
    def _valid_sampler(self) -> SamplerFields:
        try:
            self.sampler_spec()
        except InvalidOption as err:
            raise ValueError(str(err)) from err
        return self


def check_dataset(spec: str) -> str:
    """cifar10, digits, or folder:<path under DATA_DIR/datasets> (the API never reads outside the volume)."""
    if spec in limits.BUILTIN_DATASETS:
        return spec
    if spec.startswith(limits.FOLDER_PREFIX):
        folder = PurePosixPath(spec[len(limits.FOLDER_PREFIX) :].strip())
        if str(folder) not in ("", ".") and not folder.is_absolute() and ".." not in folder.parts:
            return f"{limits.FOLDER_PREFIX}{folder}"
        raise ValueError(
            f"dataset {spec!r}: a folder dataset must be a relative path under DATA_DIR/datasets, "
            "e.g. folder:my-images"
        )
    valid = ", ".join([*limits.BUILTIN_DATASETS, f"{limits.FOLDER_PREFIX}<folder under DATA_DIR/datasets>"])
    raise ValueError(f"unknown dataset {spec!r}; valid: {valid}")


class TrainRequest(BaseModel):
    """Every field but arch defaults to the report's setup (CIFAR-10, 100 epochs, batch 128, AdamW 2e-4);
    `preset` fills in a named recipe's values instead (the fields sent beside it override them)."""

    model_config = STRICT_BODY

    preset: Literal[tuple(TRAIN_PRESETS)] | None = Field(  # type: ignore[valid-type]
        None,
        description="a named recipe (GET /train/presets); digits-quick: a first run, minutes on a CPU",
    )
    arch: ArchName | None = None
    dataset: Annotated[str, Field(max_length=256), AfterValidator(check_dataset)] = "cifar10"
    epochs: int = Field(100, ge=1, le=limits.MAX_EPOCHS)
    max_steps: int | None = Field(
        None, ge=1, le=limits.MAX_TRAIN_STEPS, description="stop after this many steps"
    )
    batch_size: int = Field(128, ge=1, le=limits.MAX_BATCH)
    lr: float = Field(2e-4, gt=0, le=limits.MAX_LR)
    seed: Seed = 0
    width: float = Field(1.0, gt=0, le=limits.MAX_WIDTH, description="channel multiplier; 1.0 = report sizes")
    checkpoint_every: int = Field(
        10, ge=1, le=limits.MAX_EPOCHS, description="epochs between kept checkpoints"
    )
    ema: bool = False
    ema_decay: float = Field(0.9999, gt=0, lt=1, description="EMA decay per step (with ema)")
    ema_warmup: bool = Field(
        True,
        description="ramp the EMA decay as min(ema_decay, (1+step)/(10+step)) so short runs average"
        " trained weights",
    )
    bf16: bool = Field(
        False,
        description="bf16 autocast for the network on CUDA (loss, weights, AdamW stay fp32); fixed per run",
    )
    schedule: Literal["linear", "cosine"] = Field(
        "linear", description="noise schedule (cosine: Nichol & Dhariwal)"
    )
    dropout: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="default: the arch's own (0 for the report's variants, 0.1 for ddpm_original)",
    )
    image_size: int = Field(
        32, ge=limits.MIN_IMAGE_SIZE, le=limits.MAX_IMAGE_SIZE, description="digits/folder datasets only"
    )
    grayscale: bool | None = Field(
        None, description="one-channel network and images (default: the data set's own: grey for digits)"
    )
    run_id: RunId | None = Field(None, description="name the run (default <arch>-<time>-<random>)")
    resume: bool = Field(False, description="continue run_id from its latest checkpoint")

    @model_validator(mode="before")
    @classmethod
    def _fill_in_preset(cls, data: Any) -> Any:
        """A known preset's values under the fields sent; an unknown one is left to the field's 422."""
        preset = data.get("preset") if isinstance(data, dict) else None
        # Any JSON may arrive here, before the field's own check: a list or object is not a name to look up.
        if isinstance(preset, str) and preset in TRAIN_PRESETS and not data.get("resume"):
            return with_preset(data["preset"], data)
        return data

    # What the chosen variant's network can take, checked field by field so that each 422 is located
    # at the field to change (fields are validated in order: arch, width and dropout come first).
    @field_validator("width")
    @classmethod
    def _width_fits_the_arch(cls, width: float, info: ValidationInfo) -> float:
        if info.data.get("arch") is not None:
            _network(info.data["arch"], width)
        return width

    @field_validator("dropout")
    @classmethod
    def _arch_has_dropout(cls, dropout: float | None, info: ValidationInfo) -> float | None:
        arch, width = info.data.get("arch"), info.data.get("width")
        if dropout is not None and arch is not None and width is not None:
            config = _network(arch, width)
            if not hasattr(config, "dropout"):
                raise ValueError(
                    f"dropout does not apply to {arch}: its network ({config.network}) has none; leave it out"
                )
        return dropout

    @field_validator("image_size")
    @classmethod
    def _image_size_fits_the_arch(cls, image_size: int, info: ValidationInfo) -> int:
        arch, width = info.data.get("arch"), info.data.get("width")
        if arch is not None and width is not None:
            check_image_size(arch, _network(arch, width), image_size)
        return image_size

    @model_validator(mode="after")
    def _consistent(self) -> TrainRequest:
        if self.resume:
            if self.run_id is None:
                raise ValueError("resume needs run_id: the run to continue")
            if self.preset is not None:
                raise ValueError(
                    "preset starts a new run; leave it out when resuming (the run keeps its own)"
                )
        elif self.arch is None:
            raise ValueError('arch is required, e.g. {"arch": "convnext"}; GET /archs lists them')
        if self.dataset == "cifar10" and self.image_size != 32:
            raise ValueError("CIFAR-10 images are 32x32; image_size applies to digits and folder datasets")
        return self

    def engine_config(self) -> dict[str, Any]:
        """Keyword arguments of ddpm.training.TrainConfig."""
        return self.model_dump(exclude={"run_id", "resume", "preset"})


def _network(arch: str, width: float) -> ModelConfig:
    """The variant's network at this width (a width too small or too large for its channels is refused)."""
    try:
        return arch_config(arch, width=width)
    except ConfigError as err:
        raise ValueError(str(err)) from err


def valid_image_sizes(config: ModelConfig) -> list[int]:
    return models_valid_image_sizes(config, limits.MIN_IMAGE_SIZE, limits.MAX_IMAGE_SIZE)


def check_image_size(arch: str, config: ModelConfig, image_size: int) -> None:
    sizes = valid_image_sizes(config)
    if image_size not in sizes:
        shown = ", ".join(map(str, sizes[:6])) + (f", ..., {sizes[-1]}" if len(sizes) > 6 else "")
        raise ValueError(
            f"image_size {image_size} does not fit {arch}: its network halves the image {config.levels} "
            f"times, so the size must be a multiple of {2**config.levels} from {sizes[0]}; valid sizes: {shown}"
        )


class SampleQuery(SamplerFields):
    model_config = FINITE_QUERY

    # Grids default to the fast sampler (ddpm/limits.py GRID_SAMPLER says why); the report's is one option away.
    sampler: Literal[limits.SAMPLERS] = Field(
        limits.GRID_SAMPLER,
        description=f"default {limits.GRID_SAMPLER} ({limits.DEFAULT_STEPS[limits.GRID_SAMPLER]} steps); "
        f"{limits.REPORT_SAMPLER}: the report's 1000 ancestral steps; ddim; dpmpp_2m: DPM-Solver++(2M); "
        "heun: Karras et al.'s second-order sampler",
    )
    arch: ArchName | None = None
    seed: Seed = 0
    n: int = Field(80, ge=1, le=limits.MAX_SAMPLES, description="images in the grid (80 = the report's)")
    nrow: int = Field(10, ge=1, le=limits.MAX_NROW, description="images per row")
    run: RunId | None = Field(None, description="sample this run (default: the arch's newest checkpoint)")
    checkpoint: int | None = Field(
        None, ge=0, le=limits.MAX_TRAIN_STEPS, description="a kept checkpoint's step (needs run)"
    )
    wait: float = Field(
        0.0, ge=0, le=MAX_WAIT_S, description="seconds to wait for the grid before answering 202"
    )

    @model_validator(mode="after")
    def _consistent(self) -> SampleQuery:
        if self.arch is None and self.run is None:
            raise ValueError(
                "give arch (its newest checkpoint is used) or run, e.g. ?arch=biggan&seed=0&n=80"
            )
        return self


class FidRequest(SamplerFields):
    model_config = STRICT_BODY

    arch: ArchName | None = None
    run: RunId | None = None
    checkpoint: int | None = Field(
        None, ge=0, le=limits.MAX_TRAIN_STEPS, description="a kept checkpoint's step (needs run)"
    )
    n_samples: (
        Annotated[int, Field(ge=limits.MIN_FID_SAMPLES, le=limits.MAX_SAMPLES)]
        | Annotated[
            list[Annotated[int, Field(ge=limits.MIN_FID_SAMPLES, le=limits.MAX_SAMPLES)]],
            Field(min_length=1, max_length=4 * limits.MAX_FID_SWEEP),
        ]
    ) = Field(
        limits.DEFAULT_FID_SAMPLES,
        description="samples to score; a list gives an FID-vs-N sweep from one sample set",
    )
    seed: Seed = 0
    dataset: Annotated[str, Field(max_length=256), AfterValidator(check_dataset)] = Field(
        "cifar10",
        description="reference statistics: cifar10, digits, or folder:<folder under DATA_DIR/datasets> "
        "(the images a folder-trained model learned from)",
    )
    batch_size: int = Field(128, ge=1, le=limits.MAX_BATCH)
    # Metrics beside the headline FID, all from the one Inception feature pass (docs/fid.md).
    metrics: list[Literal[fid_options.METRICS]] | None = Field(
        None,
        min_length=1,
        max_length=len(fid_options.METRICS),
        description="default: every metric, each at the N where it can be computed (and a note where not); "
        "naming metrics asks for exactly those, and an N below one's minimum is refused",
    )
    kid_subsets: int = Field(fid_options.DEFAULT_KID_SUBSETS, ge=1, le=fid_options.MAX_KID_SUBSETS)
    kid_subset_size: int | None = Field(
        None, ge=2, le=limits.MAX_SAMPLES, description="default min(1000, N/2, reference/2)"
    )
    bootstrap: int = Field(
        fid_options.DEFAULT_BOOTSTRAP,
        ge=2,
        le=fid_options.MAX_BOOTSTRAP,
        description="FID interval replicates",
    )
    fid_inf_points: int = Field(
        fid_options.DEFAULT_FID_INF_POINTS,
        ge=2,
        le=fid_options.MAX_FID_INF_POINTS,
        description="FID-infinity's N",
    )
    metrics_seed: int = Field(0, ge=0, le=fid_options.MAX_METRIC_SEED, description="subsets and resamples")

    def metric_params(self) -> dict[str, Any]:
        """MetricOptions.to_params() of this request (the job's parameters carry them)."""
        return fid_options.MetricOptions.from_params(self.model_dump()).to_params()

    def job_params(self) -> dict[str, Any]:
        """The FID job's params but the checkpoint: N, seed, reference, batch, the sampler with every
        default filled in (so the results table says what was run), the metrics and their options."""
        return {
            **self.model_dump(include={"n_samples", "seed", "dataset", "batch_size"}),
            **self.sampler_spec().to_params(),
            **self.metric_params(),
        }

    @field_validator("n_samples")
    @classmethod
    def _sweep(cls, value: int | list[int]) -> list[int]:
        values = sorted(set([value] if isinstance(value, int) else value))
        if not values or len(values) > limits.MAX_FID_SWEEP:
            raise ValueError(f"n_samples: give 1 to {limits.MAX_FID_SWEEP} distinct values")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> FidRequest:
        if self.arch is None and self.run is None:
            raise ValueError('give arch (its newest checkpoint is scored) or run, e.g. {"arch": "biggan"}')
        try:
            fid_options.check_metric_request(self.n_samples, self.model_dump())
        except InvalidOption as err:
            raise ValueError(str(err)) from err
        return self


class ReferenceRequestBody(BaseModel):
    """POST /fid/reference: precompute a data set's reference statistics (docs/fid.md)."""

    model_config = STRICT_BODY

    dataset: Annotated[str, Field(max_length=256), AfterValidator(check_dataset)] = Field(
        "cifar10", description="cifar10, digits, or folder:<folder under DATA_DIR/datasets>"
    )
    image_size: int = Field(
        32,
        ge=limits.MIN_IMAGE_SIZE,
        le=limits.MAX_IMAGE_SIZE,
        description="the size the images are loaded at: a checkpoint's training image_size (CIFAR-10 is 32)",
    )
    refresh: bool = Field(False, description="compute them again although they are cached")
    batch_size: int = Field(50, ge=1, le=limits.MAX_BATCH, description="Inception batch (numbers unchanged)")


class ReferenceOut(BaseModel):
    """Reference statistics: cached, or the job that computes them."""

    key: str = Field(description="the cache key: data set, image size, no flips, feature extractor")
    dataset: str
    image_size: int
    state: str = Field(description="cached, or the computing job's state (queued, running)")
    job_id: str | None = None
    joined: bool = Field(
        False, description="a job computing the same statistics was already queued or running"
    )
    message: str
    links: dict[str, str]


class Accepted(BaseModel):
    """The answer to a request that queued (or joined) a job."""

    job_id: str
    state: str
    kind: str
    run_id: str | None = None
    joined: bool = Field(False, description="an identical job was already queued or running")
    message: str | None = None
    links: dict[str, str]


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    progress: float = Field(description="fraction done, 0..1")
    step: int | None = None
    total: int | None = None
    loss: float | None = None
    eta_s: float | None = Field(None, description="seconds left, from the current rate")
    images_per_s: float | None = Field(
        None, description="throughput over the last seconds: training images, or images sampled"
    )
    image_steps_per_s: float | None = Field(
        None, description="sampling: network evaluations x images per second"
    )
    rate_phase: str | None = Field(None, description="what the rates measure: train, sample, or an FID phase")
    message: str | None = None
    error: str | None = None
    run_id: str | None = None
    params: dict[str, Any]
    result: dict[str, Any] | None = None
    cancel_requested: bool = False
    attempts: int | None = None
    worker: str | None = None
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    updated: str | None = None
    reference_job: str | None = Field(
        None, description="FID: the fid_reference job computing the statistics this job waits on"
    )
    links: dict[str, str]

    @classmethod
    def from_record(cls, job: dict[str, Any]) -> JobOut:
        links = job_links(job["id"], job.get("run_id"))
        if job.get("reference_job"):
            links["reference_job"] = f"/jobs/{job['reference_job']}"
        for name, url in (job.get("result") or {}).get("links", {}).items():
            links.setdefault(name, url)
        fields = {k: v for k, v in job.items() if k in cls.model_fields and k not in _TIMES}
        if job.get("state") in TERMINAL_STATES:  # nothing is left to wait for (records from before the
            fields.pop("eta_s", None)  # store dropped it at the end may still carry the last estimate)
        return cls(**fields, **{k: iso(job.get(k)) for k in _TIMES}, links=links)


_TIMES = ("created", "started", "finished", "updated")


def job_links(job_id: str, run_id: str | None = None) -> dict[str, str]:
    links = {"self": f"/jobs/{job_id}", "events": f"/jobs/{job_id}/events"}
    if run_id:
        links["run"] = f"/runs/{run_id}"
    return links
