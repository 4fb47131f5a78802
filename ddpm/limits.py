"""The engine's limits and defaults, in one torch-free place.

The engine's checks (ddpm.training, ddpm.sampling, ddpm.samplers, ddpm.data, ddpm.runs) and the API's
request schemas both import these, so a bound is written once. Service-only limits that operators tune
(how many images one grid may hold, how long a request may wait) live in the service's Settings.
"""

from __future__ import annotations

from ddpm.errors import InvalidOption

# Training (TrainConfig)
MAX_EPOCHS = 10_000
MAX_BATCH = 4096
MAX_WIDTH = 4.0  # channel multiplier; 1.0 = the report's sizes
MAX_TRAIN_STEPS = 10**9
MAX_SEED = 2**63 - 1  # training seeds; sampling seeds go through numpy's SeedSequence (non-negative)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 256
MAX_LR = 1.0  # lr is in (0, MAX_LR]
# What a resume may change: everything else is part of the run's identity (model, data, optimiser,
# and arithmetic: TrainConfig.bf16 is not here on purpose).
RESUMABLE_CHANGES = ("epochs", "max_steps", "checkpoint_every")
SCHEDULES = ("linear", "cosine")  # noise schedules (ddpm.schedule); cosine is Nichol & Dhariwal 2021's

# Sampling
MAX_SAMPLES = 50_000  # per request; FID's largest N, CIFAR-10's training-set size
SCHEDULE_STEPS = 1000  # the schedule's T
MAX_SAMPLER_STEPS = SCHEDULE_STEPS  # no sampler takes more than T steps
DDPM_STEPS = SCHEDULE_STEPS  # the ddpm sampler always runs all T steps
DEFAULT_DDIM_STEPS = 50
MAX_NROW = 1000

# Samplers (ddpm/samplers/, described across processes by ddpm.sampler_spec.SamplerSpec).
SAMPLERS = ("ddpm", "ddim", "dpmpp_2m", "heun")
# (least, most) steps per sampler. dpmpp_2m stops at T / 2: beyond that its time-uniform timesteps
# repeat after rounding, and a zero-length step has no second-order update.
SAMPLER_STEPS = {
    "ddpm": (DDPM_STEPS, DDPM_STEPS),
    "ddim": (1, MAX_SAMPLER_STEPS),
    "dpmpp_2m": (1, MAX_SAMPLER_STEPS // 2),
    "heun": (1, MAX_SAMPLER_STEPS // 2),  # 2 * steps - 1 network calls: at most 999, fewer than ddpm's
}
# Sample grids (GET /samples, `ddpm sample`, the page, every links.samples URL the API hands out) default
# to DDIM at its 50 steps (x_0 clipped): 20 times fewer network calls than the report's DDPM-1000, which
# stays one option away (sampler ddpm). Not DPM-Solver++(2M) at 20, though cheaper: on a short run's
# checkpoints it saturated half the images to noise where DDIM drew strokes (docs/quickstart.md). FID and
# the classifier study keep their own defaults (the report's protocol).
GRID_SAMPLER = "ddim"
REPORT_SAMPLER = "ddpm"
# Steps when none are given: DDIM-50 as before; DPM-Solver++ 20 and Heun 18 (35 network calls) are
# where their papers reach their converged FID on CIFAR-10 (Lu et al. 2022, Karras et al. 2022).
DEFAULT_STEPS = {"ddpm": DDPM_STEPS, "ddim": DEFAULT_DDIM_STEPS, "dpmpp_2m": 20, "heun": 18}
# Per sampler, the options it reads and their defaults; every other option must be left unset.
# clip_x0 clamps each step's predicted x_0 to [-1, 1]: on by default only for ddim (as before).
SAMPLER_OPTIONS: dict[str, dict[str, object]] = {
    "ddpm": {"variance": "beta", "clip_x0": False},
    "ddim": {"eta": 0.0, "clip_x0": True},
    "dpmpp_2m": {"spacing": "logsnr", "clip_x0": False},
    "heun": {
        "timestep": "interpolated",
        "clip_x0": False,
        "churn": 0.0,
        "churn_tmin": 0.0,
        "churn_tmax": None,  # None: no upper bound
        "churn_noise": 1.0,
    },
}
DDPM_VARIANCES = ("beta", "beta_tilde")  # sigma_t^2: beta_t (the report's, Ho et al.) or the posterior's
DPM_SPACINGS = ("time", "logsnr")  # uniform in t (diffusers' "linspace") or in log-SNR (Lu et al.)
HEUN_TIMESTEPS = ("nearest", "interpolated")  # the network's t for a noise level between two of its own
HEUN_RHO = 7.0  # Karras et al.'s sigma schedule exponent
MAX_CHURN = 1000.0  # S_churn; gamma = min(S_churn / steps, sqrt(2) - 1) saturates long before
MAX_CHURN_NOISE = 2.0  # S_noise; Karras et al. used 1.003-1.007
MAX_SIGMA = 1e6  # bounds on churn_tmin / churn_tmax (the linear schedule's sigmas span 0.01-157)

# FID
MIN_FID_SAMPLES = 2  # a covariance needs at least two feature vectors
MAX_FID_SWEEP = 16  # at most this many N values in one FID-vs-N sweep
DEFAULT_FID_SAMPLES = 4096  # the report's Table 1

# Classifier study (ddpm/classifier)
MIN_ANALYSIS_SAMPLES = 10  # fewer says nothing about a 10-class histogram
MAX_ANALYSIS_SAMPLES = MAX_SAMPLES
DEFAULT_ANALYSIS_SAMPLES = 1000  # the report's 1000 DDPM_BigGAN samples (section 3.3)
DEFAULT_CONFIDENCE = 0.9  # "recognisable": the classifier gives the class at least this probability
MAX_GRID_PER_CLASS = 32  # most confident samples shown per class
DEFAULT_GRID_PER_CLASS = 8
MAX_CLASSIFIER_EPOCHS = 1000
MAX_HOLDOUT_FRACTION = 0.5  # the held-out split is in (0, 0.5]

# Data and runs
BUILTIN_DATASETS = ("cifar10", "digits")
# Data sets whose images are grey: a run on them trains a one-channel network (TrainConfig.grayscale), so
# its samples are grey too instead of three channels that an early model lets drift apart (colour noise).
GRAYSCALE_DATASETS = ("digits",)
# What a training config (a checkpoint's, run.json's) written before an option existed meant by leaving it
# out, where that is not the option's default: runs before `grayscale` trained three channels on any data.
PREDATED_TRAIN_OPTIONS: dict[str, object] = {"grayscale": False, "ema_warmup": False}
FOLDER_PREFIX = "folder:"
RUN_ID_REGEX = r"^[a-z0-9][a-z0-9_.-]{0,127}$"  # URL- and path-safe
CLASSIFIER_NAME_REGEX = RUN_ID_REGEX  # classifier folder names, same rules as run ids


def dataset_choices() -> list[str]:
    return [*BUILTIN_DATASETS, f"{FOLDER_PREFIX}<folder>"]


def check_dataset_name(spec: str) -> None:
    """Validate a dataset name without loading it (torch-free: the job plane checks names too)."""
    if spec in BUILTIN_DATASETS:
        return
    if spec.startswith(FOLDER_PREFIX) and spec[len(FOLDER_PREFIX) :].strip():
        return
    raise InvalidOption(f"unknown dataset {spec!r}; valid: {', '.join(dataset_choices())}")
